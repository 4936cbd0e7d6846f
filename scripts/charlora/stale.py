"""Files in results/dataset/ that belong to no photo of the current dataset.

Per-photo artefacts are named by the photo's id. When the user switches `dataset:`, removes a photo
or a photo becomes a duplicate of a better copy, its old files would stay beside the current ones,
and whoever reads the folder ("each kept photo") would take them for part of the dataset. After each
dedup, the files whose id is not (or no longer) one of the photos a folder is for are removed.
Snakemake's and atomic.py's own temporary files (dot-files) are left alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from charlora import atomic
from charlora.dedup import DUPLICATE, KEPT, DedupRow

# folder under results/dataset/ -> (the suffixes after <id>, whether every listed photo has one or the kept ones only)
PER_PHOTO = {
    "audit": ((".json",), False),
    "images": ((".png",), True),
    "tags": ((".json",), True),
    "captions": ((".txt", ".json"), True),
    "masks": ((".png", ".json"), True),
}


@dataclass
class StaleFile:
    path: Path
    reason: str


def _owner(name: str, suffixes: tuple[str, ...]) -> str | None:
    """The id a per-photo file name is for, or None when it is no name this folder's rule writes."""
    for suffix in suffixes:
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return None


def find_stale(dataset_root: str | Path, rows: list[DedupRow]) -> list[StaleFile]:
    """Every per-photo file under `dataset_root` (results/dataset) that the dedup table does not
    account for, with the reason, in path order."""
    dataset_root = Path(dataset_root)
    by_id = {row.id: row for row in rows if row.id}
    stale = []
    for folder, (suffixes, kept_only) in PER_PHOTO.items():
        if not (dataset_root / folder).is_dir():
            continue
        for path in sorted((dataset_root / folder).iterdir()):
            if path.name.startswith(".") or path.is_dir():
                continue
            image_id = _owner(path.name, suffixes)
            row = by_id.get(image_id) if image_id is not None else None
            if image_id is None:
                reason = f"not a file charlora writes in {folder}/"
            elif row is None:
                reason = f"no photo {image_id!r} in the current dataset"
            elif kept_only and row.status != KEPT:
                reason = (
                    f"{row.file} is now a duplicate of {row.duplicate_of}"
                    if row.status == DUPLICATE
                    else f"{row.file} is now rejected: {row.reason}"
                )
            else:
                continue
            stale.append(StaleFile(path, reason))
    return stale


def remove_stale(stale: list[StaleFile]) -> None:
    for item in stale:
        item.path.unlink(missing_ok=True)


def write_table(path: str | Path, stale: list[StaleFile]) -> None:
    """The removed files, one row each (path, reason): what the last dedup cleared away."""
    atomic.write_tsv(path, ["path", "reason"], ([str(item.path), item.reason] for item in stale))
