"""How closely base model + LoRA reproduces the fine-tuned UNet it was extracted from.

Two measurements, both from the files (never from what the extraction believes it wrote):

1. The UNet's output. On fixed noisy latents, timesteps and prompts, the noise prediction of
   - the base UNet                          out_base
   - the base UNet with the LoRA, loaded by diffusers (`load_lora_into_unet`, the code ComfyUI-like
     loaders mirror), not by us             out_lora
   - the fine-tuned UNet                    out_tuned
   reproduced = 1 - ||out_lora - out_tuned|| / ||out_base - out_tuned||
   The base is taken in the epoch file's precision, as training started from it (lora.weight_change).
   1 is the whole effect of the fine-tune, 0 is none of it (the base model), below 0 is a LoRA that
   pushes the wrong way. One UNet is held at a time, on small latents (a full-size SDXL pair fits in
   24 GB of RAM).

2. Each layer. With delta = W_tuned - W_base and the file's factors (scale = alpha / rank):
   relative error   = ||delta - scale * up @ down|| / ||delta||     (0 is exact)
   energy retained  = ||delta Q||² / ||delta||², Q an orthonormal basis of down's rows: the share of
                      the change that lies in the directions the LoRA can express (for a truncated SVD,
                      the sum of the kept singular values squared over all of them).
   Layers left out by `min_diff` count as relative error 1 and energy 0.
"""

from __future__ import annotations

import logging
import math
import statistics
from pathlib import Path

import torch
from safetensors import safe_open

from charlora import lora, sdxl

log = logging.getLogger("charlora.lora_verify")

TIMESTEPS = (100, 300, 500, 700, 900)
LATENT_SIZE = 32  # latents of 32 x 32 = 256 x 256 pixels: enough to exercise every layer, cheap on a CPU
SEED = 0


def prompts(token: str) -> list[str]:
    """The fixed prompts: the token alone, two in the caption format, and the empty prompt (the
    unconditional half of classifier-free guidance, which the LoRA changes too)."""
    return [
        token,
        f"{token}, standing, smiling, soft light, studio background, full body",
        f"{token}, sitting, serious, outdoor, close-up",
        "",
    ]


def _round(x: float) -> float:
    return float(f"{x:.6g}")


def layer_checks(base_model: Path, epoch_file: Path, lora_file: Path, settings: lora.Settings) -> list[dict]:
    """Relative error and energy retained of every layer the LoRA settings cover."""
    config = sdxl.unet_config(base_model)
    shapes = sdxl.unet_shapes(config)
    base, tuned = sdxl.UNetWeights(base_model, config), sdxl.UNetWeights(epoch_file, config)
    rows = []
    with safe_open(str(lora_file), framework="pt") as factors:
        keys = set(factors.keys())
        for target in lora.targets(shapes, config, settings.rank, settings.conv_rank):
            name = target.module + ".weight"
            delta = lora.weight_change(base.get(name), tuned.get(name), target.shape).flatten(1)
            norm = delta.norm().item()
            row = {"name": target.lora_name, "kind": target.kind, "max_change": _round(delta.abs().max().item())}
            if f"{target.lora_name}.lora_up.weight" not in keys:
                rows.append(row | {"rank": 0, "relative_error": 1.0, "energy_retained": 0.0})
                continue
            up = factors.get_tensor(f"{target.lora_name}.lora_up.weight").float().flatten(1)
            down = factors.get_tensor(f"{target.lora_name}.lora_down.weight").float().flatten(1)
            if (up.shape[0], down.shape[1]) != tuple(delta.shape):
                raise lora.LoraError(
                    f"{lora_file}: {target.lora_name} has factors of {list(up.shape)} and "
                    f"{list(down.shape)}, which cannot make the layer's {list(delta.shape)}"
                )
            scale = factors.get_tensor(f"{target.lora_name}.alpha").float().item() / down.shape[0]
            Q = torch.linalg.qr(down.T).Q
            error = (delta - scale * up @ down).norm().item()
            rows.append(
                row
                | {
                    "rank": down.shape[0],
                    "relative_error": _round(error / norm) if norm else 0.0,
                    "energy_retained": _round((delta @ Q).square().sum().item() / norm**2) if norm else 1.0,
                }
            )
    return rows


@torch.no_grad()
def _predict(unet, latents: torch.Tensor, embeds: list[dict], device) -> dict[int, torch.Tensor]:
    """The UNet's noise prediction (fp32, on the CPU) for every (timestep, prompt) pair."""
    unet.to(device).eval()
    prompt = torch.stack([e["prompt_embeds"] for e in embeds]).to(device)
    pooled = torch.stack([e["pooled"] for e in embeds]).to(device)
    side = LATENT_SIZE * 8
    time_ids = torch.tensor([[side, side, 0, 0, side, side]] * len(embeds), dtype=torch.float32, device=device)
    out = {}
    for i, t in enumerate(TIMESTEPS):
        out[t] = (
            unet(
                latents[i].to(device),
                torch.full((len(embeds),), t, device=device),
                prompt,
                added_cond_kwargs={"text_embeds": pooled, "time_ids": time_ids},
                return_dict=False,
            )[0]
            .float()
            .cpu()
        )
    return out


