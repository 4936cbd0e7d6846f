"""Validation samples: every prompt x seed, from one epoch's UNet, through diffusers' SDXL pipeline.

The guide validates each saved epoch by generating images with fixed prompts and seeds and comparing
them across epochs. One sampling job handles one epoch: the epoch's UNet with the base model's VAE,
text encoders and noise schedule (epoch 0 is the base model itself, the reference column). The
starting noise of each image is drawn on the CPU from its seed alone, so the same seed gives the
same image in every epoch, which is what makes the columns of the comparison sheet comparable.

Each image is a PNG with its prompt and settings in a `parameters` text chunk, in the format that
A1111/Forge write, which image hosts and viewers read, and with a ComfyUI workflow that sets up the
same test (`prompt` and `workflow` chunks: comfyui.py). The grid of an epoch and the comparison sheet
(validate_plots.py) are drawn from those files.
"""

from __future__ import annotations

import csv
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image, PngImagePlugin

from charlora import atomic, comfyui, sdxl

log = logging.getLogger("charlora.sample")

# config name -> (diffusers scheduler class, its options, the name A1111 writes)
SAMPLERS = {
    "euler": ("EulerDiscreteScheduler", {}, "Euler"),
    "euler_a": ("EulerAncestralDiscreteScheduler", {}, "Euler a"),
    "dpmpp_2m": ("DPMSolverMultistepScheduler", {}, "DPM++ 2M"),
    "dpmpp_2m_karras": ("DPMSolverMultistepScheduler", {"use_karras_sigmas": True}, "DPM++ 2M Karras"),
    "ddim": ("DDIMScheduler", {}, "DDIM"),
    "unipc": ("UniPCMultistepScheduler", {}, "UniPC"),
}


@dataclass(frozen=True)
class Settings:
    """config `validate:`, the part that decides the pixels (meanings and defaults: config/schema.yaml)."""

    sampler: str
    steps: int
    cfg: float
    negative_prompt: str
    resolution: int
    seeds: int
    device: str

    @classmethod
    def from_config(cls, section: dict) -> "Settings":
        return cls(**{k: section[k] for k in cls.__dataclass_fields__})

    @property
    def seed_values(self) -> list[int]:
        return list(range(self.seeds))


@dataclass(frozen=True)
class Prompt:
    name: str  # p01, p02, ...: the prefix of its image files
    origin: str  # where it comes from: token, validation image <id>, extra
    text: str


PROMPT_COLUMNS = ["name", "origin", "prompt"]


def write_prompts(path: Path, prompts: list[Prompt]) -> None:
    atomic.write_tsv(path, PROMPT_COLUMNS, ((p.name, p.origin, p.text) for p in prompts))


def read_prompts(path: Path) -> list[Prompt]:
    with open(path, newline="", encoding="utf-8") as f:
        return [Prompt(row["name"], row["origin"], row["prompt"]) for row in csv.DictReader(f, delimiter="\t")]


def image_name(prompt: Prompt, seed: int) -> str:
    return f"{prompt.name}-s{seed}.png"


def parameters_text(prompt: str, settings: Settings, seed: int, model: str) -> str:
    """The `parameters` chunk as A1111/Forge write it: prompt, negative prompt, then one settings line."""
    lines = [prompt]
    if settings.negative_prompt:
        lines.append(f"Negative prompt: {settings.negative_prompt}")
    size = f"{settings.resolution}x{settings.resolution}"
    lines.append(
        f"Steps: {settings.steps}, Sampler: {SAMPLERS[settings.sampler][2]}, CFG scale: {settings.cfg:g}, "
        f"Seed: {seed}, Size: {size}, Model: {model}, Version: charlora"
    )
    return "\n".join(lines)


def comfyui_test(
    prompt: str, settings: Settings, seed: int, model: str, checkpoint: str, lora: str | None
) -> comfyui.Test:
    """The sample as a ComfyUI test: the base model's `checkpoint` file with the epoch's `lora` (None for
    the base model), the same prompts, seed, sampler, steps, CFG and size."""
    return comfyui.Test(
        prompt=prompt,
        negative_prompt=settings.negative_prompt,
        seed=seed,
        steps=settings.steps,
        cfg=settings.cfg,
        sampler=settings.sampler,
        resolution=settings.resolution,
        checkpoint=checkpoint,
        lora=lora,
        filename_prefix=f"charlora/{model}-s{seed}",
    )


