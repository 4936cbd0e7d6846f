"""One model load for many photos: the masking and tagging models run in batches, with a cache by content.

A mask job (rembg) or a tag job (WD14, VLM) per photo would load its model once per photo: with a
real-size tagger, loading is a large share of each job on a CPU and nearly all of it on a GPU. So the
first job that needs the model, holding the cache folder's lock, runs it over every kept photo that is
ingested and not yet in the cache (its own first), loading it once, and keeps each photo's model output
under a key made of what decides it: the photo's bytes, the model files' bytes and the settings the
model reads (results/cache/masks/, results/cache/tags/). The next jobs find their photo there. Each
job then finishes from its entry (the mask's threshold, holes, dilation and feathering; the tag
record), so a setting read after the model reruns the per-photo jobs without loading it.

The Snakemake graph is the per-photo one, unchanged: a changed photo reruns its own jobs only, and its
job computes that photo alone. The cache is an optimisation, not an input: which photos share a batch
depends on what has been ingested when the job runs, but a photo's entry never does (each photo goes
through the model alone, in the same session settings), so its mask and tags are the same bytes made
in any batch or alone. Why not a batch job in the graph: its output would be an input of every
per-photo job, and either every photo's jobs rerun whenever one photo changes, or (marked ancient)
Snakemake 9.27 skips the rerun checks of the jobs after it (a caption edited by hand, the caption lint
after a photo is removed), because its needrun search does not follow ancient inputs.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from charlora import atomic, dedup, plan
from charlora.hashing import file_sha256

log = logging.getLogger("charlora.model_pass")


@dataclass(frozen=True)
class Output:
    """How one kind of model output is kept in the cache."""

    folder: str  # under results/cache
    suffix: str
    save: Callable[[Any, Path], None]
    read: Callable[[Path], Any]


def _save_alpha(alpha: np.ndarray, path: Path) -> None:
    # rembg's masks are 8-bit: alpha is k / 255, kept exactly as k
    atomic.save_image(Image.fromarray(np.round(alpha * 255).astype(np.uint8), "L"), path)


def _read_alpha(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im, dtype=np.float32) / 255.0


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


MASKS = Output("masks", ".png", _save_alpha, _read_alpha)  # rembg's mask before any post-processing
TAGS = Output("tags", ".json", lambda record, path: atomic.write_json(path, record), _read_json)


def fingerprint(files: list[str | Path], cache: str | Path) -> str:
    """The model's identity: the SHA-256 of its files' names and bytes (a moved model keeps it). Each
    file's hash is remembered by path, size and modification time in `cache`/models.json, so that a
    multi-GB model is read once, not once per photo."""
    memo_path = Path(cache) / "models.json"
    memo = _read_json(memo_path) if memo_path.is_file() else {}
    h, changed = hashlib.sha256(), False
    for path in sorted(Path(f) for f in files):
        stat = path.stat()
        stamp = f"{path.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}"
        if stamp not in memo:
            memo[stamp], changed = file_sha256(path), True
        h.update(f"{path.name}\0{memo[stamp]}\n".encode())
    if changed:
        atomic.write_json(memo_path, memo)
    return h.hexdigest()


def entry_key(image_sha256: str, model: str, settings: dict) -> str:
    """The cache key of one photo's model output (`image_sha256`: the SHA-256 of the photo's bytes)."""
    what = {"image": image_sha256, "model": model, "settings": settings}
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()


def entry_path(kind: Output, cache: str | Path, key: str) -> Path:
    return Path(cache) / kind.folder / f"{key}{kind.suffix}"


@contextmanager
def locked(folder: Path) -> Iterator[None]:
    """The cache folder to one job at a time (the others wait: their photo is likely in the batch)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def kept_ingested(dataset_dir: str | Path = plan.DATASET_DIR, leave_out: set[str] = frozenset()) -> list[Path]:
    """The kept photos ingested so far (dedup.tsv and images/), but `leave_out`: a batch's other photos."""
    table = Path(dataset_dir) / "dedup.tsv"
    if not table.is_file():
        return []
    kept = [row.id for row in dedup.read_table(table) if row.status == dedup.KEPT and row.id not in leave_out]
    return [path for i in kept if (path := Path(dataset_dir) / "images" / f"{i}.png").is_file()]


def photo_output(
    kind: Output,
    image: str | Path,
    model_files: list[str | Path],
    settings: dict,
    load: Callable[[], Callable[[Path], Any]],
    others: Callable[[], list[Path]] = list,
    cache: str | Path = plan.CACHE,
    progress: bool = True,
) -> tuple[Any, str]:
    """One photo's model output and the words saying where it came from: the cache, or a batch run
    here over this photo and `others()` not yet in the cache, with one `load()` of the model."""
    from tqdm import tqdm

    image = Path(image)
    model = fingerprint(model_files, cache)
    path = entry_path(kind, cache, entry_key(file_sha256(image), model, settings))
    if path.is_file():
        return kind.read(path), "from the cache"
    with locked(Path(cache) / kind.folder), tempfile.TemporaryDirectory(prefix="charlora-batch-") as held:
        if path.is_file():  # another job's batch made it while this one waited
            return kind.read(path), "from the cache (another job's batch)"
        batch = {path: image}
        for other in others():
            # Another photo may be rewritten meanwhile by its ingest job (Snakemake first deletes the
            # old file): its bytes are read once, hashed, and run from a copy under its own name, so
            # the key and the output come from the same bytes; a photo not there now is left to its job.
            try:
                data = other.read_bytes()
            except FileNotFoundError:
                continue
            other_path = entry_path(kind, cache, entry_key(hashlib.sha256(data).hexdigest(), model, settings))
            if other_path not in batch and not other_path.is_file():
                held_copy = Path(held) / other.name
                held_copy.write_bytes(data)
                batch[other_path] = held_copy
        started = time.perf_counter()
        compute = load()
        loaded = time.perf_counter()
        for entry, photo in tqdm(batch.items(), desc=f"{kind.folder} batch", unit="photo", disable=not progress):
            kind.save(compute(photo), entry)
        done = time.perf_counter()
    log.info(
        "%s: model loaded in %.2f s, %d photos in %.2f s (%.3f s each): loading was %.1f %% of the batch",
        kind.folder,
        loaded - started,
        len(batch),
        done - loaded,
        (done - loaded) / len(batch),
        100 * (loaded - started) / max(done - started, 1e-9),
    )
    return kind.read(path), f"computed in a batch of {len(batch)} photo(s), one model load"


def environment_device(name: str) -> str:
    """A device that rules/common.smk put in the environment (CHARLORA_<NAME>_DEVICE); cpu without it."""
    return os.environ.get(f"CHARLORA_{name.upper()}_DEVICE", "cpu")
