"""The full-UNet fine-tune: one block of epochs, continuing exactly where the previous block stopped.

A Snakemake job trains epochs `first..last` (a block) and saves what the next block needs
(train_state.py), so a run of 100 epochs is a chain of jobs. Everything random is drawn from
generators seeded by (seed, epoch, step), never from a generator that runs across epochs, so a chain
of jobs gives the same weights as one job (tested bit for bit on the CPU).

Per step (epsilon prediction, as SDXL was trained; the maths in diffusion.py):
    x0   = VAE latent of the image (cached, train_data.py)    noise ~ N(0, I)    t ~ U{0..999}
    x_t  = sqrt(ᾱ_t) x0 + sqrt(1 - ᾱ_t) noise
    loss = mean over pixels of w * (unet(x_t, t, text, sizes) - noise)²
where w is 1 on the subject and `unmasked_weight` elsewhere when masked training is on (divided by
the mean of w, so a small subject is not learnt more weakly than a large one); then the optimizer
step (optim.py), inside the backward pass when it is fused.

Validation: each val image at fixed timesteps spread over the schedule with fixed noise, the same
in every epoch; the loss per timestep and their mean. Loss scales differ by orders of magnitude
across timesteps, so the per-timestep values are the signal to read.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file

from charlora import atomic, disk_space, plan
from charlora.config import defaults
from charlora.diffusion import add_noise, draw_noise, masked_mse, predict_noise, training_loss, val_timesteps
from charlora.ema import EMA
from charlora.optim import FusedBackward, make_optimizer
from charlora.sdxl import (load_unet, noise_scheduler, pick_device, save_safetensors, unet_config,
                           unet_parameter_shapes, unet_with)
from charlora.train_data import EncodingCache, Sample, encode_samples, epoch_batches, make_batch
from charlora.train_state import TrainerState, optimizer_state

log = logging.getLogger("charlora.train")


class TrainingDiverged(RuntimeError):
    pass


@dataclass
class Settings:
    """config `train:`, the settings the weights depend on (plan.weight_settings) and the device.
    Meanings and defaults: config/schema.yaml."""
    lr: float
    batch_size: int
    optimizer: str
    fused_backward: bool
    precision: str
    gradient_checkpointing: bool
    resolution: int
    bucket_step: int
    save_every: int
    masked_training: bool
    unmasked_weight: float
    normalize_masked_area_loss: bool
    caption_dropout: float
    noise_offset: float
    min_snr_gamma: float
    ema_decay: float
    val_timesteps: int
    seed: int
    device: str

    @classmethod
    def from_config(cls, weight_settings: dict, device: str) -> "Settings":
        return cls(**weight_settings, device=device)

    @classmethod
    def from_schema(cls, **changes) -> "Settings":
        """The schema's defaults with `changes` (for tests and benchmarks; the workflow passes its config)."""
        train = defaults()["train"] | changes
        return cls.from_config(plan.weight_settings(train, masks_made=True), train["device"])

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
        """plan.fingerprint of the settings the weights depend on (all but the device)."""
        return plan.fingerprint({k: v for k, v in asdict(self).items() if k != "device"})


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


