"""Benchmark of the dataset stage on a generated folder of 1024 x 1024 photos.

Prints, side by side in one run:
  - wall time of `snakemake --cores 2` end to end (audit, dedup, ingest, report);
  - per-image job time as Snakemake records it (start to end of each audit and ingest job) next to
    the same work done in-process, so the difference is the per-job overhead (process start,
    imports, Snakemake's script preamble);
  - wall time of a no-op dry run on the finished workflow, next to `snakemake --version` (the fixed
    start-up cost of Snakemake itself on this machine).

    .venv/bin/python benchmarks/dataset_stage.py [--images 200] [--keep DIR]
"""

import argparse
import base64
import itertools
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(REPO / "tests"))

from charlora import demo, demo_render  # noqa: E402
from charlora.audit import audit_image  # noqa: E402
from charlora.config import validate_config  # noqa: E402
from charlora.images import decode_rgb  # noqa: E402
from charlora.masks import make_mask  # noqa: E402
from workflow import make_workspace  # noqa: E402

SIDE = 1024


POSES = ["standing", "waving", "hands on hips", "arms crossed", "arms up", "walking", "sitting"]
EXPRESSIONS = ["smiling", "neutral", "serious", "surprised"]
BACKGROUNDS = ["grey studio", "beige gradient", "blue wall", "sky", "park", "beach", "brick wall"]


def generate(folder: Path, count: int) -> None:
    """`count` 1024 x 1024 photos of the demo character, as JPEG 95: each a different combination
    of framing, pose, outfit, background and position (some will still be near-duplicates)."""
    folder.mkdir(parents=True, exist_ok=True)
    combos = list(itertools.product(demo.WINDOW_HEADS, POSES, demo.OUTFITS, BACKGROUNDS))
    order = np.random.default_rng(0).permutation(len(combos))[:count]
    for i, k in enumerate(order):
        framing, pose, outfit, background = combos[k]
        shot = demo.Shot(f"photo_{i:03d}.jpg", framing, pose=pose, outfit=outfit, background=background,
                         expression=EXPRESSIONS[i % 4], size=(SIDE, SIDE), seed=1000 + i,
                         shift=((i * 37) % 41 - 20) / 100)
        demo_render.render(shot).save(folder / shot.name, "JPEG", quality=95)


def timed(cmd, cwd):
    start = time.perf_counter()
    result = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if result.returncode != 0:
        raise SystemExit(result.stdout[-4000:])
    return time.perf_counter() - start


def job_times(ws: Path, prefix: str) -> list[float]:
    """Start-to-end seconds of each job whose output path starts with `prefix` (from Snakemake's records)."""
    times = []
    for record in (ws / ".snakemake" / "metadata").iterdir():
        path = base64.b64decode(record.name.replace("@", "/")).decode("utf-8", "replace")
        if path.startswith(prefix):
            data = json.loads(record.read_text())
            times.append(data["endtime"] - data["starttime"])
    return times


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="charlora-bench-"))
    photos = root / "photos" / "images"
    t0 = time.perf_counter()
    generate(photos, args.images)
    print(f"generated {args.images} photos of {SIDE}x{SIDE} in {time.perf_counter() - t0:.0f} s")
    ws = make_workspace(root / "ws")
    smk = [sys.executable, "-m", "snakemake", "--cores", "2", "--config", f"dataset={photos.parent}"]

    wall = timed(smk, ws)
    audits, ingests = job_times(ws, "results/dataset/audit/"), job_times(ws, "results/dataset/images/")
    mask_jobs = [t for t in job_times(ws, "results/dataset/masks/")]
    dedup_job = job_times(ws, "results/dataset/dedup.tsv")[0]
    report_job = job_times(ws, "results/dataset/report.html")[0]

    settings = validate_config({}, REPO / "config" / "schema.yaml")["ingest"]
    sample = sorted(photos.iterdir())[:20]
    t0 = time.perf_counter()
    for p in sample:
        audit_image(p, p.stem, settings)
    audit_work = (time.perf_counter() - t0) / len(sample)
    t0 = time.perf_counter()
    for p in sample:
        decode_rgb(p, 100).image.save(root / "x.png", compress_level=4)
    ingest_work = (time.perf_counter() - t0) / len(sample)
    masks_config = validate_config({"masks": {"method": "colour_key"}}, REPO / "config" / "schema.yaml")["masks"]
    kept = sorted((ws / "results/dataset/images").iterdir())[:20]
    t0 = time.perf_counter()
    for p in kept:
        make_mask(p, None, masks_config)
    mask_work = (time.perf_counter() - t0) / len(kept)

    dry = min(timed(smk + ["-n"], ws) for _ in range(3))
    version = min(timed([sys.executable, "-m", "snakemake", "--version"], ws) for _ in range(3))

    n = args.images
    print(f"\nend to end, {n} photos ({len(ingests)} kept), --cores 2: {wall:.1f} s ({wall / n * 1000:.0f} ms per photo)")
    print(f"  dedup checkpoint job: {dedup_job:.1f} s; report job: {report_job:.1f} s")
    print(f"{'per-image job':18} {'job (median)':>13} {'work in-process':>16} {'overhead':>9}")
    for name, times, work in (("audit", audits, audit_work), ("ingest", ingests, ingest_work),
                              ("mask (colour key)", mask_jobs, mask_work)):
        med = statistics.median(times)
        print(f"{name:18} {med:12.2f}s {work:15.2f}s {med - work:8.2f}s")
    print(f"no-op dry run: {dry:.2f} s   (snakemake --version alone: {version:.2f} s; "
          f"workflow's own share: {dry - version:.2f} s)")


if __name__ == "__main__":
    main()
