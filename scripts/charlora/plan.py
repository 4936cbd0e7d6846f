"""The plan of a training run, written once for the rules and the library alike: its blocks of
epochs, which epochs are saved and sampled, where its files are (the results layout: every folder a
rule or a script names is built here), and which settings change its weights.

Standard library only: rules/common.smk imports it at parse time, on every cluster node.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from charlora import triggers

# `train:` settings that leave the weights as they are are not in the table's "train" stage
# (triggers.py): epochs (raising it continues the same run: only the new blocks train), epochs_per_job
# (a chain of jobs gives the weights of one long job, bit for bit: tested), device (the same training on
# another machine), mem_mb and runtime (the scheduler's), export (an extra file made from an epoch).
WEIGHT_KEYS = sorted(key.removeprefix("train.") for key in triggers.TRIGGERS["train"] if key.startswith("train."))

RESULTS = "results"
DATASET_DIR = f"{RESULTS}/dataset"  # the curated dataset: images, masks, captions, the tables, the report
DEMO_DIR = f"{RESULTS}/demo"  # the embedded demo's photos, drawn by rule demo_dataset
CACHE = f"{RESULTS}/cache"  # the training's encodings (VAE latents, text embeddings), shared by runs
RUNS = f"{RESULTS}/runs"


def weight_settings(train: dict, masks_made: bool) -> dict:
    """The settings the weights depend on, in a fixed order: the training rules' rerun trigger and the
    fingerprint kept with every epoch. Masked training is on only where masks are made."""
    settings = {k: train[k] for k in WEIGHT_KEYS}
    settings["masked_training"] = train["masked_training"] and masks_made
    return settings


def fingerprint(settings: dict) -> str:
    """A short hash of `weight_settings`: a state saved under other settings is never continued."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def blocks(epochs: int, epochs_per_job: int) -> list[tuple[int, int]]:
    """(first, last) epoch of each training job, 1-based: the chain."""
    return [(first, min(first + epochs_per_job - 1, epochs)) for first in range(1, epochs + 1, epochs_per_job)]


def is_saved(epoch: int, last: int, save_every: int) -> bool:
    """An epoch's UNet is saved every `save_every` epochs, and always at the end of its block (the
    next block starts from it)."""
    return epoch % save_every == 0 or epoch == last


def saved_epochs(first: int, last: int, save_every: int) -> list[int]:
    return [e for e in range(first, last + 1) if is_saved(e, last, save_every)]


def run_dir(run: str, runs: str | Path = RUNS) -> str:
    """A run's folder (`runs`: where the runs are, when another workspace's are read)."""
    return f"{runs}/{run}"


def _folder_of_run(name: str):
    def folder(run: str, runs: str | Path = RUNS) -> str:
        return f"{run_dir(run, runs)}/{name}"

    folder.__name__ = f"{name}_dir"
    return folder


# A run's folders (each a function of the run's name, and of where the runs are).
train_dir = _folder_of_run("train")  # the epochs' UNet files, metrics and job states
tensorboard_dir = _folder_of_run("tensorboard")  # the event files of every training job
validate_dir = _folder_of_run("validate")  # prompts, samples, grids, sheets, scores, scorecard, selection
lora_dir = _folder_of_run("lora")  # the LoRA of each extracted epoch, with its verification
export_dir = _folder_of_run("export")  # saved epochs as full checkpoints (train.export)


def epoch_name(epoch: int, kind: str) -> str:
    """The file of an epoch in the run's train/ folder; kind: safetensors, metrics.tsv or state.
    (The rules' wildcard patterns spell it epoch-{eee}.<kind>, constrained to three digits.)"""
    return f"epoch-{epoch:03d}.{kind}"


def epoch_file(run: str, epoch: int, kind: str) -> str:
    return f"{train_dir(run)}/{epoch_name(epoch, kind)}"


def sampled_epochs(saved: list[int], every: int) -> list[int]:
    """The epochs the validation's coarse pass samples: 0 (the base model, the reference), every
    `every`-th saved epoch, and the last one (refinement.py adds epochs once the losses are known)."""
    return sorted({0, *saved[every - 1 :: every], *saved[-1:]})
