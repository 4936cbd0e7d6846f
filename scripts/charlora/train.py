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

A step learns from `grad_accum` x (processes) consecutive batches of the epoch's list: the gradient is
the mean of their loss gradients. With `train.gpus` > 1 each of the N processes takes every N-th of
them and DDP averages the processes' gradients in the last backward pass; alone, one process sums
them over `grad_accum` backward passes. Both scale each batch's loss so that the result is the mean.

Validation: each val image at fixed timesteps spread over the schedule with fixed noise, the same
in every epoch; the loss per timestep and their mean. Loss scales differ by orders of magnitude
across timesteps, so the per-timestep values are the signal to read.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch.nn.parallel import DistributedDataParallel

from charlora import atomic, disk_space, distributed, plan
from charlora.config import schema_defaults, train_conflicts
from charlora.distributed import World
from charlora.diffusion import add_noise, draw_noise, masked_mse, predict_noise, training_loss, val_timesteps
from charlora.ema import EMA
from charlora.optim import FusedBackward, make_optimizer
from charlora.sdxl import (
    load_unet,
    noise_scheduler,
    pick_device,
    save_safetensors,
    unet_config,
    unet_parameter_shapes,
    unet_with,
)
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
    grad_accum: int
    gpus: int | str
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
        train = schema_defaults()["train"] | changes
        return cls.from_config(plan.weight_settings(train, masks_made=True), train["device"])

    def check(self) -> None:
        """The combinations the config's validation refuses (config.train_conflicts), for callers that
        build Settings themselves."""
        train = {"optimizer": self.optimizer, "precision": self.precision, "fused_backward": self.fused_backward}
        if conflicts := train_conflicts(train):
            key, _, why = conflicts[0]
            raise ValueError(f"train.{key}: {why}")

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
    val: dict[int, float] = field(default_factory=dict)  # timestep -> loss
    seconds: float = 0.0  # wall time of the training steps

    @property
    def val_mean(self) -> float:
        return sum(self.val.values()) / len(self.val) if self.val else float("nan")


