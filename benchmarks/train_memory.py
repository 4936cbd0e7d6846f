"""Speed and peak memory of one full-size SDXL UNet training step, per optimizer set-up.

The step is the one `charlora.train` runs (same noise, loss, optimizer and fused backward code); the
UNet is SDXL's real topology with random weights (nothing to download), text embeddings random.
Each set-up runs in its own process so that peaks do not mix.

    # on a GPU (the issue's target: <= 10 GB at batch 2, 1024 x 1024)
    python benchmarks/train_memory.py --device cuda --resolution 1024 --steps 6
    # on the CPU, smaller images (the weight/gradient/optimizer part of the memory is the same)
    python benchmarks/train_memory.py --device cpu --resolution 256 --steps 1

GPU peak = torch.cuda.max_memory_allocated; CPU peak = the process's maximum resident set size.
"""

from __future__ import annotations

import argparse
import json
import resource
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


def one_setup(name: str, device: str, resolution: int, steps: int, checkpointing: bool) -> dict:
    import torch
    from diffusers import DDPMScheduler, UNet2DConditionModel

    from charlora.optim import FusedBackward, make_optimizer
    from charlora.sdxl import MODEL_CONFIGS
    from charlora.train import Settings, masked_mse, predict_noise

    settings = Settings(**SETUPS[name], gradient_checkpointing=checkpointing, device=device)
    settings.check()
    dev = torch.device(device)
    weight_dtype = torch.bfloat16 if settings.precision == "bf16" else torch.float32
    autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}[settings.precision]
    config = UNet2DConditionModel.load_config(MODEL_CONFIGS / "sdxl" / "unet")
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(config)
    unet.to_empty(device=dev).to(weight_dtype)
    with torch.no_grad():
        for p in unet.parameters():
            p.normal_(0, 0.02)
    if checkpointing:
        unet.enable_gradient_checkpointing()
    unet.train()
    optimizer = make_optimizer(settings.optimizer, unet.parameters(), settings.lr)
    fused = FusedBackward(optimizer) if settings.fused_backward else None
    scaler = torch.amp.GradScaler(dev.type, enabled=settings.precision == "fp16")
    alphas = DDPMScheduler.from_pretrained(MODEL_CONFIGS / "sdxl", subfolder="scheduler").alphas_cumprod.float()
    g = torch.Generator().manual_seed(0)
    batch, side = 2, resolution // 8
    latents = torch.randn(batch, 4, side, side, generator=g).to(dev)
    mask = torch.ones(batch, 1, side, side, device=dev)
    prompt = torch.randn(batch, 77, 2048, generator=g).to(dev)
    pooled = torch.randn(batch, 1280, generator=g).to(dev)
    time_ids = torch.tensor([[resolution, resolution, 0, 0, resolution, resolution]] * batch, dtype=torch.float32).to(dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    times = []
    for step in range(steps):
        sync()
        start = time.perf_counter()
        noise = torch.randn(latents.shape, generator=g).to(dev)
        t = torch.randint(0, 1000, (batch,), generator=g)
        pred = predict_noise(unet, latents, noise, t, alphas, prompt, pooled, time_ids, autocast_dtype)
        loss = masked_mse(pred, noise, mask, settings).mean()
        scaler.scale(loss).backward()
        if fused is None:
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
        sync()
        times.append(time.perf_counter() - start)
    timed = times[2:] if len(times) > 2 else times  # the first steps include allocator and kernel warm-up
    peak = (torch.cuda.max_memory_allocated() / 2**30 if dev.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)
    return {"setup": name, "steps": len(timed), "s_per_step": sum(timed) / len(timed), "peak_gib": peak,
            "loss": loss.item()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--resolution", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--no-checkpointing", action="store_true")
    parser.add_argument("--setups", nargs="*", default=list(SETUPS))
    parser.add_argument("--one", help=argparse.SUPPRESS)  # run one set-up in this process (internal)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_setup(args.one, args.device, args.resolution, args.steps, not args.no_checkpointing)))
        return
    print(f"SDXL UNet (2.57 B parameters), batch 2, {args.resolution}x{args.resolution}, {args.device}, "
          f"gradient checkpointing {'off' if args.no_checkpointing else 'on'}")
    print(f"{'set-up':42} {'s/step':>8} {'it/s':>6} {'peak GiB':>9}")
    for name in args.setups:
        cmd = [sys.executable, __file__, "--one", name, "--device", args.device, "--resolution", str(args.resolution),
               "--steps", str(args.steps)] + (["--no-checkpointing"] if args.no_checkpointing else [])
        run = subprocess.run(cmd, capture_output=True, text=True)
        if run.returncode != 0:
            print(f"{name:42} failed: {run.stderr.strip().splitlines()[-1] if run.stderr.strip() else run.returncode}")
            continue
        r = json.loads(run.stdout.strip().splitlines()[-1])
        print(f"{name:42} {r['s_per_step']:8.2f} {1 / r['s_per_step']:6.2f} {r['peak_gib']:9.2f}", flush=True)


if __name__ == "__main__":
    main()