def save_png(image: Image.Image, path: Path, chunks: dict[str, str]) -> None:
    """`image` as a PNG with `chunks` as text chunks, in their order."""
    info = PngImagePlugin.PngInfo()
    for key, text in chunks.items():
        info.add_text(key, text)
    atomic.save_image(image, path, pnginfo=info)


def pipeline(base_model: Path, unet: torch.nn.Module, settings: Settings, device: torch.device):
    """diffusers' StableDiffusionXLPipeline from the base model's parts and `unet`, offline. fp16 on a
    GPU (the pipeline decodes in fp32 where SDXL's VAE asks for it), fp32 on the CPU."""
    import diffusers

    parts = sdxl.load_sdxl(base_model, with_unet=False)
    class_name, options, _ = SAMPLERS[settings.sampler]
    scheduler = getattr(diffusers, class_name).from_pretrained(
        sdxl.config_dir(base_model), subfolder="scheduler", **options
    )
    pipe = diffusers.StableDiffusionXLPipeline(
        vae=parts.vae,
        text_encoder=parts.text_encoder,
        text_encoder_2=parts.text_encoder_2,
        tokenizer=parts.tokenizer,
        tokenizer_2=parts.tokenizer_2,
        unet=unet,
        scheduler=scheduler,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device, torch.float16 if device.type == "cuda" else torch.float32)


def starting_noise(seed: int, settings: Settings, pipe) -> torch.Tensor:
    """The initial latents of a seed, drawn on the CPU (the same numbers on any device)."""
    size = settings.resolution // pipe.vae_scale_factor
    noise = torch.randn((1, pipe.unet.config.in_channels, size, size), generator=torch.Generator().manual_seed(seed))
    return noise.to(pipe.device, pipe.unet.dtype)


@torch.no_grad()
def sample(pipe, prompt: str, seed: int, settings: Settings) -> Image.Image:
    return pipe(
        prompt=prompt,
        negative_prompt=settings.negative_prompt or None,
        height=settings.resolution,
        width=settings.resolution,
        num_inference_steps=settings.steps,
        guidance_scale=settings.cfg,
        latents=starting_noise(seed, settings, pipe),
        output_type="pil",
    ).images[0]


def sample_epoch(
    base_model: Path,
    epoch_file: Path | None,
    prompts: list[Prompt],
    settings: Settings,
    out_dir: Path,
    model: str,
    lora_name: str | None = None,
    progress: bool = True,
) -> list[Path]:
    """Every prompt x seed from one epoch's UNet (`epoch_file`; None: the base model's) into `out_dir`,
    which appears whole or not at all. `model` names the samples in their metadata, `lora_name` is the
    epoch's LoRA as ComfyUI will find it. Returns the image paths, prompt by prompt."""
    from tqdm import tqdm

    torch.use_deterministic_algorithms(True, warn_only=True)
    device = sdxl.pick_device(settings.device)
    unet = sdxl.load_epoch_unet(epoch_file, base_model) if epoch_file else sdxl.load_unet(base_model)
    pipe = pipeline(base_model, unet, settings, device)
    jobs = [(p, seed) for p in prompts for seed in settings.seed_values]
    log.info(
        "sampling %s on %s: %d prompts x %d seeds, %s, %d steps, cfg %g, %d px",
        model,
        device,
        len(prompts),
        settings.seeds,
        settings.sampler,
        settings.steps,
        settings.cfg,
        settings.resolution,
    )
    started = time.perf_counter()
    with atomic.atomic_dir(out_dir) as tmp:
        for prompt, seed in tqdm(jobs, desc=model, unit="image", disable=not progress):
            image = sample(pipe, prompt.text, seed, settings)
            test = comfyui_test(prompt.text, settings, seed, f"{model}-{prompt.name}", base_model.name, lora_name)
            chunks = {"parameters": parameters_text(prompt.text, settings, seed, model), **comfyui.png_chunks(test)}
            save_png(image, tmp / image_name(prompt, seed), chunks)
    seconds = time.perf_counter() - started
    log.info("%d images in %.1f s: %.2f s per image", len(jobs), seconds, seconds / len(jobs))
    return [out_dir / image_name(p, seed) for p, seed in jobs]
