"""One prepared GPU check: charlora's own training step, sampler and LoRA extraction on a full-size SDXL
UNet (and VAE) with random weights built from config/models/sdxl, on one CUDA device. One JSON line
per figure, printed (and flushed) as soon as it is measured:

  1. training at 1024 x 1024, batch 2, the default settings (Adafactor, fused backward, bf16), then
     with fused_backward: false: peak memory (from the UNet in place: weights, optimizer state,
     activations), seconds per step after warm-up (train.training_step and train.optimizer_step, the
     functions the training loop calls);
  2. one 1024 px sample at 30 steps, CFG 5, fp16 (sample.pipeline and sample.sample, the validation
     jobs' functions; random prompt embeddings stand in for the encoded prompts): s/image, peak memory;
  3. the extraction of a full-size pair (a base UNet and an epoch file that differs from it by a small
     random change, written as safetensors) on the GPU with lora.extract: seconds, peak memory.

Without CUDA it prints a "not measured: no GPU" line per figure and stops; `--tiny` runs the same code
on the tiny model (config/models/tiny) on the CPU at 64 px, which is what the tests do.

What it needs: torch, transformers, safetensors, numpy, PyYAML, Pillow, tqdm and diffusers, and this
checkout's scripts/ and config/. The CLIP vocabulary is not needed: no prompt is tokenised. On a GPU
machine without diffusers (pure Python), copy its wheel beside the checkout and name the folder:

    pip download --no-deps diffusers==<the version in envs/requirements.txt> -d wheels/
    python benchmarks/gpu_check.py --wheels wheels/          # on the GPU machine: 127 s on an H200
    python benchmarks/gpu_check.py --tiny                    # anywhere: the CPU, tiny model, a minute
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIGURES = ("training step (fused backward)", "training step (not fused)", "sample", "extraction")


def say(**figure) -> None:
    print(json.dumps(figure), flush=True)


class Peak:
    """Seconds and peak device memory (torch.cuda.max_memory_allocated, GiB; None on the CPU) of a block."""

    def __init__(self, device):
        self.device = device

    def sync(self) -> None:
        if self.device.type == "cuda":
            import torch

            torch.cuda.synchronize(self.device)

    def __enter__(self):
        import torch

        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
        self.sync()
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc):
        import torch

        self.sync()
        self.seconds = time.perf_counter() - self.started
        self.gib = torch.cuda.max_memory_allocated(self.device) / 2**30 if self.device.type == "cuda" else None


class _Timer:
    """Seconds of a block, synchronised with the device of `peak` (the peak stays the whole check's)."""

    def __init__(self, peak: Peak):
        self.peak = peak

    def __enter__(self):
        self.peak.sync()
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.peak.sync()
        self.seconds = time.perf_counter() - self.started


def random_unet(model: str, device, dtype, seed: int = 0):
    """SDXL's UNet (or the tiny one) of config/models/<model> with random weights, built on `device`."""
    import torch
    from diffusers import UNet2DConditionModel

    from charlora import sdxl

    torch.manual_seed(seed)
    with torch.device(device):
        unet = UNet2DConditionModel.from_config(sdxl.unet_config(sdxl.MODEL_CONFIGS / model))
    return unet.to(dtype)


def check_training(model: str, device, resolution: int, steps: int, fused_backward: bool) -> None:
    """train.training_step on two random images at `resolution` (a batch of 2), as the training loop calls it."""
    import torch

    from charlora import distributed, sdxl, train
    from charlora.optim import FusedBackward, make_optimizer
    from charlora.train_data import Encoded

    settings = train.Settings.from_schema(fused_backward=fused_backward, device=str(device))
    settings.check()
    config = sdxl.unet_config(sdxl.MODEL_CONFIGS / model)
    side = resolution // 8
    pooled_dim = config["projection_class_embeddings_input_dim"] - 6 * config["addition_time_embed_dim"]
    generator = torch.Generator().manual_seed(0)
    encoded = {
        f"image{i}": Encoded(
            latent=torch.randn(4, side, side, generator=generator),
            mask=torch.ones(1, side, side),
            prompt_embeds=torch.randn(77, config["cross_attention_dim"], generator=generator),
            pooled=torch.randn(pooled_dim, generator=generator),
            time_ids=torch.tensor([resolution, resolution, 0, 0, resolution, resolution], dtype=torch.float32),
            bucket=(resolution, resolution),
        )
        for i in range(2)
    }
    empty = {"prompt_embeds": torch.zeros(77, config["cross_attention_dim"]), "pooled": torch.zeros(pooled_dim)}
    data = train.StepData(encoded, empty, sdxl.noise_scheduler(sdxl.MODEL_CONFIGS / model).alphas_cumprod.float())
    world = distributed.World(rank=0, size=1, device=device)
    name = FIGURES[0] if fused_backward else FIGURES[1]
    unet = random_unet(model, device, settings.weight_dtype)  # built before the peak is measured:
    if settings.gradient_checkpointing:  # its fp32 draw is not the training's
        unet.enable_gradient_checkpointing()
    unet.train()
    with Peak(device) as whole:
        optimizer = make_optimizer(settings.optimizer, unet.parameters(), settings.lr, settings.seed)
        scaler = torch.amp.GradScaler(device.type, enabled=settings.precision == "fp16")
        fused = FusedBackward(optimizer) if settings.fused_backward else None
        times = []
        for step in range(steps):
            with _Timer(whole) as timer:
                losses = train.training_step(
                    unet, [sorted(encoded)], 0, 1, step, data, world, settings, optimizer, scaler, fused
                )
                if fused is None:
                    train.optimizer_step(optimizer, scaler)
            times.append(timer.seconds)
        if fused is not None:
            fused.remove()
    timed = times[2:] if len(times) > 2 else times
    say(
        figure=name,
        device=str(device),
        resolution=resolution,
        batch=2,
        optimizer=settings.optimizer,
        precision=settings.precision,
        gradient_checkpointing=settings.gradient_checkpointing,
        s_per_step=round(sum(timed) / len(timed), 4),
        warm_up_steps=len(times) - len(timed),
        peak_gib=whole.gib and round(whole.gib, 2),
        loss=round(losses.mean().item(), 5),
    )
    del unet, optimizer, fused


def check_sampling(model: str, device, resolution: int, steps: int) -> None:
    """One image through sample.pipeline and sample.sample (the validation job's code), after a 2-step warm-up."""
    import torch
    from diffusers import AutoencoderKL

    from charlora import sample, sdxl

    settings = sample.Settings(
        sampler="euler", steps=steps, cfg=5.0, negative_prompt="", resolution=resolution, seeds=1, device=str(device)
    )
    config = sdxl.unet_config(sdxl.MODEL_CONFIGS / model)
    pooled_dim = config["projection_class_embeddings_input_dim"] - 6 * config["addition_time_embed_dim"]
    generator = torch.Generator().manual_seed(0)
    prompt = {
        "prompt_embeds": torch.randn(1, 77, config["cross_attention_dim"], generator=generator),
        "pooled_prompt_embeds": torch.randn(1, pooled_dim, generator=generator),
    }
    negative = {key: torch.zeros_like(value) for key, value in prompt.items()}
    with torch.device(device):
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(sdxl.MODEL_CONFIGS / model / "vae"))
    pipe = sample.pipeline(sdxl.MODEL_CONFIGS / model, random_unet(model, device, torch.float32), settings, device, vae)
    with Peak(device) as whole:  # the sampling's peak, from the pipeline in place (fp16 on a GPU)
        sample.sample(pipe, [prompt], negative, [0], sample.Settings(**{**vars(settings), "steps": 2}))  # warm-up
        with _Timer(whole) as timer:
            [image] = sample.sample(pipe, [prompt], negative, [0], settings)
    say(
        figure=FIGURES[2],
        device=str(device),
        resolution=resolution,
        steps=steps,
        cfg=settings.cfg,
        dtype=str(pipe.unet.dtype).removeprefix("torch."),
        s_per_image=round(timer.seconds, 3),
        peak_gib=whole.gib and round(whole.gib, 2),
        size=list(image.size),
    )
    del pipe, vae


