"""Will the rest of a training run fit on the disk? Estimated from the UNet's parameter shapes before
a training job starts, so a run stops with a clear message instead of dying at epoch 37 of 40 with a
half-written file (the earlier epochs stay: files are written atomically).

What a run writes per saved epoch: the UNet's weights in the training dtype (bf16 for train.precision
bf16, else fp32). Per training job: its state folder (train_state.py), kept for the next job:
  adafactor   the factored second moment: rows + columns of each weight matrix, a full fp32 copy of
              each vector (bias, norm); its exp_avg_sq tensors
  adamw       two fp32 moments per weight (exp_avg, exp_avg_sq)
  adamw8bit   two 8-bit moments per weight, plus bitsandbytes' fp32 block maxima (one per 256) and
              fp32 moments for tensors under 4096 values
  with EMA    also the raw weights (training dtype) and the fp32 average
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass
from pathlib import Path

HEADER_BYTES_PER_TENSOR = 160  # safetensors' JSON header entry: name, dtype, shape, offsets
MARGIN = 1.05  # logs, TensorBoard files and samples come on top


class NotEnoughDisk(RuntimeError):
    pass


def optimizer_state_bytes(shapes: list[tuple[int, ...]], optimizer: str) -> int:
    """Bytes of the optimizer's tensors for parameters of these shapes (as saved: fp32 / uint8)."""
    total = 0
    for shape in shapes:
        n = math.prod(shape)
        if optimizer == "adafactor":
            total += 4 * (math.prod(shape[:-1]) + math.prod(shape[:-2] + shape[-1:]) if len(shape) >= 2 else n)
        elif optimizer == "adamw":
            total += 8 * n + 4  # exp_avg, exp_avg_sq, and the step as a tensor
        elif optimizer == "adamw8bit":
            total += 8 * n if n < 4096 else 2 * n + 8 * math.ceil(n / 256)
        else:
            raise ValueError(f"unknown optimizer {optimizer!r}")
    return total + HEADER_BYTES_PER_TENSOR * len(shapes) * (2 if optimizer != "adafactor" else 1)


@dataclass
class DiskNeed:
    epochs: int  # saved epoch files still to write
    epoch_bytes: int  # each
    states: int  # training states still to write (one per job)
    state_bytes: int  # each
    weight_dtype: str

    @property
    def total(self) -> int:
        return self.epochs * self.epoch_bytes + self.states * self.state_bytes

    def describe(self) -> str:
        return (
            f"{self.epochs} saved epoch(s) x {self.epoch_bytes / 1e9:.2f} GB (the UNet in {self.weight_dtype}) + "
            f"{self.states} training state(s) x {self.state_bytes / 1e9:.2f} GB (what the next job continues "
            f"from) = {self.total / 1e9:.2f} GB"
        )


def training_need(
    shapes: list[tuple[int, ...]],
    weight_itemsize: int,
    weight_dtype: str,
    optimizer: str,
    ema: bool,
    epochs: int,
    states: int,
) -> DiskNeed:
    """What `epochs` more saved epochs and `states` more job states of a UNet with these parameter
    shapes take on disk."""
    parameters = sum(math.prod(s) for s in shapes)
    headers = HEADER_BYTES_PER_TENSOR * len(shapes)
    epoch_bytes = parameters * weight_itemsize + headers
    state_bytes = optimizer_state_bytes(shapes, optimizer)
    if ema:
        state_bytes += epoch_bytes + parameters * 4 + headers
    return DiskNeed(epochs, epoch_bytes, states, state_bytes, weight_dtype)


def check_free_space(folder: str | Path, need: DiskNeed, what: str) -> int:
    """Raise NotEnoughDisk, saying what takes the space and what to do, when the disk holding
    `folder` has less free space than `need` (plus a 5 % margin); return the free bytes."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    if free < need.total * MARGIN:
        raise NotEnoughDisk(
            f"not enough disk space for {what}: {folder} is on a disk with {free / 1e9:.2f} GB free, and the rest "
            f"of the run writes {need.describe()}, plus 5 % for logs and samples. Free space on that disk, put "
            "results/ on a bigger one (a symlink works), or save fewer epochs (train.save_every) or fewer jobs' "
            "states (train.epochs_per_job). Every epoch saved so far is kept."
        )
    return free
