"""The run record and the comparison of runs.

results/runs/<run>/run.yaml says what a run was made from and why, so that a LoRA found months later
can be traced and a run repeated: the effective config (every default filled in), the user's
rationale, the rights holder and the consent record's hash, the base model's hash, the dataset's
fingerprint (the hash of every curated image, mask and caption the training read, and of the split),
the versions of the packages that did the work and the charlora commit. No date: a rebuild from the
same inputs gives the same bytes.

results/runs/<run>/runs.tsv sets every run found under results/runs/ side by side: its rationale,
lowest validation loss, selected epoch and the settings that differ between the runs.
"""

from __future__ import annotations

import hashlib
import json
import math
import subprocess
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import yaml

from charlora import atomic, loss_trend, plan
from charlora.hashing import file_sha256

# The packages whose versions can change a run's bytes or its curation.
PACKAGES = (
    "torch",
    "diffusers",
    "transformers",
    "safetensors",
    "accelerate",
    "peft",
    "bitsandbytes",
    "numpy",
    "pillow",
    "opencv-python-headless",
    "imagededup",
    "rembg",
    "onnxruntime",
    "dlib-bin",
    "scikit-image",
    "open-clip-torch",
    "snakemake",
)


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def charlora_commit(checkout: str | Path) -> str:
    """The git commit of the workflow's checkout, and whether tracked files were changed since."""

    def git(*args):
        return subprocess.run(["git", "-C", str(checkout), *args], capture_output=True, text=True, check=True).stdout

    try:
        commit = git("rev-parse", "HEAD").strip()
        changed = git("status", "--porcelain", "--untracked-files=no").strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return commit + (" with local changes" if changed else "")


def dataset_fingerprint(files: dict[str, dict[str, Path]], split: Path) -> dict:
    """`files`: id -> {kind: curated file}. One hash for the whole dataset, and every file's."""
    per_id = {
        image_id: {kind: file_sha256(path) for kind, path in sorted(kinds.items())}
        for image_id, kinds in sorted(files.items())
    }
    lines = [f"{image_id}\t{kind}\t{digest}" for image_id, kinds in per_id.items() for kind, digest in kinds.items()]
    split_hash = file_sha256(split)
    lines.append(f"split\t{split_hash}")
    return {
        "sha256": hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest(),
        "photos": len(per_id),
        "split_sha256": split_hash,
        "files": per_id,
    }


def make_record(
    *,
    config: dict,
    dataset: str,
    files: dict[str, dict[str, Path]],
    split: Path,
    base_model: str,
    base_hash: str,
    consent: Path | None,
    checkout: str | Path,
) -> dict:
    subject = config["subject"]
    return {
        "run": config["run"],
        "rationale": config["rationale"],
        "rights_holder": subject["rights_holder"],
        "consent": {"record": str(consent), "sha256": file_sha256(consent)} if consent else None,
        "base_model": {"path": base_model, "sha256": base_hash},
        "dataset": {"path": dataset, **dataset_fingerprint(files, split)},
        "charlora": charlora_commit(checkout),
        "packages": package_versions(),
        "config": config,
    }


def write_record(path: str | Path, record: dict) -> None:
    """YAML in a fixed order (the record's, then sorted config keys), so a rebuild gives the same bytes."""
    head = {k: v for k, v in record.items() if k != "config"}
    text = yaml.safe_dump(head, sort_keys=False, allow_unicode=True, width=120) + yaml.safe_dump(
        {"config": record["config"]}, sort_keys=True, allow_unicode=True, width=120
    )
    atomic.write_text(path, text)


# --- comparing runs ----------------------------------------------------------------------------------


@dataclass
class RunSummary:
    run: str
    rationale: str
    settings: dict[str, str]  # the config, flattened: 'train.lr' -> '4e-06'
    lowest_val: tuple[int, float] | None  # (epoch, mean validation loss): the raw figure
    lowest_val_smoothed: tuple[int, float] | None  # (epoch, its value) on the smoothed curve the selection reads
    selected: str  # the epoch the run's LoRA is of, and how it was chosen


def flatten(config: dict, prefix: str = "") -> dict[str, str]:
    flat = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:
            flat |= flatten(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value
    return flat


def lowest(curve: dict[int, float]) -> tuple[int, float] | None:
    """(epoch, value) of the lowest point of a per-epoch curve (the earliest on a tie)."""
    if not curve:
        return None
    best = min(curve, key=lambda epoch: (curve[epoch], epoch))
    return best, curve[best]


def validation_losses(train_dir: Path) -> dict[int, float]:
    """Each epoch's mean validation loss, from the epochs' metrics.tsv files."""
    from charlora.validate_plots import read_losses

    metrics = {int(p.name[len("epoch-") :].split(".")[0]): p for p in train_dir.glob("epoch-*.metrics.tsv")}
    _, val = read_losses(metrics)
    return loss_trend.finite({epoch: losses.get("mean", math.nan) for epoch, losses in val.items()})


def read_run(runs: str | Path, run: str) -> RunSummary | None:
    """A run's summary from its record and what it has written so far; None without a record. `runs`:
    the folder of the runs (plan.RUNS in a workspace)."""
    record_path = Path(plan.run_dir(run, runs)) / "run.yaml"
    if not record_path.is_file():
        return None
    record = yaml.safe_load(record_path.read_text(encoding="utf-8"))
    config = record["config"]
    selected_path = Path(plan.validate_dir(run, runs)) / "selected.json"
    if config["lora"]["epoch"] != "auto":
        selected = f"{config['lora']['epoch']} (lora.epoch)"
    elif selected_path.is_file():
        epoch = json.loads(selected_path.read_text(encoding="utf-8"))["epoch"]
        selected = f"{epoch} (scorecard)" if epoch is not None else "none (see validate/selected.json)"
    else:
        selected = "not yet"
    val = validation_losses(Path(plan.train_dir(run, runs)))
    return RunSummary(
        record["run"],
        record.get("rationale") or "",
        flatten(config),
        lowest(val),
        lowest(loss_trend.smooth(val)),
        selected,
    )


# The same names as the scorecard's and selected.json's: the raw mean of an epoch's validation losses, and
# the smoothed curve (loss_trend.smooth) whose minimum the selection starts from.
LOSS_COLUMNS = ["lowest validation loss (raw)", "lowest validation loss (smoothed)"]


def compare(runs: list[RunSummary]) -> tuple[list[str], list[list[str]]]:
    """Header and rows: one row per run; the settings columns are the keys whose values differ."""
    keys = sorted({k for r in runs for k in r.settings} - {"run", "rationale"})
    differing = [k for k in keys if len({r.settings.get(k, "(unset)") for r in runs}) > 1]
    header = ["run", "rationale", *LOSS_COLUMNS, "selected epoch", *differing]
    rows = [
        [
            r.run,
            r.rationale,
            *(f"{low[1]:.6g} (epoch {low[0]})" if low else "not yet" for low in (r.lowest_val, r.lowest_val_smoothed)),
            r.selected,
            *(r.settings.get(k, "(unset)") for k in differing),
        ]
        for r in runs
    ]
    return header, rows


def write_comparison(path: str | Path, runs_root: str | Path) -> list[RunSummary]:
    """runs.tsv for every run under `runs_root` that has a record, in name order."""
    runs = [s for d in sorted(Path(runs_root).iterdir()) if d.is_dir() and (s := read_run(runs_root, d.name))]
    header, rows = compare(runs)
    atomic.write_tsv(path, header, rows)
    return runs