def seeded(*parts) -> torch.Generator:
    """A CPU generator seeded from `parts` (e.g. seed, epoch, step): same draws in any job, any device."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))


@torch.no_grad()
def validation_loss(unet, encoded, val_ids, alphas_cumprod, settings, world: World) -> dict[int, float]:
    """Loss per fixed timestep over the val images, with noise fixed per (image, timestep). With several
    processes each computes every world.size-th (timestep, image) pair; the sums are taken in one order,
    so the figures do not depend on the number of processes."""
    unet.eval()
    fixed, ids = val_timesteps(settings.val_timesteps), sorted(val_ids)
    pairs = [(t, i) for t in fixed for i in ids]
    values = torch.zeros(len(pairs), dtype=torch.float64)
    for k in range(world.rank, len(pairs), world.size):
        t, i = pairs[k]
        batch = make_batch(encoded, [i], world.device)
        noise = torch.randn(batch.latents.shape, generator=seeded(settings.seed, "val", i, t)).to(world.device)
        timesteps = torch.tensor([t])
        noisy = add_noise(batch.latents, noise, timesteps, alphas_cumprod)
        pred = predict_noise(
            unet, noisy, timesteps, batch.prompt, batch.pooled, batch.time_ids, settings.autocast_dtype
        )
        values[k] = masked_mse(pred, noise, batch.mask, settings).item()
    world.sum(values)  # each pair was computed by one process, zero elsewhere: the sum is exact
    unet.train()
    per_timestep = values.view(len(fixed), len(ids)).tolist()
    return {t: sum(row) / len(ids) for t, row in zip(fixed, per_timestep)}  # summed in image order


def save_epoch(
    path: Path, weights: dict[str, torch.Tensor], epoch: int, global_step: int, settings: Settings, model_hash: str
) -> None:
    save_safetensors(
        weights,
        path,
        metadata={
            "charlora.epoch": str(epoch),
            "charlora.global_step": str(global_step),
            "charlora.fingerprint": settings.fingerprint(),
            "charlora.base_model_sha256": model_hash,
            "format": "diffusers UNet2DConditionModel state dict",
        },
    )


def write_metrics(path: Path, result: EpochResult) -> None:
    lines = ["kind\tstep\ttimestep\tloss\tlr"]
    lines += [f"train\t{step}\t\t{loss:.6g}\t{lr:.6g}" for step, loss, lr in result.steps]
    lines += [f"val\t\t{t}\t{loss:.6g}\t" for t, loss in result.val.items()]
    lines += [f"val\t\tmean\t{result.val_mean:.6g}\t"]
    atomic.write_text(path, "\n".join(lines) + "\n")


# ---------------------------------------------------------------------------------------------------
# The block


def train_block(
    *,
    base_model: Path,
    model_hash: str,
    samples: list[Sample],
    val_ids: list[str],
    settings: Settings,
    first: int,
    last: int,
    out_dir: Path,
    previous_state: Path | None,
    cache_dir: Path,
    tensorboard_dir: Path | None = None,
    still_to_write: tuple[int, int] | None = None,
    progress: bool = True,
) -> list[EpochResult]:
    """Train epochs first..last (1-based) and write epoch files, metrics and the state after `last`.

    `still_to_write`: (saved epochs, job states) that this job and the run's later jobs write; the job
    stops before any work when the disk cannot hold them (default: this job's own).
    With `train.gpus` above 1 the block runs in that many processes (distributed.py), rank 0 writing."""
    for stale in out_dir.glob(".epoch-*.tmp"):  # temp files of a job that was killed mid-write
        shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
    settings.check()
    epochs, states = still_to_write or (len(plan.saved_epochs(first, last, settings.save_every)), 1)
    need = disk_space.training_need(
        unet_parameter_shapes(base_model),
        settings.weight_dtype.itemsize,
        str(settings.weight_dtype).removeprefix("torch."),
        settings.optimizer,
        bool(settings.ema_decay),
        epochs,
        states,
    )
    free = disk_space.check_free_space(out_dir, need, f"training epochs {first}-{last} and the jobs after them")
    log.info("disk: the rest of the run writes %s; %.2f GB free", need.describe(), free / 1e9)
    device = pick_device(settings.device)
    processes = distributed.process_count(settings.gpus, device)
    block = dict(
        base_model=base_model,
        model_hash=model_hash,
        samples=samples,
        val_ids=val_ids,
        settings=settings,
        first=first,
        last=last,
        out_dir=out_dir,
        previous_state=previous_state,
        cache_dir=cache_dir,
        tensorboard_dir=tensorboard_dir,
        progress=progress,
    )
    if processes == 1:
        return train_epochs(world=World(0, 1, device), **block)
    log.info(
        "training on %d processes (%s), each step %d batch(es) on each: DDP averages their gradients",
        processes,
        device.type,
        settings.grad_accum,
    )
    return distributed.launch(processes, device.type, train_epochs, block)


def train_epochs(
    *,
    world: World,
    base_model: Path,
    model_hash: str,
    samples: list[Sample],
    val_ids: list[str],
    settings: Settings,
    first: int,
    last: int,
    out_dir: Path,
    previous_state: Path | None,
    cache_dir: Path,
    tensorboard_dir: Path | None,
    progress: bool,
) -> list[EpochResult]:
    """The training loop of one process (train_block's arguments; `world`: this process among them)."""
    from tqdm import tqdm

    torch.use_deterministic_algorithms(True, warn_only=True)
    device = world.device
    train_ids = [s.id for s in samples if s.id not in set(val_ids)]
    if not train_ids:
        raise ValueError("no training images: every kept photo is in the validation split")
    data = step_data(base_model, model_hash, samples, settings, cache_dir, world)
    encoded, alphas_cumprod = data.encoded, data.alphas_cumprod

    unet, optimizer, scaler, ema, global_step = start_or_resume(
        base_model, settings, first, out_dir, previous_state, world
    )
    model = forward_model(unet, world)
    # The fused backward's step would run before DDP's average of the gradients, so with several
    # processes the optimizer steps after the backward pass instead.
    fused = FusedBackward(optimizer) if settings.fused_backward and world.size == 1 else None
    writer = tensorboard(tensorboard_dir, global_step) if world.is_main else None
    batches_per_step = settings.grad_accum * world.size
    if world.is_main:
        log.info(
            "training epochs %d-%d on %s: %s", first, last, device, block_summary(train_ids, val_ids, settings, world)
        )

    results = []
    for epoch in range(first, last + 1):
        result = EpochResult(epoch)
        batches = epoch_batches(encoded, train_ids, settings.batch_size, settings.seed, epoch)
        steps = range(0, len(batches), batches_per_step)  # each step's first batch
        bar = tqdm(steps, desc=f"epoch {epoch}", unit="step", disable=not (progress and world.is_main), mininterval=1.0)
        started = time.perf_counter()
        for step, step_start in enumerate(bar):
            step_batches = batches[step_start : step_start + batches_per_step]  # fewer in an epoch's last step
            losses = training_step(
                model, step_batches, step_start, epoch, step, data, world, settings, optimizer, scaler, fused
            )
            step_loss = losses.mean().item()
            if not math.isfinite(step_loss):
                raise TrainingDiverged(diverged(step_loss, epoch, step, global_step, first, step_batches))
            if fused is None:
                optimizer_step(optimizer, scaler)
            if ema is not None:
                ema.update(unet)
            global_step += 1
            result.steps.append((global_step, step_loss, settings.lr))
            bar.set_postfix(loss=f"{step_loss:.4f}")
            if writer:
                writer.add_scalar("train/loss", step_loss, global_step)
                writer.add_scalar("train/lr", settings.lr, global_step)

        result.seconds = time.perf_counter() - started
        eval_unet = ema.unet(unet, settings.weight_dtype) if ema is not None else unet
        result.val = validation_loss(eval_unet, encoded, val_ids, alphas_cumprod, settings, world)
        results.append(result)
        if not world.is_main:
            continue
        log_epoch(result, writer, global_step)
        if plan.is_saved(epoch, last, settings.save_every):
            weights = ema.state_dict(settings.weight_dtype) if ema is not None else unet.state_dict()
            save_epoch(
                out_dir / plan.epoch_name(epoch, "safetensors"), weights, epoch, global_step, settings, model_hash
            )
        write_metrics(out_dir / plan.epoch_name(epoch, "metrics.tsv"), result)

    if world.is_main:
        save_state(
            out_dir / plan.epoch_name(last, "state"), last, global_step, unet, optimizer, scaler, ema, settings, world
        )
    if fused is not None:
        fused.remove()
    if writer:
        writer.close()
    return results


def start_or_resume(
    base_model: Path, settings: Settings, first: int, out_dir: Path, previous_state: Path | None, world: World
):
    """The UNet in training mode, its optimizer, loss scaler and EMA, and the global step: fresh from the
    base model, or going on from the previous job's state (train_state.py)."""
    device = world.device
    state = TrainerState.load(previous_state, settings.fingerprint(), first - 1, world.size) if previous_state else None
    if state is None:
        weights = load_unet(base_model).state_dict()
    else:  # with EMA the epoch file holds the average, and the state the raw weights
        weights = state.unet or load_file(str(out_dir / plan.epoch_name(first - 1, "safetensors")))
    unet = unet_with(weights, unet_config(base_model)).to(device, settings.weight_dtype)
    if settings.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    unet.train()
    unet.requires_grad_(True)
    optimizer = make_optimizer(settings.optimizer, unet.parameters(), settings.lr, settings.seed)
    scaler = torch.amp.GradScaler(device.type, enabled=settings.precision == "fp16")
    if state is not None:
        state.restore(optimizer, scaler, unet, device)
    ema = None
    if settings.ema_decay:
        ema = (
            EMA({n: t.to(device) for n, t in state.ema.items()}, settings.ema_decay)
            if state
            else EMA.of(unet, settings.ema_decay)
        )
    return unet, optimizer, scaler, ema, state.global_step if state else 0


@dataclass
class StepData:
    """What every training step draws its batches from: the encoded samples (train_data.encode_samples),
    the empty prompt's encoding (caption dropout) and the noise schedule's cumulative alphas."""

    encoded: dict
    empty: object
    alphas_cumprod: torch.Tensor


def step_data(
    base_model: Path, model_hash: str, samples: list[Sample], settings: Settings, cache_dir: Path, world: World
) -> StepData:
    """The samples encoded once (the first process fills the encoding cache; the others then only read
    it), and the noise schedule."""
    if not world.is_main:
        world.barrier()
    cache = EncodingCache(cache_dir, model_hash)
    encoded, empty = encode_samples(base_model, model_hash, samples, settings, cache, world.device)
    if world.is_main:
        world.barrier()
    return StepData(encoded, empty, noise_scheduler(base_model).alphas_cumprod.float())


def forward_model(unet, world: World):
    """What the forward pass calls: the UNet, or with several processes DDP's wrapper, whose backward
    averages the gradients over the processes (gradient_as_bucket_view: DDP's buckets hold them once)."""
    if world.size == 1:
        return unet
    device = world.device
    return DistributedDataParallel(
        unet, device_ids=[device] if device.type == "cuda" else None, gradient_as_bucket_view=True
    )


def training_step(
    model,
    step_batches: list[list[str]],
    first_index: int,
    epoch: int,
    step: int,
    data: StepData,
    world: World,
    settings: Settings,
    optimizer,
    scaler,
    fused: FusedBackward | None,
) -> torch.Tensor:
    """One training step's gradients (accumulate_gradients), with the fused backward's optimizer step
    inside them; each batch's loss. Without the fused backward the caller steps (optimizer_step) once
    the loss is known to be finite."""
    # stochastic rounding of this step's updates: the same draws in every process and any job
    optimizer.step_seed = int(torch.randint(0, 2**62, (1,), generator=seeded(settings.seed, epoch, step, "rounding")))
    return accumulate_gradients(model, step_batches, first_index, epoch, data, world, settings, scaler, fused)


def optimizer_step(optimizer, scaler) -> None:
    """The optimizer's step on the accumulated gradients (through the fp16 loss scaler), then no gradients."""
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)


def accumulate_gradients(
    model,
    step_batches: list[list[str]],
    first_index: int,
    epoch: int,
    data: StepData,
    world: World,
    settings: Settings,
    scaler,
    fused: FusedBackward | None,
) -> torch.Tensor:
    """The backward passes of one optimizer step: every batch of the step (`step_batches`, the epoch's
    batches from `first_index`), spread over the processes in rounds; each batch's loss (float64).

    Each round, process r takes batch r of the next world.size. A batch's loss is scaled by
    world.size / len(step_batches): summed over rounds and averaged over processes (DDP), every batch
    of the step weighs the same, as in one process accumulating them all (train.grad_accum)."""
    encoded, empty, alphas_cumprod = data.encoded, data.empty, data.alphas_cumprod
    device = world.device
    rounds = -(-len(step_batches) // world.size)
    losses = torch.zeros(len(step_batches), dtype=torch.float64)
    for round_ in range(rounds):
        index = round_ * world.size + world.rank
        counted = index < len(step_batches)  # no batch left for this process in the last round:
        if not counted:  # it repeats one with weight 0 (DDP needs every process)
            index = round_ * world.size
        ids = step_batches[index]
        rng = seeded(settings.seed, epoch, first_index + index)  # this batch's draws, the same in any process
        drop = torch.rand(len(ids), generator=rng) < settings.caption_dropout
        batch = make_batch(encoded, ids, device, empty, drop)
        noise = draw_noise(batch.latents.shape, rng, settings.noise_offset).to(device)
        timesteps = torch.randint(0, len(alphas_cumprod), (len(ids),), generator=rng)

        last_round = round_ == rounds - 1
        if fused is not None:
            fused.armed = last_round  # steps in the last round's backward, on the summed gradients
        with model.no_sync() if world.size > 1 and not last_round else contextlib.nullcontext():
            noisy = add_noise(batch.latents, noise, timesteps, alphas_cumprod)
            pred = predict_noise(
                model, noisy, timesteps, batch.prompt, batch.pooled, batch.time_ids, settings.autocast_dtype
            )
            loss = training_loss(pred, noise, batch.mask, timesteps, alphas_cumprod, settings).mean()
            weight = world.size / len(step_batches) if counted else 0.0
            scaler.scale(loss * weight).backward()  # with fused_backward, each weight is updated in here
        if counted:
            losses[index] = loss.item()
    world.sum(losses)  # each batch's loss, from the process that computed it
    return losses


def block_summary(train_ids: list[str], val_ids: list[str], settings: Settings, world: World) -> str:
    """What a training job trains on and how, for its log."""
    processes = f" ({world.size} processes x {settings.grad_accum})" if world.size > 1 else ""
    return (
        f"{len(train_ids)} train / {len(val_ids)} val images, {settings.optimizer}, {settings.precision}, "
        f"lr {settings.lr:g}, {settings.grad_accum * world.size} batch(es) of {settings.batch_size} per step{processes}"
    )


def diverged(loss: float, epoch: int, step: int, global_step: int, first: int, step_batches: list[list[str]]) -> str:
    """The message of a step whose loss is not finite: what is kept, and what to do."""
    kept = (
        f"the epochs saved by earlier jobs (up to epoch {first - 1}) are kept"
        if first > 1
        else "no earlier job saved an epoch"
    )
    return (
        f"loss is {loss} at epoch {epoch}, step {step} (global step {global_step}); {kept}. Lower train.lr or check "
        "the images of this step: " + ", ".join(i for ids in step_batches for i in ids)
    )


def save_state(
    path: Path, epoch: int, global_step: int, unet, optimizer, scaler, ema: EMA | None, settings: Settings, world: World
) -> None:
    """What the next job goes on from (train_state.py): the optimizer's moments, the loss scale, and with
    EMA the raw weights (the epoch file holds the average) and the average's own."""
    names = {p: n for n, p in unet.named_parameters()}
    tensors, scalars = optimizer_state(optimizer, names)
    TrainerState(
        epoch,
        global_step,
        settings.fingerprint(),
        tensors,
        scalars,
        scaler.state_dict() if scaler.is_enabled() else None,
        unet.state_dict() if ema is not None else None,
        ema.weights if ema is not None else None,
        processes=world.size,
    ).save(path, asdict(settings))


def log_epoch(result: EpochResult, writer, global_step: int) -> None:
    """An epoch's losses in the job's log and in TensorBoard (val/loss, and one curve per timestep)."""
    log.info(
        "epoch %d: train loss %.5f (mean of %d steps, %.2f steps/s), val loss %.5f (%s)",
        result.epoch,
        sum(s[1] for s in result.steps) / max(1, len(result.steps)),
        len(result.steps),
        len(result.steps) / result.seconds,
        result.val_mean,
        ", ".join(f"t={t}: {v:.4f}" for t, v in result.val.items()),
    )
    if writer:
        writer.add_scalar("val/loss", result.val_mean, global_step)
        for t, v in result.val.items():
            writer.add_scalar(f"val/loss_t{t:03d}", v, global_step)
        writer.flush()


def tensorboard(folder: Path | None, global_step: int):
    """An event-file writer; purge_step drops what a killed earlier attempt logged beyond this point."""
    if folder is None:
        return None
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(folder), purge_step=global_step + 1 if global_step else None)
