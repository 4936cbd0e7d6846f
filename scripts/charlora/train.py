"""The full-UNet fine-tune: one block of epochs, continuing exactly where the previous block stopped.

A Snakemake job trains epochs `first..last` (a block) and saves what the next block needs, so a run
of 100 epochs is a chain of jobs. Everything random is drawn from generators seeded by
(seed, epoch, step), never from a generator that runs across epochs, so a chain of jobs gives the
same weights as one job (tested bit for bit on the CPU).

Per step (epsilon prediction, as SDXL was trained):
    x0   = VAE latent of the image (cached)          noise ~ N(0, I)          t ~ U{0..999}
    x_t  = sqrt(ᾱ_t) x0 + sqrt(1 - ᾱ_t) noise
    loss = mean over pixels of w * (unet(x_t, t, text, sizes) - noise)²
where w is 1 on the subject and `unmasked_weight` elsewhere when masked training is on (divided by
the mean of w, so a small subject is not learnt more weakly than a large one).

Validation: each val image at fixed timesteps spread over the schedule with fixed noise, the same
in every epoch; the loss per timestep and their mean. Loss scales differ by orders of magnitude
across timesteps, so the per-timestep values are the signal to read.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from charlora import atomic
from charlora.buckets import Fit, bucket_sizes, choose_bucket, fit
from charlora.optim import FusedBackward, make_optimizer
from charlora.hashing import file_sha256
from charlora.sdxl import config_dir, encode_prompt, load_sdxl, load_unet, pick_device, save_safetensors

log = logging.getLogger("charlora.train")

class TrainingDiverged(RuntimeError):
    pass


@dataclass
class Settings:
    """config `train:` (defaults: the guide's; see config/schema.yaml for each)."""
    lr: float = 4e-6
    epochs: int = 100
    epochs_per_job: int = 10
    batch_size: int = 2
    optimizer: str = "adafactor"
    fused_backward: bool = True
    precision: str = "bf16"
    gradient_checkpointing: bool = True
    resolution: int = 1024
    bucket_step: int = 64
    save_every: int = 1
    masked_training: bool = True
    unmasked_weight: float = 0.1
    normalize_masked_area_loss: bool = True
    caption_dropout: float = 0.0
    noise_offset: float = 0.0
    min_snr_gamma: float = 0.0
    ema_decay: float = 0.0
    val_timesteps: int = 8
    seed: int = 0
    device: str = "auto"

    @classmethod
    def from_config(cls, section: dict) -> "Settings":
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in section.items() if k in known})

    def check(self) -> None:
        if self.fused_backward and self.optimizer != "adafactor":
            raise ValueError(f"train.fused_backward works with train.optimizer: adafactor only (got {self.optimizer})")
        if self.fused_backward and self.precision == "fp16":
            raise ValueError("train.fused_backward cannot be used with train.precision: fp16 (the loss scaler "
                             "needs all gradients before any step); use precision bf16")
        if self.precision == "bf16" and self.optimizer != "adafactor":
            raise ValueError(f"train.precision: bf16 keeps the weights in bf16, and only adafactor rounds its "
                             f"updates stochastically; {self.optimizer} would lose 4e-6 updates. Use "
                             "precision fp16 (fp32 weights) with it")

    @property
    def weight_dtype(self) -> torch.dtype:
        """bf16 weights for `bf16`; fp32 (master) weights for `fp16` and `fp32`."""
        return torch.bfloat16 if self.precision == "bf16" else torch.float32

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[self.precision]

    def fingerprint(self) -> str:
        """What makes two runs' weights differ, `epochs` excepted (raising it continues the same run)."""
        settings = {k: v for k, v in asdict(self).items() if k not in ("epochs", "epochs_per_job", "device")}
        return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class Sample:
    id: str
    image: Path
    caption: str
    mask: Path | None = None


@dataclass
class Encoded:
    """One image as the UNet sees it: latent, mask at latent size, text embeddings, size conditioning."""
    latent: torch.Tensor          # (4, h/8, w/8)
    mask: torch.Tensor            # (1, h/8, w/8), 1 where the loss counts fully
    prompt_embeds: torch.Tensor   # (77, 2048): both encoders' penultimate hidden states
    pooled: torch.Tensor          # (1280,): text_encoder_2's projected output
    time_ids: torch.Tensor        # (6,)
    bucket: tuple[int, int]


