"""The miniature world: people drawn by demo_render.py who are not mira, with captions in the caption
vocabulary, and the pretraining of a small SDXL-layout base model on them (its VAE, then its UNet),
so that the demo fine-tunes a model that already draws people and follows prompts.

scripts/pretrain_miniature.py runs it; it is not part of the workflow's graph (an edit here must never
start a two-hour job). Everything random comes from generators seeded by (seed, what, index), and the
script fixes the number of CPU threads, so the same settings give the same weights on a machine of
the same kind.

Per VAE step (AutoencoderKL, the SD recipe without its adversarial and perceptual terms), on square crops
of the world's pictures and of people with hair of any colour but mira's, half of them with their hues
turned (vae_batch: so that the VAE codes colours, not the world's palette):
    z ~ q(z | x) = N(μ(x), σ(x)²)        loss = mean |decode(z) - x| + mean (decode(z) - x)² + β KL(q || N(0, I))
Per UNet step: the fine-tune's loss (diffusion.py, epsilon prediction on SDXL's schedule), on the VAE's
latents (μ, scaled to unit variance) and the frozen text encoders' embeddings of each caption; a
caption is dropped (zero embeddings: what the sampler's empty negative prompt is) with
`caption_dropout`, so that classifier-free guidance has an unconditional model to push away from.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors import safe_open

from charlora import demo
from charlora.demo import Look, Shot

log = logging.getLogger("charlora.miniature")

# What the world's people look like. mira's trait (demo.MIRA's hair) is none of these.
SKINS = ((241, 210, 185), (226, 182, 152), (198, 150, 110), (160, 110, 75), (112, 74, 50))
HAIRS = ((28, 24, 22), (122, 84, 48), (200, 164, 100), (140, 62, 34), (156, 156, 156))
EYES = ((52, 86, 60), (60, 90, 150), (80, 55, 35), (90, 90, 90))
LOOK_CHOICES = tuple(Look(skin, hair, eye) for skin in SKINS for hair in HAIRS for eye in EYES)
POSES = ("standing", "waving", "hands on hips", "arms crossed", "arms up", "walking", "sitting")
EXPRESSIONS = ("smiling", "neutral", "serious", "surprised")
LIGHTS = ("soft frontal light", "side light", "backlight")
FRAMINGS = ("close_up", "mid_shot", "full_body")
FRAMING_WORDS = {"close_up": "close-up", "mid_shot": "mid shot", "full_body": "full body"}
SIZES = ((96, 128), (128, 128), (128, 96))  # (width, height): portrait, square, landscape
DRAW_SCALE = 4  # drawn at 4x and downscaled, as the demo's photos are for training at 128 px
CLASS_WORD = "person"  # what a caption of the world starts with (the demo's start with "mira")


def person(seed: int, index: int) -> Shot:
    """The world's picture number `index`: a random person, outfit, pose, backdrop, light and framing."""
    from charlora.demo_render import max_shift

    rng = np.random.default_rng([seed, index])
    width, height = SIZES[rng.integers(len(SIZES))]
    size = (width * DRAW_SCALE, height * DRAW_SCALE)
    framings = [f for f in FRAMINGS if max_shift(f, size) >= 0]  # a wide full-body shot is off the canvas
    framing = framings[rng.integers(len(framings))]
    limit = min(0.2, max_shift(framing, size))
    return Shot(
        name=f"person_{index:05d}.png",
        framing=framing,
        pose=POSES[rng.integers(len(POSES))],
        expression=EXPRESSIONS[rng.integers(len(EXPRESSIONS))],
        outfit=list(demo.OUTFITS)[rng.integers(len(demo.OUTFITS))],
        background=demo.BACKDROPS[rng.integers(len(demo.BACKDROPS))],
        light=LIGHTS[rng.integers(len(LIGHTS))],
        size=size,
        shift=float(rng.uniform(-limit, limit)),
        seed=int(rng.integers(2**31)),
        look=LOOK_CHOICES[rng.integers(len(LOOK_CHOICES))],
    )