class _Warnings(logging.Handler):
    """Collects what diffusers and peft warn while loading the LoRA (unmatched or missing keys)."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def load_lora_with_diffusers(unet, lora_file: Path) -> tuple[int, list[str]]:
    """Apply a kohya-format LoRA file to `unet` the way diffusers' StableDiffusionXLPipeline.load_lora_weights
    does; return how many layers it adapted and what it warned."""
    from diffusers import StableDiffusionXLPipeline

    catcher = _Warnings()
    loggers = [logging.getLogger(name) for name in ("diffusers", "peft")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:  # sdxl.load_sdxl silences diffusers below errors: hear its warnings here
        logger.addHandler(catcher)
        logger.setLevel(logging.WARNING)
    try:
        state, alphas = StableDiffusionXLPipeline.lora_state_dict(str(lora_file), unet_config=unet.config)
        StableDiffusionXLPipeline.load_lora_into_unet(state, alphas, unet=unet)
    except Exception as exc:  # diffusers raises KeyError, ValueError, ... on a malformed file
        raise lora.LoraError(f"diffusers cannot load {lora_file}: {type(exc).__name__}: {exc}") from None
    finally:
        for logger, level in zip(loggers, levels):
            logger.removeHandler(catcher)
            logger.setLevel(level)
    adapted = sum(1 for m in unet.modules() if hasattr(m, "lora_A") and len(m.lora_A))
    return adapted, catcher.messages


def verify(base_model: Path, epoch_file: Path, lora_file: Path, settings: lora.Settings, token: str) -> dict:
    """The verification record of one LoRA file (written as epoch-<eee>.verify.json)."""
    base_model, epoch_file, lora_file = Path(base_model), Path(epoch_file), Path(lora_file)
    device = sdxl.pick_device(settings.device)
    layers = layer_checks(base_model, epoch_file, lora_file, settings)
    in_file = [r for r in layers if r["rank"]]
    log.info(
        "per layer: %d layers, %d in the file, median relative error %.4f",
        len(layers),
        len(in_file),
        statistics.median(r["relative_error"] for r in layers),
    )

    text = sdxl.load_sdxl(base_model, with_unet=False)
    embeds = [sdxl.encode_prompt(text, p, "cpu") for p in prompts(token)]
    del text
    generator = torch.Generator().manual_seed(SEED)
    unet = sdxl.load_unet(base_model)
    with safe_open(str(epoch_file), framework="pt") as f:
        epoch_dtype = f.get_tensor("conv_in.weight").dtype
    with torch.no_grad():  # the base as training started from it
        for p in unet.parameters():
            p.copy_(lora.as_trained(p, epoch_dtype))
    latents = torch.randn(
        len(TIMESTEPS), len(embeds), unet.config.in_channels, LATENT_SIZE, LATENT_SIZE, generator=generator
    )
    out_base = _predict(unet, latents, embeds, device)
    adapted, warnings = load_lora_with_diffusers(unet, lora_file)
    out_lora = _predict(unet, latents, embeds, device)
    del unet
    out_tuned = _predict(sdxl.load_epoch_unet(epoch_file, base_model), latents, embeds, device)

    def reproduced(ts) -> float:
        effect = math.sqrt(sum((out_base[t] - out_tuned[t]).square().sum().item() for t in ts))
        miss = math.sqrt(sum((out_lora[t] - out_tuned[t]).square().sum().item() for t in ts))
        return _round(1 - miss / effect) if effect else float("nan")

    with safe_open(str(lora_file), framework="pt") as f:
        metadata = f.metadata() or {}
    record = {
        "lora": str(lora_file),
        "epoch_file": str(epoch_file),
        "base_model": str(base_model),
        "epoch": int(metadata.get("charlora.epoch", 0)) or None,
        "reproduced": reproduced(TIMESTEPS),
        "reproduced_by_timestep": {str(t): reproduced([t]) for t in TIMESTEPS},
        "loaded_by_diffusers": {"layers_in_file": len(in_file), "layers_adapted": adapted, "warnings": warnings},
        "layers": {
            "covered": len(layers),
            "in_file": len(in_file),
            "left_out_by_min_diff": [r["name"] for r in layers if not r["rank"]],
            "relative_error": _summary([r["relative_error"] for r in layers]),
            "energy_retained": _summary([r["energy_retained"] for r in layers]),
        },
        "setup": {"prompts": prompts(token), "timesteps": list(TIMESTEPS), "latent_size": LATENT_SIZE, "seed": SEED},
        "per_layer": layers,
    }
    log.info(
        "reproduced %.4f of the fine-tune's effect on the UNet output (%s)",
        record["reproduced"],
        ", ".join(f"t={t}: {v:.3f}" for t, v in record["reproduced_by_timestep"].items()),
    )
    if warnings or adapted != len(in_file):
        log.warning("diffusers adapted %d of the %d layers in %s: %s", adapted, len(in_file), lora_file, warnings)
    return record


def _summary(values: list[float]) -> dict[str, float]:
    return {
        "mean": _round(statistics.fmean(values)),
        "median": _round(statistics.median(values)),
        "min": _round(min(values)),
        "max": _round(max(values)),
    }


def plot(record: dict, path: Path) -> None:
    """The verification at a glance: reproduced share per timestep; per-layer error and energy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from charlora.atomic import atomic_path

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6.5), dpi=100)
    steps = record["reproduced_by_timestep"]
    top.bar(list(steps), list(steps.values()), color="tab:blue")
    top.axhline(1.0, color="grey", lw=0.8, ls="--")
    top.set_ylim(min(0.0, *steps.values()), 1.05)
    top.set_xlabel("timestep")
    top.set_ylabel("share reproduced")
    top.set_title(f"{Path(record['lora']).name}: reproduces {record['reproduced']:.3f} of the fine-tune's effect")
    rows = record["per_layer"]
    bottom.plot([r["relative_error"] for r in rows], ".", ms=3, label="relative error")
    bottom.plot([r["energy_retained"] for r in rows], ".", ms=3, label="energy retained")
    bottom.set_xlabel(f"layer (kohya names, sorted; {len(rows)} layers)")
    bottom.set_ylim(-0.02, 1.02)
    bottom.legend(loc="center right")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", metadata={"Software": None})  # no version stamp: same bytes on a rebuild
    plt.close(fig)
