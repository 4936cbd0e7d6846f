"""Training data: each photo and caption encoded once (VAE latent, text embeddings, mask at latent
size, SDXL's size conditioning) into a content-addressed cache, and the batches of an epoch.

The cache key of a latent names everything that shapes it (the photo's bytes, the bucket and crop,
the resampling, the VAE's hash and mode), so a cached file can never be stale. `settings` below is a
train.Settings (resolution, bucket_step, masked_training are read).
"""

from __future__ import annotations

import hashlib
import logging
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from charlora.buckets import Fit, bucket_sizes, choose_bucket, fit
from charlora.hashing import file_sha256
from charlora.sdxl import encode_prompt, load_sdxl, save_safetensors

log = logging.getLogger("charlora.train")


@dataclass
class Sample:
    id: str
    image: Path
    caption: str
    mask: Path | None = None


@dataclass
class Encoded:
    """One image as the UNet sees it: latent, mask at latent size, text embeddings, size conditioning."""

    latent: torch.Tensor  # (4, h/8, w/8)
    mask: torch.Tensor  # (1, h/8, w/8), 1 where the loss counts fully
    prompt_embeds: torch.Tensor  # (77, 2048): both encoders' penultimate hidden states
    pooled: torch.Tensor  # (1280,): text_encoder_2's projected output
    time_ids: torch.Tensor  # (6,)
    bucket: tuple[int, int]


class EncodingCache:
    """Content-addressed files: key = hash of (model hash, what was encoded, how). Never stale."""

    def __init__(self, folder: str | Path, model_hash: str):
        self.folder = Path(folder)
        self.model_hash = model_hash

    def key(self, kind: str, *parts) -> Path:
        digest = hashlib.sha256("\0".join([self.model_hash, kind, *map(str, parts)]).encode()).hexdigest()
        return self.folder / kind / digest[:2] / f"{digest}.safetensors"

    def get(self, path: Path) -> dict[str, torch.Tensor] | None:
        from safetensors.torch import load_file

        return load_file(str(path)) if path.is_file() else None

    def put(self, path: Path, tensors: dict[str, torch.Tensor]) -> None:
        save_safetensors(tensors, path)


def load_crop(path: Path, fitted: Fit, mode: str) -> Image.Image:
    image = Image.open(path).convert(mode)
    image = image.resize(fitted.scaled, Image.Resampling.LANCZOS if mode == "RGB" else Image.Resampling.BILINEAR)
    w, h = fitted.bucket
    return image.crop((fitted.crop_left, fitted.crop_top, fitted.crop_left + w, fitted.crop_top + h))


@torch.no_grad()
def encode_image(model, image: Image.Image, device) -> torch.Tensor:
    pixels = torch.from_numpy(np.asarray(image, dtype="float32") / 127.5 - 1.0)
    pixels = pixels.permute(2, 0, 1)[None].to(device, model.vae.dtype)
    latent = model.vae.encode(pixels).latent_dist.mean * model.vae.config.scaling_factor
    return latent[0].float().cpu()


def encode_samples(
    base_model: Path, model_hash: str, samples: list[Sample], settings, cache: EncodingCache, device
) -> tuple[dict[str, Encoded], dict[str, torch.Tensor]]:
    """Encode every sample (and the empty caption, for dropout); load the VAE and text encoders
    only when something is not cached yet."""
    buckets = bucket_sizes(settings.resolution, settings.bucket_step)
    plans = {}
    for s in samples:
        with Image.open(s.image) as im:
            fitted = fit(*im.size, choose_bucket(*im.size, buckets))
        image_hash = file_sha256(s.image)
        # the key names everything that shapes the latent: the photo's bytes, bucket and crop, resampling
        plans[s.id] = (
            fitted,
            cache.key("latent", image_hash, fitted, "lanczos", "vae-fp32-mean"),
            cache.key("text", s.caption),
        )
    empty_key = cache.key("text", "")
    missing = [p for plan in plans.values() for p in plan[1:] if not p.is_file()]
    missing += [] if empty_key.is_file() else [empty_key]
    model = None
    if missing:
        log.info("encoding %d latents/captions not in the cache (%s)", len(missing), cache.folder)
        model = load_sdxl(base_model, with_unet=False)
        model.vae.to(device)
        model.text_encoder.to(device)
        model.text_encoder_2.to(device)
    if not empty_key.is_file():
        cache.put(empty_key, encode_prompt(model, "", device))
    encoded = {}
    for s in samples:
        fitted, latent_key, text_key = plans[s.id]
        if not latent_key.is_file():
            cache.put(latent_key, {"latent": encode_image(model, load_crop(s.image, fitted, "RGB"), device)})
        if not text_key.is_file():
            cache.put(text_key, encode_prompt(model, s.caption, device))
        latent = cache.get(latent_key)["latent"]
        text = cache.get(text_key)
        if s.mask is not None and settings.masked_training:
            mask = torch.from_numpy(np.asarray(load_crop(s.mask, fitted, "L"), dtype="float32") / 255)
            mask = F.interpolate(mask[None, None], size=latent.shape[-2:], mode="area")[0]
        else:
            mask = torch.ones(1, *latent.shape[-2:])
        encoded[s.id] = Encoded(
            latent,
            mask,
            text["prompt_embeds"],
            text["pooled"],
            torch.tensor(fitted.time_ids(), dtype=torch.float32),
            fitted.bucket,
        )
    del model
    return encoded, cache.get(empty_key)


def epoch_batches(
    encoded: dict[str, Encoded], ids: list[str], batch_size: int, seed: int, epoch: int
) -> list[list[str]]:
    """Shuffle within each bucket (one batch holds one size), then shuffle the batches: seeded by epoch."""
    rng = random.Random(f"{seed}/shuffle/{epoch}")
    by_bucket: dict[tuple[int, int], list[str]] = {}
    for i in sorted(ids):
        by_bucket.setdefault(encoded[i].bucket, []).append(i)
    batches = []
    for bucket in sorted(by_bucket):
        members = by_bucket[bucket]
        rng.shuffle(members)
        batches += [members[k : k + batch_size] for k in range(0, len(members), batch_size)]
    rng.shuffle(batches)
    return batches


@dataclass
class Batch:
    """The UNet's inputs for a batch of images (one bucket size), on the training device."""

    latents: torch.Tensor  # (b, 4, h/8, w/8)
    mask: torch.Tensor  # (b, 1, h/8, w/8)
    prompt: torch.Tensor  # (b, 77, 2048)
    pooled: torch.Tensor  # (b, 1280)
    time_ids: torch.Tensor  # (b, 6)


def make_batch(
    encoded: dict[str, Encoded], ids: list[str], device, empty: dict | None = None, drop: torch.Tensor | None = None
) -> Batch:
    """Stack the images `ids`; where `drop` is true, the empty caption's embeddings (caption dropout)."""
    items = [encoded[i] for i in ids]
    prompt = torch.stack([e.prompt_embeds for e in items])
    pooled = torch.stack([e.pooled for e in items])
    if drop is not None and drop.any():
        prompt[drop] = empty["prompt_embeds"]
        pooled[drop] = empty["pooled"]
    return Batch(
        torch.stack([e.latent for e in items]).to(device),
        torch.stack([e.mask for e in items]).to(device),
        prompt.to(device),
        pooled.to(device),
        torch.stack([e.time_ids for e in items]).to(device),
    )