@dataclass
class EpochResult:
    epoch: int
    steps: list[tuple[int, float, float]] = field(default_factory=list)  # (global step, loss, lr)
    val: dict[int, float] = field(default_factory=dict)                  # timestep -> loss
    seconds: float = 0.0                                                 # wall time of the training steps

    @property
    def val_mean(self) -> float:
        return sum(self.val.values()) / len(self.val) if self.val else float("nan")


def seeded(*parts) -> torch.Generator:
    """A CPU generator seeded from `parts` (e.g. seed, epoch, step): same draws in any job, any device."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))


# ---------------------------------------------------------------------------------------------------
# Encoding: latents and text embeddings, cached by the content that produced them


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


def encode_samples(base_model: Path, model_hash: str, samples: list[Sample], settings: Settings,
                   cache: EncodingCache, device) -> tuple[dict[str, Encoded], dict[str, torch.Tensor]]:
    """Encode every sample (and the empty caption, for dropout); load the VAE and text encoders
    only when something is not cached yet."""
    buckets = bucket_sizes(settings.resolution, settings.bucket_step)
    plans = {}
    for s in samples:
        with Image.open(s.image) as im:
            fitted = fit(*im.size, choose_bucket(*im.size, buckets))
        image_hash = file_sha256(s.image)
        # the key names everything that shapes the latent: the photo's bytes, bucket and crop, resampling
        plans[s.id] = (fitted, cache.key("latent", image_hash, fitted, "lanczos", "vae-fp32-mean"),
                       cache.key("text", s.caption))
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
        encoded[s.id] = Encoded(latent, mask, text["prompt_embeds"], text["pooled"],
                                torch.tensor(fitted.time_ids(), dtype=torch.float32), fitted.bucket)
    del model
    return encoded, cache.get(empty_key)


# ---------------------------------------------------------------------------------------------------
# Batches, loss


def epoch_batches(encoded: dict[str, Encoded], ids: list[str], batch_size: int, seed: int, epoch: int) -> list[list[str]]:
    """Shuffle within each bucket (one batch holds one size), then shuffle the batches: seeded by epoch."""
    rng = random.Random(f"{seed}/shuffle/{epoch}")
    by_bucket: dict[tuple[int, int], list[str]] = {}
    for i in sorted(ids):
        by_bucket.setdefault(encoded[i].bucket, []).append(i)
    batches = []
    for bucket in sorted(by_bucket):
        members = by_bucket[bucket]
        rng.shuffle(members)
        batches += [members[k:k + batch_size] for k in range(0, len(members), batch_size)]
    rng.shuffle(batches)
    return batches


def stack(encoded: dict[str, Encoded], ids: list[str], device, empty: dict | None = None,
          drop: torch.Tensor | None = None):
    items = [encoded[i] for i in ids]
    prompt = torch.stack([e.prompt_embeds for e in items])
    pooled = torch.stack([e.pooled for e in items])
    if drop is not None and drop.any():  # caption dropout: the empty caption's embeddings
        prompt[drop] = empty["prompt_embeds"]
        pooled[drop] = empty["pooled"]
    return (torch.stack([e.latent for e in items]).to(device), torch.stack([e.mask for e in items]).to(device),
            prompt.to(device), pooled.to(device), torch.stack([e.time_ids for e in items]).to(device))


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, settings: Settings) -> torch.Tensor:
    """Per-sample loss: squared error weighted 1 on the subject, `unmasked_weight` elsewhere."""
    weight = mask.clamp(min=settings.unmasked_weight, max=1.0) if settings.masked_training else torch.ones_like(mask)
    se = (pred.float() - target.float()) ** 2 * weight
    loss = se.mean(dim=(1, 2, 3))
    if settings.normalize_masked_area_loss and settings.masked_training:
        loss = loss / weight.mean(dim=(1, 2, 3))
    return loss


def predict_noise(unet, latents, noise, timesteps, alphas_cumprod, prompt, pooled, time_ids, autocast_dtype):
    a = alphas_cumprod[timesteps].view(-1, 1, 1, 1).to(latents.device)
    noisy = a.sqrt() * latents + (1 - a).sqrt() * noise
    with torch.autocast(latents.device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
        return unet(noisy.to(unet.dtype), timesteps.to(latents.device), prompt.to(unet.dtype),
                    added_cond_kwargs={"text_embeds": pooled.to(unet.dtype), "time_ids": time_ids.to(unet.dtype)},
                    return_dict=False)[0]


def val_timesteps(count: int, num_train_timesteps: int = 1000) -> list[int]:
    """`count` timesteps at the centres of equal slices of the schedule (e.g. 62, 187, ..., 937 for 8)."""
    return [int((k + 0.5) * num_train_timesteps / count) for k in range(count)]


@torch.no_grad()
def validation_loss(unet, encoded, val_ids, alphas_cumprod, settings, device) -> dict[int, float]:
    """Loss per fixed timestep over the val images, with noise fixed per (image, timestep)."""
    unet.eval()
    losses = {}
    for t in val_timesteps(settings.val_timesteps):
        total = 0.0
        for i in sorted(val_ids):
            latents, mask, prompt, pooled, time_ids = stack(encoded, [i], device)
            noise = torch.randn(latents.shape, generator=seeded(settings.seed, "val", i, t)).to(device)
            pred = predict_noise(unet, latents, noise, torch.tensor([t]), alphas_cumprod, prompt, pooled, time_ids,
                                 settings.autocast_dtype)
            total += masked_mse(pred, noise, mask, settings).item()
        losses[t] = total / len(val_ids)
    unet.train()
    return losses


# ---------------------------------------------------------------------------------------------------
# State between jobs


def flatten_optimizer_state(optimizer, names: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """Optimizer state as safetensors tensors keyed '<param name>/<state key>' and JSON scalars."""
    tensors, scalars = {}, {}
    for p, state in optimizer.state.items():
        for key, value in state.items():
            if torch.is_tensor(value):  # a copy: bitsandbytes shares one quantisation map among parameters
                tensors[f"{names[p]}/{key}"] = value.detach().clone()
            else:
                scalars[f"{names[p]}/{key}"] = value
    return tensors, scalars


def restore_optimizer_state(optimizer, params: dict, tensors: dict, scalars: dict, device) -> None:
    for flat, value in list(tensors.items()) + list(scalars.items()):
        name, key = flat.split("/", 1)
        optimizer.state[params[name]][key] = value.to(device) if torch.is_tensor(value) else value


def save_state(folder: Path, unet, optimizer, names, ema, scaler, global_step: int, epoch: int,
               settings: Settings) -> None:
    """What the next block needs beyond the epoch file: optimizer state, loss scale, step; with EMA
    the raw weights (the epoch file holds the EMA ones) and the fp32 EMA itself."""
    tensors, scalars = flatten_optimizer_state(optimizer, names)
    with atomic.atomic_dir(folder) as tmp:  # the folder appears whole or not at all
        save_safetensors(tensors, tmp / "optimizer.safetensors")
        if ema is not None:
            save_safetensors(unet.state_dict(), tmp / "unet.safetensors")
            save_safetensors(ema, tmp / "ema.safetensors")
        atomic.write_json(tmp / "trainer.json", {
            "epoch": epoch, "global_step": global_step, "optimizer_scalars": scalars,
            "grad_scaler": scaler.state_dict() if scaler.is_enabled() else None,
            "settings": asdict(settings), "fingerprint": settings.fingerprint()})


def save_epoch(path: Path, weights: dict[str, torch.Tensor], epoch: int, global_step: int, settings: Settings,
               model_hash: str) -> None:
    save_safetensors(weights, path, metadata={
        "charlora.epoch": str(epoch), "charlora.global_step": str(global_step),
        "charlora.fingerprint": settings.fingerprint(), "charlora.base_model_sha256": model_hash,
        "format": "diffusers UNet2DConditionModel state dict"})


def write_metrics(path: Path, result: EpochResult) -> None:
    lines = ["kind\tstep\ttimestep\tloss\tlr"]
    lines += [f"train\t{step}\t\t{loss:.6g}\t{lr:.6g}" for step, loss, lr in result.steps]
    lines += [f"val\t\t{t}\t{loss:.6g}\t" for t, loss in result.val.items()]
    lines += [f"val\t\tmean\t{result.val_mean:.6g}\t"]
    atomic.write_text(path, "\n".join(lines) + "\n")


# ---------------------------------------------------------------------------------------------------
# The block


def train_block(*, base_model: Path, model_hash: str, samples: list[Sample], val_ids: list[str], settings: Settings,
                first: int, last: int, out_dir: Path, previous_state: Path | None, cache_dir: Path,
                tensorboard_dir: Path | None = None, total_epochs: int | None = None,
                progress: bool = True) -> list[EpochResult]:
    """Train epochs first..last (1-based) and write epoch files, metrics and the state after `last`."""
    from diffusers import DDPMScheduler, UNet2DConditionModel
    from diffusers.utils import logging as diffusers_logging
    from safetensors.torch import load_file
    from tqdm import tqdm

    diffusers_logging.set_verbosity_error()
    for stale in out_dir.glob(".epoch-*.tmp"):  # temp files of a job that was killed mid-write
        shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
    settings.check()
    torch.use_deterministic_algorithms(True, warn_only=True)
    device = pick_device(settings.device)
    weight_dtype, autocast_dtype = settings.weight_dtype, settings.autocast_dtype
    train_ids = [s.id for s in samples if s.id not in set(val_ids)]
    if not train_ids:
        raise ValueError("no training images: every kept photo is in the validation split")

    encoded, empty = encode_samples(base_model, model_hash, samples, settings, EncodingCache(cache_dir, model_hash), device)
    model_dir = config_dir(base_model)
    scheduler = DDPMScheduler.from_pretrained(model_dir, subfolder="scheduler")
    alphas_cumprod = scheduler.alphas_cumprod.float()

    with torch.device("meta"):  # no random init: the weights are loaded next
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(model_dir, subfolder="unet"))
    state = None
    if previous_state is not None:
        state = json.loads((previous_state / "trainer.json").read_text())
        if state["fingerprint"] != settings.fingerprint() or state["epoch"] != first - 1:
            raise ValueError(f"{previous_state} is from other settings or epoch {state['epoch']}, not {first - 1}")
        raw = previous_state / "unet.safetensors"
        weights = load_file(str(raw if raw.is_file() else out_dir / f"epoch-{first - 1:03d}.safetensors"))
    else:
        weights = load_unet(base_model).state_dict()
    unet.load_state_dict(weights, assign=True)
    unet.to(device, weight_dtype)
    if first == 1:
        log.info("expected disk use of this run's UNet files: %s, plus the optimizer state of each job",
                 expected_disk_use(sum(p.numel() for p in unet.parameters()), settings, total_epochs or settings.epochs))
    if settings.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    unet.train()
    unet.requires_grad_(True)

    names = {p: n for n, p in unet.named_parameters()}
    params = dict(unet.named_parameters())
    optimizer = make_optimizer(settings.optimizer, unet.parameters(), settings.lr, settings.seed)
    global_step = 0
    if state is not None:
        global_step = state["global_step"]
        restore_optimizer_state(optimizer, params, load_file(str(previous_state / "optimizer.safetensors")),
                                state["optimizer_scalars"], device)
    ema = None
    if settings.ema_decay:  # an fp32 running average of the weights
        ema = ({n: t.to(device) for n, t in load_file(str(previous_state / "ema.safetensors")).items()} if state
               else {n: p.detach().float().clone() for n, p in unet.named_parameters()})
    fused = FusedBackward(optimizer) if settings.fused_backward else None
    scaler = torch.amp.GradScaler(device.type, enabled=settings.precision == "fp16")
    if state is not None and state.get("grad_scaler"):
        scaler.load_state_dict(state["grad_scaler"])
    writer = tensorboard(tensorboard_dir, global_step)
    n_train = len(train_ids)
    log.info("training epochs %d-%d on %s: %d train / %d val images, %s, %s, lr %g, batch %d", first, last, device,
             n_train, len(val_ids), settings.optimizer, settings.precision, settings.lr, settings.batch_size)

    results = []
    for epoch in range(first, last + 1):
        result = EpochResult(epoch)
        batches = epoch_batches(encoded, train_ids, settings.batch_size, settings.seed, epoch)
        bar = tqdm(batches, desc=f"epoch {epoch}", unit="step", disable=not progress, mininterval=1.0)
        started = time.perf_counter()
        for step, ids in enumerate(bar):
            rng = seeded(settings.seed, epoch, step)
            drop = torch.rand(len(ids), generator=rng) < settings.caption_dropout
            latents, mask, prompt, pooled, time_ids = stack(encoded, ids, device, empty, drop)
            noise = torch.randn(latents.shape, generator=rng)
            if settings.noise_offset:  # shifts the mean of the noise per channel: lets the model learn dark/bright
                noise += settings.noise_offset * torch.randn(latents.shape[:2] + (1, 1), generator=rng)
            noise = noise.to(device)
            timesteps = torch.randint(0, len(alphas_cumprod), (len(ids),), generator=rng)
            optimizer.step_seed = int(torch.randint(0, 2**62, (1,), generator=rng))  # stochastic rounding

            pred = predict_noise(unet, latents, noise, timesteps, alphas_cumprod, prompt, pooled, time_ids, autocast_dtype)
            loss_per_sample = masked_mse(pred, noise, mask, settings)
            if settings.min_snr_gamma:  # Min-SNR-γ: weight min(SNR, γ) / SNR, for epsilon prediction
                snr = alphas_cumprod[timesteps] / (1 - alphas_cumprod[timesteps])
                loss_per_sample = loss_per_sample * (snr.clamp(max=settings.min_snr_gamma) / snr).to(device)
            loss = loss_per_sample.mean()
            if not torch.isfinite(loss):
                kept = (f"the epochs saved by earlier jobs (up to epoch {first - 1}) are kept" if first > 1
                        else "no earlier job saved an epoch")
                raise TrainingDiverged(f"loss is {loss.item()} at epoch {epoch}, step {step} (global step "
                                       f"{global_step}); {kept}. Lower train.lr or check the images of this "
                                       "batch: " + ", ".join(ids))
            scaler.scale(loss).backward()  # with fused_backward, each weight is updated in here
            if fused is None:
                scaler.step(optimizer)
                scaler.update()
                optimizer.zero_grad(set_to_none=True)
            if ema is not None:
                with torch.no_grad():
                    for n, p in unet.named_parameters():
                        ema[n].lerp_(p.float(), 1 - settings.ema_decay)
            global_step += 1
            result.steps.append((global_step, loss.item(), settings.lr))
            bar.set_postfix(loss=f"{loss.item():.4f}")
            if writer:
                writer.add_scalar("train/loss", loss.item(), global_step)
                writer.add_scalar("train/lr", settings.lr, global_step)

        result.seconds = time.perf_counter() - started
        weights = {n: ema[n].to(weight_dtype) for n in ema} if ema is not None else unet.state_dict()
        eval_unet = unet
        if ema is not None:
            with torch.device("meta"):
                eval_unet = UNet2DConditionModel.from_config(unet.config)
            eval_unet.load_state_dict(weights, assign=True)
        result.val = validation_loss(eval_unet, encoded, val_ids, alphas_cumprod, settings, device)
        log.info("epoch %d: train loss %.5f (mean of %d steps, %.2f steps/s), val loss %.5f (%s)", epoch,
                 sum(s[1] for s in result.steps) / max(1, len(result.steps)), len(result.steps),
                 len(result.steps) / result.seconds, result.val_mean,
                 ", ".join(f"t={t}: {v:.4f}" for t, v in result.val.items()))
        if writer:
            writer.add_scalar("val/loss", result.val_mean, global_step)
            for t, v in result.val.items():
                writer.add_scalar(f"val/loss_t{t:03d}", v, global_step)
            writer.flush()
        if epoch % settings.save_every == 0 or epoch == last:
            save_epoch(out_dir / f"epoch-{epoch:03d}.safetensors", weights, epoch, global_step, settings, model_hash)
        write_metrics(out_dir / f"epoch-{epoch:03d}.metrics.tsv", result)
        results.append(result)

    save_state(out_dir / f"epoch-{last:03d}.state", unet, optimizer, names, ema, scaler, global_step, last, settings)
    if fused is not None:
        fused.remove()
    if writer:
        writer.close()
    return results


def tensorboard(folder: Path | None, global_step: int):
    """An event-file writer; purge_step drops what a killed earlier attempt logged beyond this point."""
    if folder is None:
        return None
    from torch.utils.tensorboard import SummaryWriter
    return SummaryWriter(str(folder), purge_step=global_step + 1 if global_step else None)


def expected_disk_use(unet_parameters: int, settings: Settings, epochs: int) -> str:
    per_epoch = unet_parameters * settings.weight_dtype.itemsize
    saved = math.ceil(epochs / settings.save_every)
    return f"{saved} saved epochs x {per_epoch / 1e9:.2f} GB = {saved * per_epoch / 1e9:.1f} GB"
