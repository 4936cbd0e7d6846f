"""What one training job hands the next, so that a chain of jobs trains exactly as one job would: the
step count, the optimizer's state, the loss scale (fp16), and with EMA the raw weights (the epoch file
then holds the averaged ones) and the average itself. nanoGPT's checkpoint dict, here a folder that
appears whole or not at all: epoch-<eee>.state/ with optimizer.safetensors, trainer.json and, with
EMA, unet.safetensors and ema.safetensors. Saved in one place (`save`), read in one place (`load`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file

from charlora import atomic
from charlora.sdxl import save_safetensors


@dataclass
class TrainerState:
    epoch: int  # the last epoch trained
    global_step: int
    fingerprint: str  # of the settings it was trained with (plan.fingerprint)
    optimizer: dict[str, torch.Tensor]  # '<parameter name>/<state key>' -> tensor
    optimizer_scalars: dict  # '<parameter name>/<state key>' -> number
    grad_scaler: dict | None  # torch.amp.GradScaler's state, fp16 only
    unet: dict[str, torch.Tensor] | None = None  # the raw weights, with EMA only
    ema: dict[str, torch.Tensor] | None = None  # the fp32 average, with EMA only
    processes: int = 1  # training processes (train.gpus): batches per step = grad_accum x processes

    def save(self, folder: Path, settings: dict) -> None:
        with atomic.atomic_dir(folder) as tmp:
            save_safetensors(self.optimizer, tmp / "optimizer.safetensors")
            if self.ema is not None:
                save_safetensors(self.unet, tmp / "unet.safetensors")
                save_safetensors(self.ema, tmp / "ema.safetensors")
            atomic.write_json(
                tmp / "trainer.json",
                {
                    "epoch": self.epoch,
                    "global_step": self.global_step,
                    "optimizer_scalars": self.optimizer_scalars,
                    "grad_scaler": self.grad_scaler,
                    "processes": self.processes,
                    "settings": settings,
                    "fingerprint": self.fingerprint,
                },
            )

    @classmethod
    def load(cls, folder: Path, fingerprint: str, epoch: int, processes: int) -> "TrainerState":
        """The state after `epoch`; refused when it was saved under other settings or process count."""
        record = json.loads((folder / "trainer.json").read_text())
        if record["fingerprint"] != fingerprint or record["epoch"] != epoch:
            raise ValueError(f"{folder} is from other settings or epoch {record['epoch']}, not {epoch}")
        if record.get("processes", 1) != processes:
            raise ValueError(
                f"{folder} was trained on {record.get('processes', 1)} process(es) and this job has "
                f"{processes}: a step takes train.grad_accum batches on each, so the run would go on "
                f"with another batch per step. Set train.gpus: {record.get('processes', 1)}, or "
                "retrain from epoch 1"
            )
        with_ema = (folder / "ema.safetensors").is_file()
        return cls(
            record["epoch"],
            record["global_step"],
            record["fingerprint"],
            load_file(str(folder / "optimizer.safetensors")),
            record["optimizer_scalars"],
            record.get("grad_scaler"),
            load_file(str(folder / "unet.safetensors")) if with_ema else None,
            load_file(str(folder / "ema.safetensors")) if with_ema else None,
            record.get("processes", 1),
        )

    def restore(self, optimizer, scaler: torch.amp.GradScaler, unet, device: torch.device) -> None:
        """Put the optimizer's state and the loss scale back where the previous job left them."""
        params = dict(unet.named_parameters())
        for flat, value in list(self.optimizer.items()) + list(self.optimizer_scalars.items()):
            name, key = flat.split("/", 1)
            optimizer.state[params[name]][key] = value.to(device) if torch.is_tensor(value) else value
        if self.grad_scaler:
            scaler.load_state_dict(self.grad_scaler)


def optimizer_state(optimizer, names: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """The optimizer's state as tensors and JSON scalars keyed '<parameter name>/<state key>'."""
    tensors, scalars = {}, {}
    for p, state in optimizer.state.items():
        for key, value in state.items():
            if torch.is_tensor(value):  # a copy: bitsandbytes shares one quantisation map among parameters
                tensors[f"{names[p]}/{key}"] = value.detach().clone()
            else:
                scalars[f"{names[p]}/{key}"] = value
    return tensors, scalars