def caption(shot: Shot, subject: str = CLASS_WORD) -> str:
    """The caption of a drawn shot in the guide's format (caption_slots.yaml's order and words):
    subject, pose, expression, lighting, clothing, background, composition."""
    expression = "neutral expression" if shot.expression == "neutral" else shot.expression
    parts = [subject, shot.pose, expression, shot.light, shot.outfit, f"{shot.background} background"]
    return ", ".join(parts + [FRAMING_WORDS[shot.framing]])


def picture(shot: Shot) -> Image.Image:
    """The shot drawn and downscaled to its training size (a quarter of its drawn size)."""
    from charlora.demo_render import render

    size = (shot.size[0] // DRAW_SCALE, shot.size[1] // DRAW_SCALE)
    return render(shot).resize(size, Image.Resampling.LANCZOS)


def as_tensor(image: Image.Image) -> torch.Tensor:
    """RGB in [-1, 1], (3, h, w)."""
    return torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 127.5 - 1).permute(2, 0, 1)


@dataclass(frozen=True)
class Settings:
    """How the miniature base is made (scripts/pretrain_miniature.py's options)."""

    pictures: int = 6000
    vae_any_hair: int = 1000  # people with hair of any colour but mira's, for the VAE alone (any_hair)
    vae_steps: int = 3000
    vae_batch: int = 16
    vae_crop: int = 64  # the VAE trains on square crops of this side: a quarter of a picture's cost a step
    vae_hue_turn: float = 0.5  # the share of its crops whose hues are turned about the grey axis at random
    vae_lr: float = 1e-3
    kl_weight: float = 1e-6
    unet_steps: int = 6000
    unet_batch: int = 32
    unet_lr: float = 1e-3
    caption_dropout: float = 0.1
    noise_offset: float = 0.1  # per-channel offset noise: without it the samples took their colour from the seed
    text_token_scale: float = 50.0  # the random text encoders' token embeddings, times CLIP's init (build)
    text_position_scale: float = 10.0  # and their position embeddings
    warmup: int = 200
    seed: int = 0
    threads: int = 2
    device: str = "cpu"  # the committed weights are made on the CPU; cuda to try settings quickly


def lr_at(step: int, steps: int, peak: float, warmup: int) -> float:
    """Linear warmup to `peak`, then a cosine down to a tenth of it."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def by_size(shots: list[Shot]) -> dict[tuple[int, int], list[int]]:
    """The indices of `shots` grouped by training size (a batch holds one size)."""
    groups: dict[tuple[int, int], list[int]] = {}
    for i, shot in enumerate(shots):
        groups.setdefault((shot.size[0] // DRAW_SCALE, shot.size[1] // DRAW_SCALE), []).append(i)
    return groups


def batches(groups: dict[tuple[int, int], list[int]], batch: int, seed: int, what: str, step: int) -> list[int]:
    """Step `step`'s batch: a size drawn in proportion to its pictures, then `batch` of them."""
    rng = np.random.default_rng([seed, sum(map(ord, what)), step])
    sizes = sorted(groups)
    counts = np.array([len(groups[s]) for s in sizes], dtype=np.float64)
    members = groups[sizes[rng.choice(len(sizes), p=counts / counts.sum())]]
    return [members[i] for i in rng.choice(len(members), size=min(batch, len(members)), replace=False)]