def check_extraction(model: str, device, folder: Path) -> None:
    """lora.extract of a base UNet folder and an epoch file 1e-3 x a random change away, on `device`."""
    import shutil

    import torch

    from charlora import lora, sdxl
    from charlora.config import schema_defaults

    base = folder / "base"
    (base / "unet").mkdir(parents=True, exist_ok=True)
    shutil.copy(sdxl.MODEL_CONFIGS / model / "unet" / "config.json", base / "unet" / "config.json")
    shutil.copy(sdxl.MODEL_CONFIGS / model / "model_index.json", base / "model_index.json")
    unet = random_unet(model, device, torch.float32)  # drawn on the device: fast on a GPU
    weights = {name: value.to("cpu", torch.float16) for name, value in unet.state_dict().items()}
    sdxl.save_safetensors(weights, base / "unet" / "diffusion_pytorch_model.safetensors")
    generator = torch.Generator().manual_seed(1)
    tuned = {
        name: (value.float() + 1e-3 * torch.randn(value.shape, generator=generator)).to(torch.bfloat16)
        for name, value in weights.items()
    }
    sdxl.save_safetensors(tuned, folder / "epoch-001.safetensors", {"charlora.epoch": "1"})
    del unet, weights, tuned
    settings = lora.Settings.from_config(schema_defaults()["lora"] | {"device": str(device)})
    with Peak(device) as peak:
        result = lora.extract(
            base, folder / "epoch-001.safetensors", settings, folder / "lora.safetensors", {}, None, False
        )
    say(
        figure=FIGURES[3],
        device=str(device),
        rank=settings.rank,
        conv_rank=settings.conv_rank,
        layers=result.layers,
        seconds=round(peak.seconds, 2),
        peak_gib=peak.gib and round(peak.gib, 2),
        lora_mb=round((folder / "lora.safetensors").stat().st_size / 1e6, 1),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="the tiny model on the CPU at 64 px (the tests)")
    parser.add_argument("--wheels", type=Path, help="a folder of pure-Python wheels to import from (diffusers)")
    parser.add_argument("--steps", type=int, default=5, help="training steps per set-up, the first 2 warm-up")
    parser.add_argument("--keep", type=Path, help="write the extraction's pair here and keep it")
    args = parser.parse_args()
    for wheel in sorted(args.wheels.glob("*.whl")) if args.wheels else []:
        sys.path.insert(0, str(wheel))
    sys.path.insert(0, str(REPO / "scripts"))
    import diffusers
    import torch
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.set_verbosity_error()
    if args.tiny:
        device, model, resolution, sample_steps = torch.device("cpu"), "tiny", 64, 4
    elif torch.cuda.is_available():
        device, model, resolution, sample_steps = torch.device("cuda"), "sdxl", 1024, 30
    else:
        for figure in FIGURES:
            say(figure=figure, result="not measured: no GPU")
        return
    say(
        figure="device",
        device=str(device),
        name=torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        torch=torch.__version__,
        diffusers=diffusers.__version__,
        model=model,
    )
    folder = args.keep or Path(tempfile.mkdtemp(prefix="charlora-gpu-check-"))
    checks = {
        FIGURES[0]: lambda: check_training(model, device, resolution, args.steps, fused_backward=True),
        FIGURES[1]: lambda: check_training(model, device, resolution, args.steps, fused_backward=False),
        FIGURES[2]: lambda: check_sampling(model, device, resolution, sample_steps),
        FIGURES[3]: lambda: check_extraction(model, device, folder),
    }
    failed = []
    try:
        for figure, check in checks.items():  # one failure (out of memory, say) does not cost the other figures
            try:
                check()
            except Exception as error:
                traceback.print_exc()
                say(figure=figure, result=f"failed: {type(error).__name__}: {error}"[:500])
                failed.append(figure)
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()
    finally:
        if not args.keep:
            import shutil

            shutil.rmtree(folder, ignore_errors=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
