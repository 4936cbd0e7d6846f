"""Validation samples: every prompt x seed, from one epoch's UNet, through diffusers' SDXL pipeline.

The guide validates each saved epoch by generating images with fixed prompts and seeds and comparing
them across epochs. One sampling job handles one epoch: the epoch's UNet with the base model's VAE
and noise schedule (epoch 0 is the base model itself, the reference column). The text encoders are
frozen, so the prompts are encoded once per run (`write_embeddings`, rule prompt_embeddings: on the
CPU, in fp32, with diffusers' own encode_prompt) and every epoch reads the same embeddings; a
sampling job does not load the text encoders at all.

Each image has its own generator, seeded by its seed alone and drawn on the CPU: first its starting
noise, then whatever noise the sampler adds on the way (the ancestral samplers). So the same seed
gives the same image in every epoch, which is what makes the columns of the comparison sheet
comparable, and an image does not depend on which others share its batch (`validate.batch` images
go through the UNet together; the last bits of a float may differ between batch sizes, as between
two GPU models, so the batch size is part of what decides the pixels).

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
    batch: int = 1

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


def image_seed(path: Path) -> int:
    """The seed of a sample file that image_name named."""
    return int(Path(path).stem.rsplit("-s", 1)[1])


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


EMBEDDINGS = ("prompt_embeds", "pooled_prompt_embeds")  # each prompt's, as diffusers' pipeline takes them
NEGATIVE = "negative"  # the negative prompt's entry in the embeddings file


@torch.no_grad()
def write_embeddings(base_model: Path, prompts: list[Prompt], negative_prompt: str, out: Path) -> None:
    """Every prompt's embeddings and the negative prompt's, from the base model's text encoders (on the
    CPU, fp32), into one safetensors file: `<name>.prompt_embeds`, `<name>.pooled_prompt_embeds` per
    prompt and `negative.*` once (zeros for an empty negative prompt: SDXL's force_zeros_for_empty_prompt,
    as the pipeline does it). Its metadata names each prompt's text, so that a sampling job can check
    that the file fits its prompts table."""
    import diffusers

    parts = sdxl.load_sdxl(base_model, with_unet=False)
    pipe = diffusers.StableDiffusionXLPipeline(
        vae=parts.vae,
        text_encoder=parts.text_encoder,
        text_encoder_2=parts.text_encoder_2,
        tokenizer=parts.tokenizer,
        tokenizer_2=parts.tokenizer_2,
        unet=None,
        scheduler=None,
    )
    tensors: dict[str, torch.Tensor] = {}
    for index, prompt in enumerate(prompts):
        with_negative = index == 0  # the negative prompt is the same for every prompt: encoded once
        positive, negative, pooled, negative_pooled = pipe.encode_prompt(
            prompt.text,
            device=torch.device("cpu"),
            num_images_per_prompt=1,
            do_classifier_free_guidance=with_negative,
            negative_prompt=negative_prompt or None,
        )
        tensors |= {f"{prompt.name}.prompt_embeds": positive, f"{prompt.name}.pooled_prompt_embeds": pooled}
        if with_negative:
            tensors |= {f"{NEGATIVE}.prompt_embeds": negative, f"{NEGATIVE}.pooled_prompt_embeds": negative_pooled}
    sdxl.save_safetensors(
        {k: v.contiguous() for k, v in sorted(tensors.items())}, out, embedded_texts(prompts, negative_prompt)
    )


def embedded_texts(prompts: list[Prompt], negative_prompt: str) -> dict[str, str]:
    """The embeddings file's metadata: each prompt's name -> its text, and the negative prompt."""
    return {prompt.name: prompt.text for prompt in prompts} | {NEGATIVE: negative_prompt}


def read_embeddings(path: Path, prompts: list[Prompt], negative_prompt: str) -> dict[str, dict[str, torch.Tensor]]:
    """name -> {prompt_embeds, pooled_prompt_embeds} for every prompt and `negative`, after checking
    that the file was made from these prompts' texts."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        texts = f.metadata() or {}
        expected = embedded_texts(prompts, negative_prompt)
        wrong = [name for name, text in expected.items() if texts.get(name) != text]
        if wrong:
            raise ValueError(
                f"{path}: the embeddings of {', '.join(wrong)} were made from other prompt texts; "
                "rebuild it (snakemake makes it from prompts.tsv)"
            )
        return {name: {key: f.get_tensor(f"{name}.{key}") for key in EMBEDDINGS} for name in expected}