@torch.no_grad()
def validation_loss(unet, encoded, val_ids, alphas_cumprod, settings, device) -> dict[int, float]:
    """Loss per fixed timestep over the val images, with noise fixed per (image, timestep)."""
    unet.eval()
    losses = {}
    for t in val_timesteps(settings.val_timesteps):
        total = 0.0
        for i in sorted(val_ids):
            batch = make_batch(encoded, [i], device)
            noise = torch.randn(batch.latents.shape, generator=seeded(settings.seed, "val", i, t)).to(device)
            timesteps = torch.tensor([t])
            noisy = add_noise(batch.latents, noise, timesteps, alphas_cumprod)
            pred = predict_noise(unet, noisy, timesteps, batch.prompt, batch.pooled, batch.time_ids,
                                 settings.autocast_dtype)
            total += masked_mse(pred, noise, batch.mask, settings).item()
        losses[t] = total / len(val_ids)
    unet.train()
    return losses


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
                tensorboard_dir: Path | None = None, still_to_write: tuple[int, int] | None = None,
                progress: bool = True) -> list[EpochResult]:
    """Train epochs first..last (1-based) and write epoch files, metrics and the state after `last`.

    `still_to_write`: (saved epochs, job states) that this job and the run's later jobs write; the job
    stops before any work when the disk cannot hold them (default: this job's own)."""
    from tqdm import tqdm

    for stale in out_dir.glob(".epoch-*.tmp"):  # temp files of a job that was killed mid-write
        shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
    settings.check()
    epochs, states = still_to_write or (len(plan.saved_epochs(first, last, settings.save_every)), 1)
    need = disk_space.training_need(unet_parameter_shapes(base_model), settings.weight_dtype.itemsize,
                                    str(settings.weight_dtype).removeprefix("torch."), settings.optimizer,
                                    bool(settings.ema_decay), epochs, states)
    free = disk_space.check_free_space(out_dir, need, f"training epochs {first}-{last} and the jobs after them")
    log.info("disk: the rest of the run writes %s; %.2f GB free", need.describe(), free / 1e9)
    torch.use_deterministic_algorithms(True, warn_only=True)
    device = pick_device(settings.device)
    train_ids = [s.id for s in samples if s.id not in set(val_ids)]
    if not train_ids:
        raise ValueError("no training images: every kept photo is in the validation split")
    encoded, empty = encode_samples(base_model, model_hash, samples, settings, EncodingCache(cache_dir, model_hash), device)
    alphas_cumprod = noise_scheduler(base_model).alphas_cumprod.float()

    # the UNet, the optimizer and what else goes on from the previous job (train_state.py)
    state = TrainerState.load(previous_state, settings.fingerprint(), first - 1) if previous_state else None
    if state is None:
        weights = load_unet(base_model).state_dict()
    else:  # with EMA the epoch file holds the average, and the state the raw weights
        weights = state.unet or load_file(str(out_dir / plan.epoch_name(first - 1, "safetensors")))
    unet = unet_with(weights, unet_config(base_model)).to(device, settings.weight_dtype)
    if settings.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    unet.train()
    unet.requires_grad_(True)
    names = {p: n for n, p in unet.named_parameters()}
    optimizer = make_optimizer(settings.optimizer, unet.parameters(), settings.lr, settings.seed)
    scaler = torch.amp.GradScaler(device.type, enabled=settings.precision == "fp16")
    if state is not None:
        state.restore(optimizer, scaler, unet, device)
    global_step = state.global_step if state else 0
    ema = None
    if settings.ema_decay:
        ema = (EMA({n: t.to(device) for n, t in state.ema.items()}, settings.ema_decay) if state
               else EMA.of(unet, settings.ema_decay))
    fused = FusedBackward(optimizer) if settings.fused_backward else None
    writer = tensorboard(tensorboard_dir, global_step)
    log.info("training epochs %d-%d on %s: %d train / %d val images, %s, %s, lr %g, batch %d", first, last, device,
             len(train_ids), len(val_ids), settings.optimizer, settings.precision, settings.lr, settings.batch_size)

    results = []
    for epoch in range(first, last + 1):
        result = EpochResult(epoch)
        batches = epoch_batches(encoded, train_ids, settings.batch_size, settings.seed, epoch)
        bar = tqdm(batches, desc=f"epoch {epoch}", unit="step", disable=not progress, mininterval=1.0)
        started = time.perf_counter()
        for step, ids in enumerate(bar):
            rng = seeded(settings.seed, epoch, step)  # every draw of this step, the same in any job
            drop = torch.rand(len(ids), generator=rng) < settings.caption_dropout
            batch = make_batch(encoded, ids, device, empty, drop)
            noise = draw_noise(batch.latents.shape, rng, settings.noise_offset).to(device)
            timesteps = torch.randint(0, len(alphas_cumprod), (len(ids),), generator=rng)
            optimizer.step_seed = int(torch.randint(0, 2**62, (1,), generator=rng))  # stochastic rounding

            noisy = add_noise(batch.latents, noise, timesteps, alphas_cumprod)
            pred = predict_noise(unet, noisy, timesteps, batch.prompt, batch.pooled, batch.time_ids,
                                 settings.autocast_dtype)
            loss = training_loss(pred, noise, batch.mask, timesteps, alphas_cumprod, settings).mean()
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
                ema.update(unet)
            global_step += 1
            result.steps.append((global_step, loss.item(), settings.lr))
            bar.set_postfix(loss=f"{loss.item():.4f}")
            if writer:
                writer.add_scalar("train/loss", loss.item(), global_step)
                writer.add_scalar("train/lr", settings.lr, global_step)

        result.seconds = time.perf_counter() - started
        weights = ema.state_dict(settings.weight_dtype) if ema is not None else unet.state_dict()
        eval_unet = ema.unet(unet, settings.weight_dtype) if ema is not None else unet
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
        if plan.is_saved(epoch, last, settings.save_every):
            save_epoch(out_dir / plan.epoch_name(epoch, "safetensors"), weights, epoch, global_step, settings, model_hash)
        write_metrics(out_dir / plan.epoch_name(epoch, "metrics.tsv"), result)
        results.append(result)

    tensors, scalars = optimizer_state(optimizer, names)
    TrainerState(last, global_step, settings.fingerprint(), tensors, scalars,
                 scaler.state_dict() if scaler.is_enabled() else None,
                 unet.state_dict() if ema is not None else None, ema.weights if ema is not None else None,
                 ).save(out_dir / plan.epoch_name(last, "state"), asdict(settings))
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

