"""Speed and peak memory of one full-size SDXL UNet training step, per optimizer set-up.

The step is the one `charlora.train` runs (the noise and loss of `charlora.diffusion`, the same
optimizer and fused backward code; EMA, off by default, is left out); the UNet is SDXL's real
topology with random weights (nothing to download), text embeddings random.
Each set-up runs in its own process so that peaks do not mix.

    # on a GPU (the issue's target: <= 10 GB at batch 2, 1024 x 1024): it/s and measured peak
    python benchmarks/train_memory.py --device cuda --resolution 1024 --steps 6
    # anywhere, in about 2 minutes per set-up: the peak estimated without computing anything
    python benchmarks/train_memory.py --estimate --resolution 1024

GPU peak = torch.cuda.max_memory_allocated (tensors; the CUDA context and cuDNN/cuBLAS workspaces
come on top, as in any nvidia-smi reading).

--estimate runs the same step on fake tensors (torch's FakeTensorMode: shapes and dtypes, no data,
no arithmetic) on the CPU, and adds up every tensor alive at each moment with torch's MemTracker,
rounded to the CUDA allocator's 512-byte blocks. It counts weights, gradients, optimizer state,
saved activations and backward temporaries exactly, but knows nothing of allocator fragmentation or
kernel workspaces, and the attention is the CPU's flash kernel, which keeps what CUDA's flash kernel
keeps (output and log-sum-exp, no attention matrix). The fp16 loss scaler is left out there (it
reads values, which fake tensors do not have); it holds no tensor of note. A warm-up step comes
first so that the optimizer state exists; the peak is that of the second step.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

SETUPS = {  # name -> train settings
    "adafactor, fused, bf16": dict(optimizer="adafactor", fused_backward=True, precision="bf16"),
    "adafactor, not fused, bf16": dict(optimizer="adafactor", fused_backward=False, precision="bf16"),
    "adamw8bit, fp32 weights, fp16 autocast": dict(optimizer="adamw8bit", fused_backward=False, precision="fp16"),
}


@contextlib.contextmanager
def default_dtype(dtype):
    import torch

    before = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(before)


def training_step(name: str, model: str, device: str, resolution: int, checkpointing: bool, fake: bool):
    """Build the UNet, optimizer and inputs for one set-up; return the function that runs one step."""
    import torch
    from diffusers import DDPMScheduler, UNet2DConditionModel
    from torch._subclasses.fake_tensor import unset_fake_temporarily

    from charlora.optim import FusedBackward, make_optimizer
    from charlora.sdxl import MODEL_CONFIGS
    from charlora.diffusion import add_noise, draw_noise, predict_noise, training_loss
    from charlora.train import Settings

    settings = Settings.from_schema(**SETUPS[name], gradient_checkpointing=checkpointing, device=device)
    settings.check()
    dev = torch.device(device)
    config = UNet2DConditionModel.load_config(MODEL_CONFIGS / model / "unet")
    with dev, default_dtype(settings.weight_dtype):
        unet = UNet2DConditionModel.from_config(config)
    if checkpointing:
        unet.enable_gradient_checkpointing()
    unet.train()
    with unset_fake_temporarily() if fake else contextlib.nullcontext():  # bitsandbytes reads its tables' values
        optimizer = make_optimizer(settings.optimizer, unet.parameters(), settings.lr)
    fused = FusedBackward(optimizer) if settings.fused_backward else None
    scaler = torch.amp.GradScaler(dev.type, enabled=settings.precision == "fp16" and not fake)
    alphas = DDPMScheduler.from_pretrained(MODEL_CONFIGS / model, subfolder="scheduler").alphas_cumprod.float()
    batch, side = 2, resolution // 8
    pooled_dim = config["projection_class_embeddings_input_dim"] - 6 * config["addition_time_embed_dim"]
    latents = torch.randn(batch, 4, side, side, device=dev)
    mask = torch.ones(batch, 1, side, side, device=dev)
    prompt = torch.randn(batch, 77, config["cross_attention_dim"], device=dev)
    pooled = torch.randn(batch, pooled_dim, device=dev)
    time_ids = torch.tensor(
        [[resolution, resolution, 0, 0, resolution, resolution]] * batch, dtype=torch.float32, device=dev
    )

    def step():
        noise = draw_noise(latents.shape, None, settings.noise_offset).to(dev)
        t = torch.randint(0, 1000, (batch,))
        pred = predict_noise(
            unet, add_noise(latents, noise, t, alphas), t, prompt, pooled, time_ids, settings.autocast_dtype
        )
        loss = training_loss(pred, noise, mask, t, alphas, settings).mean()
        scaler.scale(loss).backward()  # with fused_backward, each weight is updated in here
        if fused is None:
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
        return loss

    return unet, optimizer, step


def measure(name: str, model: str, device: str, resolution: int, steps: int, checkpointing: bool) -> dict:
    """Run `steps` real steps; s/step of all but the first two (allocator and kernel warm-up)."""
    import torch

    unet, _, step = training_step(name, model, device, resolution, checkpointing, fake=False)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    times = []
    for _ in range(steps):
        sync()
        start = time.perf_counter()
        loss = step()
        sync()
        times.append(time.perf_counter() - start)
    timed = times[2:] if len(times) > 2 else times
    peak = torch.cuda.max_memory_allocated() if device.startswith("cuda") else None
    return {
        "setup": name,
        "s_per_step": sum(timed) / len(timed),
        "peak_gib": peak and peak / 2**30,
        "loss": loss.item(),
        "parameters": sum(p.numel() for p in unet.parameters()),
    }


def estimate(name: str, model: str, resolution: int, checkpointing: bool) -> dict:
    """Peak tensor memory of the second step, on fake tensors (see the module docstring)."""
    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.distributed._tools.mem_tracker import MemTracker

    class PeakTracker(MemTracker):
        """MemTracker keeping only the whole-process peak: its per-module peaks cost O(modules) per op."""

        def _update_peak_stats(self, peak_state) -> None:
            for dev, snap in self._curr_mem_snap.items():
                if snap["Total"] > self._peak_mem.get(dev, 0):
                    self._peak_mem[dev] = snap["Total"]
                    self._peak_mem_snap[dev] = dict(snap)

    start = time.perf_counter()
    with FakeTensorMode(allow_non_fake_inputs=True):
        unet, optimizer, step = training_step(name, model, "cpu", resolution, checkpointing, fake=True)
        step()  # warm-up: the optimizer state exists from here on
        tracker = PeakTracker()
        tracker.track_external(unet, optimizer)
        with tracker:
            step()
    peak = tracker.get_tracker_snapshot("peak")[torch.device("cpu")]
    parts = {str(getattr(k, "value", k)): v / 2**30 for k, v in peak.items()}
    return {
        "setup": name,
        "peak_gib": parts.pop("Total"),
        "parts_gib": parts,
        "parameters": sum(p.numel() for p in unet.parameters()),
        "seconds": time.perf_counter() - start,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--estimate", action="store_true", help="peak memory from fake tensors, no GPU needed")
    parser.add_argument("--model", default="sdxl", choices=("sdxl", "tiny"), help="tiny: a quick check of the script")
    parser.add_argument("--resolution", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--no-checkpointing", action="store_true")
    parser.add_argument("--setups", nargs="*", default=list(SETUPS))
    parser.add_argument("--one", help=argparse.SUPPRESS)  # run one set-up in this process (internal)
    args = parser.parse_args()
    checkpointing = not args.no_checkpointing
    if args.one:
        result = (
            estimate(args.one, args.model, args.resolution, checkpointing)
            if args.estimate
            else measure(args.one, args.model, args.device, args.resolution, args.steps, checkpointing)
        )
        print(json.dumps(result))
        return
    where = "estimated from fake tensors" if args.estimate else args.device
    print(
        f"{args.model} UNet, batch 2, {args.resolution}x{args.resolution}, {where}, "
        f"gradient checkpointing {'on' if checkpointing else 'off'}"
    )
    if args.estimate:
        print(f"{'set-up':42} {'peak GiB':>9}  {'weights':>8} {'grads':>7} {'optim':>7} {'activ.':>7} {'temp':>7}")
    else:
        print(f"{'set-up':42} {'s/step':>8} {'it/s':>6} {'peak GiB':>9}")
    parameters = None
    for name in args.setups:
        cmd = [
            sys.executable,
            __file__,
            "--one",
            name,
            "--model",
            args.model,
            "--device",
            args.device,
            "--resolution",
            str(args.resolution),
            "--steps",
            str(args.steps),
        ]
        cmd += ["--estimate"] * args.estimate + ["--no-checkpointing"] * args.no_checkpointing
        run = subprocess.run(cmd, capture_output=True, text=True)
        if run.returncode != 0:
            lines = run.stderr.strip().splitlines()
            print(f"{name:42} failed: {lines[-1] if lines else run.returncode}", flush=True)
            continue
        r = json.loads(run.stdout.strip().splitlines()[-1])
        parameters = r["parameters"]
        if args.estimate:
            p = r["parts_gib"]
            print(
                f"{name:42} {r['peak_gib']:9.2f}  {p['Parameter']:8.2f} {p['Gradient']:7.2f} {p['Optstate']:7.2f} "
                f"{p['Activation']:7.2f} {p['Temp']:7.2f}",
                flush=True,
            )
        else:
            peak = f"{r['peak_gib']:9.2f}" if r["peak_gib"] is not None else f"{'-':>9}"
            print(f"{name:42} {r['s_per_step']:8.2f} {1 / r['s_per_step']:6.2f} {peak}", flush=True)
    if parameters:
        print(f"({parameters:,} UNet parameters)")


if __name__ == "__main__":
    main()