def pipeline(base_model: Path, unet: torch.nn.Module, settings: Settings, device: torch.device, vae=None):
    """diffusers' StableDiffusionXLPipeline from `unet` and the base model's VAE (or `vae`) and noise
    schedule, offline, without text encoders (the prompts come as embeddings). fp16 on a GPU (the
    pipeline decodes in fp32 where SDXL's VAE asks for it), fp32 on the CPU."""
    import diffusers

    class_name, options, _ = SAMPLERS[settings.sampler]
    scheduler = getattr(diffusers, class_name).from_pretrained(
        sdxl.config_dir(base_model), subfolder="scheduler", **options
    )
    pipe = diffusers.StableDiffusionXLPipeline(
        vae=vae if vae is not None else sdxl.load_vae(base_model),
        text_encoder=None,
        text_encoder_2=None,
        tokenizer=None,
        tokenizer_2=None,
        unet=unet,
        scheduler=scheduler,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device, torch.float16 if device.type == "cuda" else torch.float32)


def generator(seed: int) -> torch.Generator:
    """An image's own random numbers: its starting noise first, then the sampler's."""
    return torch.Generator().manual_seed(seed)


def starting_noise(generators: list[torch.Generator], settings: Settings, pipe) -> torch.Tensor:
    """The initial latents of a batch, each image's drawn on the CPU from its own generator (the same
    numbers on any device and in any batch)."""
    size = settings.resolution // pipe.vae_scale_factor
    shape = (1, pipe.unet.config.in_channels, size, size)
    noise = torch.cat([torch.randn(shape, generator=g) for g in generators])
    return noise.to(pipe.device, pipe.unet.dtype)


@torch.no_grad()
def sample(
    pipe,
    embeddings: list[dict[str, torch.Tensor]],
    negative: dict[str, torch.Tensor],
    seeds: list[int],
    settings: Settings,
) -> list[Image.Image]:
    """One batch: the images of these prompts' `embeddings`, each from its seed."""

    def batch(key: str, items: list[dict[str, torch.Tensor]]) -> torch.Tensor:
        return torch.cat([item[key] for item in items]).to(pipe.device, pipe.unet.dtype)

    generators = [generator(seed) for seed in seeds]
    return pipe(
        prompt_embeds=batch("prompt_embeds", embeddings),
        pooled_prompt_embeds=batch("pooled_prompt_embeds", embeddings),
        negative_prompt_embeds=batch("prompt_embeds", [negative] * len(seeds)),
        negative_pooled_prompt_embeds=batch("pooled_prompt_embeds", [negative] * len(seeds)),
        height=settings.resolution,
        width=settings.resolution,
        num_inference_steps=settings.steps,
        guidance_scale=settings.cfg,
        latents=starting_noise(generators, settings, pipe),
        generator=generators,
        output_type="pil",
    ).images


def sample_epoch(
    base_model: Path,
    epoch_file: Path | None,
    prompts: list[Prompt],
    embeddings: Path,
    settings: Settings,
    out_dir: Path,
    model: str,
    lora_name: str | None = None,
    progress: bool = True,
) -> list[Path]:
    """Every prompt x seed from one epoch's UNet (`epoch_file`; None: the base model's) and the prompts'
    `embeddings` (write_embeddings) into `out_dir`, which appears whole or not at all, `settings.batch`
    images at a time. `model` names the samples in their metadata, `lora_name` is the epoch's LoRA as
    ComfyUI will find it. Returns the image paths, prompt by prompt."""
    from tqdm import tqdm

    torch.use_deterministic_algorithms(True, warn_only=True)
    device = sdxl.pick_device(settings.device)
    encoded = read_embeddings(embeddings, prompts, settings.negative_prompt)
    unet = sdxl.load_epoch_unet(epoch_file, base_model) if epoch_file else sdxl.load_unet(base_model)
    pipe = pipeline(base_model, unet, settings, device)
    jobs = [(p, seed) for p in prompts for seed in settings.seed_values]
    log.info(
        "sampling %s on %s: %d prompts x %d seeds in batches of %d, %s, %d steps, cfg %g, %d px",
        model,
        device,
        len(prompts),
        settings.seeds,
        settings.batch,
        settings.sampler,
        settings.steps,
        settings.cfg,
        settings.resolution,
    )
    started = time.perf_counter()
    with (
        atomic.atomic_dir(out_dir) as tmp,
        tqdm(total=len(jobs), desc=model, unit="image", disable=not progress) as bar,
    ):
        for first in range(0, len(jobs), settings.batch):
            batch = jobs[first : first + settings.batch]
            images = sample(
                pipe, [encoded[p.name] for p, _ in batch], encoded[NEGATIVE], [seed for _, seed in batch], settings
            )
            for (prompt, seed), image in zip(batch, images):
                test = comfyui_test(prompt.text, settings, seed, f"{model}-{prompt.name}", base_model.name, lora_name)
                chunks = {"parameters": parameters_text(prompt.text, settings, seed, model), **comfyui.png_chunks(test)}
                save_png(image, tmp / image_name(prompt, seed), chunks)
            bar.update(len(batch))
    seconds = time.perf_counter() - started
    log.info("%d images in %.1f s: %.2f s per image", len(jobs), seconds, seconds / len(jobs))
    return [out_dir / image_name(p, seed) for p, seed in jobs]