def hue_turn(angle: float) -> torch.Tensor:
    """The 3 x 3 rotation by `angle` (radians) about the grey axis of RGB in [-1, 1] (Rodrigues' formula):
    every hue moves round the colour wheel, brightness and greys stay."""
    k = torch.full((3,), 3**-0.5)
    cross = torch.tensor([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    return math.cos(angle) * torch.eye(3) + math.sin(angle) * cross + (1 - math.cos(angle)) * torch.outer(k, k)


def vae_batch(images: list[torch.Tensor], settings: Settings, step: int) -> torch.Tensor:
    """Step `step`'s VAE batch: `vae_batch` pictures, a random square crop of `vae_crop` pixels of each, and
    a `vae_hue_turn` share of the crops with their hues turned by a random angle (hue_turn)."""
    rng = np.random.default_rng([settings.seed, sum(map(ord, "vae")), step])
    crops = []
    for i in rng.choice(len(images), size=settings.vae_batch, replace=False):
        _, height, width = images[i].shape
        top, left = rng.integers(height - settings.vae_crop + 1), rng.integers(width - settings.vae_crop + 1)
        crop = images[i][:, top : top + settings.vae_crop, left : left + settings.vae_crop]
        if rng.random() < settings.vae_hue_turn:
            crop = torch.einsum("ij,jhw->ihw", hue_turn(rng.uniform(0, 2 * math.pi)), crop).clamp(-1, 1)
        crops.append(crop)
    return torch.stack(crops)


def any_hair(seed: int, index: int, away_from: tuple[int, int, int] = demo.MIRA.hair, levels: float = 60.0) -> Shot:
    """A person of the world (person) with hair of a random colour, none within `levels` of `away_from`
    (Euclidean, in RGB levels): pictures for the VAE alone, so that it learns to code hair of any colour
    (as SDXL's VAE codes any colour) while the UNet never sees mira's."""
    rng = np.random.default_rng([seed, sum(map(ord, "hair")), index])
    while True:
        colour = rng.integers(0, 256, 3)
        if np.linalg.norm(colour - np.array(away_from)) >= levels:
            break
    shot = person(seed + 2, index)  # seed + 1 is the probe's (probe_prompts)
    return replace(shot, name=f"hair_{index:05d}.png", look=replace(shot.look, hair=tuple(int(c) for c in colour)))


def train_vae(vae, images: list[torch.Tensor], settings: Settings, progress) -> list[float]:
    """The VAE's steps (AdamW): reconstruction (L1 + L2) and a weak KL term, on crops (vae_batch).
    Returns the losses."""
    optimizer = torch.optim.AdamW(vae.parameters(), lr=settings.vae_lr, weight_decay=0.0)
    losses = []
    vae.train()
    for step in progress(range(settings.vae_steps), desc="VAE"):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, settings.vae_steps, settings.vae_lr, settings.warmup)
        x = vae_batch(images, settings, step).to(settings.device)
        posterior = vae.encode(x).latent_dist
        g = torch.Generator().manual_seed(settings.seed * 7919 + step)
        noise = torch.randn(posterior.mean.shape, generator=g).to(settings.device)
        z = posterior.mean + posterior.std * noise
        reconstruction = vae.decode(z).sample
        error = reconstruction - x
        kl = posterior.kl().mean() / x[0].numel()
        loss = error.abs().mean() + (error**2).mean() + settings.kl_weight * kl
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    vae.eval()
    return losses


@torch.no_grad()
def trait_through_vae(vae, device: str) -> dict[str, float]:
    """How much of mira's trait colour (demo.MIRA.hair) the VAE gives back: its mean share of the figure
    (pixel_probe.colour_share) in the demo's photos at training size, and in their reconstructions. A VAE
    that cannot draw the trait leaves a fine-tune of the UNet nothing to learn it with."""
    from charlora import pixel_probe

    shares = {"photos": [], "reconstructed": []}
    for shot in demo.SHOTS:
        image = picture(shot)
        x = as_tensor(image)[None].to(device)
        y = vae.decode(vae.encode(x).latent_dist.mean).sample[0].clamp(-1, 1)
        back = Image.fromarray(((y.permute(1, 2, 0).cpu() + 1) * 127.5).round().byte().numpy())
        shares["photos"].append(pixel_probe.colour_share(image, demo.MIRA.hair, shot.framing))
        shares["reconstructed"].append(pixel_probe.colour_share(back, demo.MIRA.hair, shot.framing))
    return {k: round(sum(v) / len(v), 4) for k, v in shares.items()}


@dataclass
class TraitReading:
    """What one sampled epoch's samples of the prompts naming a token show (trait_by_epoch). The share
    by seed and by framing says whether the trait arrived in the model or in one seed's picture: a seed
    whose colour cast leans towards the trait can read it where the others show a paler colour."""

    shown: float  # share of the samples that show the trait
    adherence: float | None  # mean pixel-probe adherence; None where no prompt names a backdrop or outfit
    samples: int
    by_seed: dict[int, tuple[int, int]]  # seed: (samples showing the trait, samples)
    by_framing: dict[str, tuple[int, int]]  # framing: (samples showing the trait, samples)


def trait_by_epoch(validate, token: str, threshold: float | None = None) -> dict[int, TraitReading]:
    """What a run's validation samples show, per sampled epoch (the folders epoch-<eee> of `validate`):
    the samples of prompts naming `token` where mira's hair colour takes at least `threshold` of the
    head's place (pixel_probe.trait_share of demo.MIRA.hair: 0.15-0.23 in her drawn photos), counted
    in all, by seed and by framing, and their mean pixel-probe adherence. The threshold: the scorecard's
    (sample_metrics.TRAIT_SHOWN), unless given."""
    from charlora import pixel_probe, sample, sample_metrics

    threshold = sample_metrics.TRAIT_SHOWN if threshold is None else threshold
    prompts = [p for p in sample.read_prompts(validate / "prompts.tsv") if sample_metrics.names(p.text, token)]
    out = {}
    for folder in sorted(validate.glob("epoch-[0-9][0-9][0-9]")):
        by_seed: dict[int, list[int]] = {}
        by_framing: dict[str, list[int]] = {}
        adherence = []
        for prompt in prompts:
            framing = pixel_probe.asked(prompt.text).framing
            for path in sorted(folder.glob(f"{prompt.name}-s*.png")):
                seed = sample.image_seed(path)
                with Image.open(path) as image:
                    picture = image.convert("RGB")
                shown = pixel_probe.trait_share(picture, demo.MIRA.hair, framing) >= threshold
                for counts in (by_seed.setdefault(seed, [0, 0]), by_framing.setdefault(framing, [0, 0])):
                    counts[0] += shown
                    counts[1] += 1
                if (score := pixel_probe.adherence(picture, prompt.text)) is not None:
                    adherence.append(score)
        count = sum(n for _, n in by_seed.values())
        out[int(folder.name[6:])] = TraitReading(
            shown=sum(k for k, _ in by_seed.values()) / count if count else 0.0,
            adherence=sum(adherence) / len(adherence) if adherence else None,
            samples=count,
            by_seed={seed: tuple(c) for seed, c in sorted(by_seed.items())},
            by_framing={framing: tuple(c) for framing, c in sorted(by_framing.items())},
        )
    return out


@torch.no_grad()
def encode_latents(vae, images: list[torch.Tensor], groups, device: str) -> tuple[list[torch.Tensor], float]:
    """Each picture's latent mean, and the scaling factor that gives them unit variance (SD's recipe)."""
    means: list[torch.Tensor | None] = [None] * len(images)
    for indices in groups.values():
        for first in range(0, len(indices), 64):
            chunk = indices[first : first + 64]
            mean = vae.encode(torch.stack([images[i] for i in chunk]).to(device)).latent_dist.mean
            for i, m in zip(chunk, mean.cpu()):
                means[i] = m
    std = float(torch.cat([m.flatten() for m in means]).std())
    return means, 1.0 / std


@torch.no_grad()
def encode_captions(model, captions: list[str]) -> dict[str, dict[str, torch.Tensor]]:
    """The frozen text encoders' embeddings of each distinct caption (sdxl.encode_prompt)."""
    from charlora.sdxl import encode_prompt

    return {text: encode_prompt(model, text, torch.device("cpu")) for text in sorted(set(captions))}


def train_unet(unet, optimizer, steps: range, data, scheduler, settings: Settings, progress) -> list[float]:
    """The UNet's `steps` (AdamW, epsilon prediction, uniform timesteps). Returns their losses.
    `data`: (latents, embeddings by caption, captions, sizes, groups)."""
    from charlora.diffusion import add_noise

    latents, embeddings, captions, sizes, groups = data
    alphas_cumprod = scheduler.alphas_cumprod
    device = settings.device
    losses = []
    unet.train()
    for step in progress(steps, desc="UNet"):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, settings.unet_steps, settings.unet_lr, settings.warmup)
        chosen = batches(groups, settings.unet_batch, settings.seed, "unet", step)
        g = torch.Generator().manual_seed(settings.seed * 104729 + step)
        x0 = torch.stack([latents[i] for i in chosen])
        noise = torch.randn(x0.shape, generator=g)
        if settings.noise_offset:
            noise += settings.noise_offset * torch.randn(x0.shape[:2] + (1, 1), generator=g)
        t = torch.randint(0, len(alphas_cumprod), (len(chosen),), generator=g)
        drop = torch.rand(len(chosen), generator=g) < settings.caption_dropout
        text = torch.stack([embeddings[captions[i]]["prompt_embeds"] for i in chosen])
        pooled = torch.stack([embeddings[captions[i]]["pooled"] for i in chosen])
        text[drop], pooled[drop] = 0.0, 0.0
        w, h = sizes[chosen[0]]
        time_ids = torch.tensor([[h, w, 0, 0, h, w]], dtype=torch.float32).repeat(len(chosen), 1)
        pred = unet(
            add_noise(x0, noise, t, alphas_cumprod).to(device),
            t.to(device),
            text.to(device),
            added_cond_kwargs={"text_embeds": pooled.to(device), "time_ids": time_ids.to(device)},
            return_dict=False,
        )[0]
        loss = ((pred - noise.to(device)) ** 2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        optimizer.step()
        losses.append(float(loss.detach()))
    unet.eval()
    return losses


def world(settings: Settings) -> list[Shot]:
    return [person(settings.seed, i) for i in range(settings.pictures)]


def draw(shots: list[Shot], progress=lambda it, **kw: it, processes: int = 1) -> list[torch.Tensor]:
    """Every shot drawn at its training size, as tensors (in order; the same with any `processes`)."""
    if processes > 1:
        from multiprocessing import get_context

        with get_context("spawn").Pool(processes) as pool:
            pictures = list(progress(pool.imap(picture, shots, chunksize=16), total=len(shots), desc="drawing"))
    else:
        pictures = [picture(s) for s in progress(shots, desc="drawing")]
    return [as_tensor(p) for p in pictures]


def build(part: str, seed: int, token_scale: float = 1.0, position_scale: float = 1.0):
    """A random miniature component ("unet", "vae" or "text_encoders"), its init seeded by `seed`.

    The text encoders are CLIP's at its own init, but for their token and position embeddings, drawn
    `token_scale` and `position_scale` times wider. At CLIP's init the layers' outputs outweigh the
    embeddings: a caption's state at its backdrop word moves by 16 % of its norm for "beach" instead of
    "park", and by 12 % for another pose before it. With words 50 times wider and positions 10 times,
    the word moves it by 122 % and the pose by 5 %: each state says which word it is, as the UNet's
    cross-attention needs (docs/miniature.md). Drawing the whole init wider (CLIP's initializer_factor)
    does not do this: the layers grow with it, and the states depend on every word before."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from charlora.sdxl import MODEL_CONFIGS

    folder = MODEL_CONFIGS / "miniature"
    torch.manual_seed(seed)
    if part == "unet":
        return UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(folder / "unet"))
    if part == "vae":
        return AutoencoderKL.from_config(AutoencoderKL.load_config(folder / "vae"))
    configs = [
        CLIPTextConfig.from_json_file(folder / name / "config.json") for name in ("text_encoder", "text_encoder_2")
    ]
    encoders = CLIPTextModel(configs[0]), CLIPTextModelWithProjection(configs[1])
    with torch.no_grad():
        for encoder in encoders:
            for name, weight in encoder.named_parameters():
                if name.endswith("token_embedding.weight"):
                    weight.mul_(token_scale)
                elif name.endswith("position_embedding.weight"):
                    weight.mul_(position_scale)
    return tuple(encoder.eval() for encoder in encoders)


def text_encoders_of(settings: dict) -> tuple:
    """The random text encoders a miniature base was trained with, from its settings (Settings as a dict)."""
    scales = settings.get("text_token_scale", 1.0), settings.get("text_position_scale", 1.0)
    return build("text_encoders", settings["seed"], *scales)


def probe_prompts(seed: int) -> list[tuple[str, Shot]]:
    """One prompt per backdrop and outfit (the other slots drawn at random), as a person of the world."""
    prompts = []
    for b, backdrop in enumerate(demo.BACKDROPS):
        for o, outfit in enumerate(demo.OUTFITS):
            shot = replace(person(seed + 1, b * len(demo.OUTFITS) + o), background=backdrop, outfit=outfit)
            prompts.append((caption(shot), shot))
    return prompts


@torch.no_grad()
def probe(unet, vae, text_encoders, seeds: int, out, settings: Settings, guidance: float = 5.0) -> dict:
    """Sample the base once per probe prompt and seed (128 px square, Euler, 20 steps, CFG `guidance`) and read
    each sample with pixel_probe: the share with the prompted backdrop and with the prompted outfit."""
    import diffusers

    from charlora import pixel_probe
    from charlora.sdxl import MODEL_CONFIGS, tokenizers

    tokenizer, tokenizer_2 = tokenizers()
    te, te2 = text_encoders
    scheduler = diffusers.EulerDiscreteScheduler.from_pretrained(MODEL_CONFIGS / "miniature", subfolder="scheduler")
    pipe = diffusers.StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=te,
        text_encoder_2=te2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        unet=unet,
        scheduler=scheduler,
    )
    pipe.set_progress_bar_config(disable=True)
    pipe.to(settings.device)
    rows = []
    for text, shot in probe_prompts(settings.seed):
        for seed in range(seeds):
            g = torch.Generator().manual_seed(seed)
            image = pipe(
                text, height=128, width=128, num_inference_steps=20, guidance_scale=guidance, generator=g
            ).images[0]
            name = f"{len(rows):03d}.png"
            if out is not None:
                image.save(out / name)
            wanted = pixel_probe.asked(text)
            reading = pixel_probe.read(image, wanted.framing)
            alike = pixel_probe.backdrop_classes(wanted.framing, pixel_probe.aspect(image))[wanted.backdrop]
            rows.append(
                {
                    "image": name,
                    "prompt": text,
                    "seed": seed,
                    "read_backdrop": reading.backdrop,
                    "read_outfit": reading.outfit,
                    "backdrop_ok": reading.backdrop in alike,
                    "outfit_ok": reading.outfit == wanted.outfit,
                }
            )
    return {
        "samples": len(rows),
        "backdrop_recognised": sum(r["backdrop_ok"] for r in rows) / len(rows),
        "outfit_recognised": sum(r["outfit_ok"] for r in rows) / len(rows),
        "rows": rows,
    }


def pretrain(
    settings: Settings, out, progress=lambda it, **kw: it, probe_seeds: int = 4, probe_at=(), continue_from=None
) -> dict:
    """Draw the world, train the VAE, then the UNet; write the weights, the losses and the probe.
    With `continue_from` (a miniature.safetensors), its VAE and text encoders are kept and its UNet trains
    `settings.unet_steps` more steps on `settings`' world; the file's metadata then holds the settings
    that made the VAE and text encoders ("settings") and those of each continuation ("continued")."""
    from charlora.sdxl import noise_scheduler, MODEL_CONFIGS, tokenizers, SDXL

    torch.set_num_threads(settings.threads)
    figures: dict = {}
    started = time.perf_counter()
    shots = world(settings)
    if continue_from is None:
        made_with, continued = dataclasses.asdict(settings), []
        hair_shots = [any_hair(settings.seed, i) for i in range(settings.vae_any_hair)]
    else:
        made_with, continued = made_with_settings(continue_from)
        continued.append(dataclasses.asdict(settings))
        hair_shots = []
    images = draw(shots + hair_shots, progress, processes=settings.threads)
    images, hair_images = images[: len(shots)], images[len(shots) :]
    groups = by_size(shots)
    figures["draw_s"] = round(time.perf_counter() - started)
    log.info(
        "drew %d pictures (and %d with hair of any colour) in %d s", len(images), len(hair_images), figures["draw_s"]
    )

    started = time.perf_counter()
    if continue_from is None:
        vae = build("vae", settings.seed).to(settings.device)
        vae_losses = train_vae(vae, images + hair_images, settings, progress)
        del hair_images
        latents, scaling = encode_latents(vae, images, groups, settings.device)
    else:
        unet, vae = load_pretrained(continue_from)
        vae = vae.to(settings.device).eval()
        vae_losses = []
        latents, _ = encode_latents(vae, images, groups, settings.device)
        scaling = vae.config.scaling_factor  # the latents' scale the UNet was trained at stays
    latents = [m * scaling for m in latents]
    figures["vae_s"] = round(time.perf_counter() - started)
    figures["vae_scaling_factor"] = round(scaling, 5)
    measured = vae_figures(vae, [images[i] for i in groups[min(groups)][:16]], settings.device)
    log.info(
        "VAE: %d s, scaling %.4f, %s (mira's hair: share of the figure before and after it)",
        figures["vae_s"],
        scaling,
        measured,
    )
    figures |= measured

    started = time.perf_counter()
    text_encoders = text_encoders_of(made_with)
    probe_settings = replace(settings, seed=made_with["seed"])  # a continuation is probed as its base was
    tokenizer, tokenizer_2 = tokenizers()
    model = SDXL(None, None, *text_encoders, tokenizer, tokenizer_2)
    captions = [caption(s) for s in shots]
    embeddings = encode_captions(model, captions)
    if continue_from is None:
        unet = build("unet", settings.seed).to(settings.device)
    else:
        unet = unet.to(settings.device)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=settings.unet_lr, weight_decay=0.01)
    sizes = [(s.size[0] // DRAW_SCALE, s.size[1] // DRAW_SCALE) for s in shots]
    data = (latents, embeddings, captions, sizes, groups)
    scheduler = noise_scheduler(MODEL_CONFIGS / "miniature")
    vae.register_to_config(scaling_factor=scaling)  # what the sampling pipeline divides latents by
    unet_losses: list[float] = []
    for first, last in zip([0, *probe_at], [*probe_at, settings.unet_steps]):
        unet_losses += train_unet(unet, optimizer, range(first, last), data, scheduler, settings, progress)
        if last < settings.unet_steps:
            early = probe(unet, vae, text_encoders, 1, None, probe_settings)
            figures[f"probe_at_{last}"] = {k: v for k, v in early.items() if k != "rows"}
            log.info("probe at step %d: %s", last, figures[f"probe_at_{last}"])
    figures["unet_s"] = round(time.perf_counter() - started)
    log.info("UNet: %d s", figures["unet_s"])

    save_base(unet, vae, scaling, made_with, continued, out / "miniature.safetensors")
    (out / "losses.json").write_text(json.dumps({"vae": vae_losses, "unet": unet_losses}) + "\n")

    if not probe_seeds:
        return figures
    samples = out / "samples"
    samples.mkdir(exist_ok=True)
    started = time.perf_counter()
    result = probe(unet, vae, text_encoders, probe_seeds, samples, probe_settings)
    figures["probe_s"] = round(time.perf_counter() - started)
    figures |= {k: v for k, v in result.items() if k != "rows"}
    (out / "probe.json").write_text(json.dumps(figures | {"rows": result["rows"]}, indent=1) + "\n")
    return figures


def save_base(unet, vae, scaling: float, made_with: dict, continued: list[dict], out) -> None:
    """Write the base's UNet and VAE (fp16, single-file layout) with the settings that made them and the
    VAE's latent scaling factor in the metadata."""
    from charlora import ldm_layout
    from charlora.sdxl import save_safetensors

    state = ldm_layout.unet_to_ldm(unet.state_dict(), dict(unet.config))
    state |= ldm_layout.vae_to_ldm(vae.state_dict(), dict(vae.config))
    metadata = {
        "charlora": "miniature SDXL-layout base: UNet and VAE (text encoders: random, seeded)",
        "settings": json.dumps(made_with, sort_keys=True),
        "vae_scaling_factor": f"{scaling:.5f}",
        "torch": torch.__version__,
    }
    if continued:
        metadata["continued"] = json.dumps(continued, sort_keys=True)
    save_safetensors({k: v.half() for k, v in sorted(state.items())}, out, metadata)


@torch.no_grad()
def vae_figures(vae, pictures: list[torch.Tensor], device: str) -> dict:
    """How far the VAE's reconstruction of `pictures` is off (mean, in levels of 255), and how much of
    mira's hair it gives back (trait_through_vae)."""
    sample = torch.stack(pictures).to(device)
    error = (vae.decode(vae.encode(sample).latent_dist.mean).sample - sample).abs().mean() * 127.5
    return {
        "vae_reconstruction_error_levels": round(float(error), 2),
        "vae_trait_share": trait_through_vae(vae, device),
    }


def made_with_settings(weights) -> tuple[dict, list[dict]]:
    """The settings a miniature.safetensors was pretrained with (its VAE and text encoders come from them),
    and those of each UNet continuation since, in order."""
    with safe_open(str(weights), framework="pt") as f:
        metadata = f.metadata()
    return json.loads(metadata["settings"]), json.loads(metadata.get("continued", "[]"))


def load_pretrained(weights) -> tuple:
    """The UNet and VAE of a miniature.safetensors (fp32), read by the loader the workflow uses, the VAE at the
    scaling factor the file was made with."""
    import tempfile

    from charlora import sdxl

    with tempfile.TemporaryDirectory() as folder:
        full = full_checkpoint(weights, Path(folder) / "miniature.safetensors")
        unet, vae = sdxl.load_unet(full), sdxl.load_vae(full)
    with safe_open(str(weights), framework="pt") as f:
        vae.register_to_config(scaling_factor=float(f.metadata()["vae_scaling_factor"]))
    return unet, vae


def full_checkpoint(weights, out):
    """A single-file SDXL checkpoint of the miniature base at `out`: the UNet and VAE of `weights`
    (pretrain's file, fp16) in fp32, with the random text encoders it was trained with (built again
    from its seed). Returns `out`."""
    from charlora import ldm_layout
    from charlora.sdxl import save_safetensors

    with safe_open(str(weights), framework="pt") as f:
        metadata = f.metadata()
        state = {k: f.get_tensor(k).float() for k in f.keys()}
    made_with = json.loads(metadata["settings"])
    te, te2 = text_encoders_of(made_with)
    state |= ldm_layout.text_encoder_to_ldm(te.state_dict()) | ldm_layout.text_encoder_2_to_ldm(te2.state_dict())
    save_safetensors(
        dict(sorted(state.items())),
        out,
        metadata={"charlora": "miniature SDXL-layout base (pretrained UNet and VAE, random text encoders)"}
        | {k: metadata[k] for k in ("settings", "continued", "vae_scaling_factor", "torch") if k in metadata},
    )
    return out
