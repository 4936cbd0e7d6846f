"""Benchmark of the dataset stage on a generated folder of 1024 x 1024 photos, with tiny local
models for rembg (masks) and the WD14 tagger, so that their real loading code runs per job.

Prints, side by side in one run:
  - wall time of `snakemake --cores 2` end to end (audit, dedup, ingest, report), and the CPU time
    of the run and of Snakemake's own process (its scheduling and bookkeeping) within it;
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
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import chdir
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(REPO / "tests"))

from charlora import demo, demo_render  # noqa: E402
from charlora.audit import audit_image  # noqa: E402
from charlora.config import validate_config  # noqa: E402
from charlora.images import decode_rgb  # noqa: E402
from charlora.masks import make_mask  # noqa: E402
from charlora.tags import tag_image  # noqa: E402
from tiny_onnx import brightness_segmenter, wd14_tagger  # noqa: E402
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
        shot = demo.Shot(
            f"photo_{i:03d}.jpg",
            framing,
            pose=pose,
            outfit=outfit,
            background=background,
            expression=EXPRESSIONS[i % 4],
            size=(SIDE, SIDE),
            seed=1000 + i,
            shift=((i * 37) % 41 - 20) / 100,
        )
        demo_render.render(shot).save(folder / shot.name, "JPEG", quality=95)


def timed(cmd, cwd):
    start = time.perf_counter()
    result = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if result.returncode != 0:
        raise SystemExit(result.stdout[-4000:])
    return time.perf_counter() - start


def timed_run(cmd, cwd) -> tuple[float, float, float]:
    """Wall seconds of `cmd`, the CPU seconds of its own process (Snakemake's scheduler: sampled from
    /proc every 0.2 s, the last sample before it exits) and of it with all its jobs."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as output:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=output, stderr=subprocess.STDOUT, text=True)
        own = 0.0
        while proc.poll() is None:
            try:
                stat = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
                own = (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
            except (OSError, IndexError):
                pass
            time.sleep(0.2)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            output.seek(0)
            raise SystemExit(output.read()[-4000:])
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, own, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def job_times(ws: Path, prefix: str) -> list[float]:
    """Start-to-end seconds of each job whose output path starts with `prefix` (from Snakemake's records)."""
    times = []
    for record in (ws / ".snakemake" / "metadata").iterdir():
        path = base64.b64decode(record.name.replace("@", "/")).decode("utf-8", "replace")
        if path.startswith(prefix):
            data = json.loads(record.read_text())
            times.append(data["endtime"] - data["starttime"])
    return times


def configure(ws: Path) -> dict:
    """Point the workspace's config at tiny local models, so that rembg and the WD14 tagger run."""
    (ws / "models").mkdir(exist_ok=True)
    brightness_segmenter(ws / "models" / "segmenter.onnx")
    wd14_tagger(ws / "models" / "tagger")
    text = (ws / "config/config.yaml").read_text()
    text = re.sub(r"(?m)^  wd14: .*$", "  wd14: {folder: models/tagger}", text)
    text = re.sub(r"(?m)^  rembg: .*$", "  rembg: {model: models/segmenter.onnx, session: u2net_custom}", text)
    text = text.replace("\nstrict:", "\ningest:\n  min_side: 256   # the demo's photos\nstrict:")
    (ws / "config/config.yaml").write_text(text)
    return validate_config(yaml.safe_load(text), REPO / "config" / "schema.yaml")


def per_image_work(photos: list[Path], kept: list[Path], config: dict, scratch: Path) -> dict[str, float]:
    """Seconds per image of each per-image rule's work, in this process (imports already done)."""

    def mean_time(fn, paths):
        fn(paths[0])  # warm-up: first-use imports are part of a job's overhead, not its work
        t0 = time.perf_counter()
        for p in paths:
            fn(p)
        return (time.perf_counter() - t0) / len(paths)

    with chdir(scratch):  # the config's model paths are relative to the workspace
        return {
            "audit": mean_time(lambda p: audit_image(p, p.stem, config["ingest"]), photos),
            "ingest": mean_time(lambda p: decode_rgb(p, 100).image.save(scratch / "x.png", compress_level=4), photos),
            "mask": mean_time(lambda p: make_mask(p, None, config["masks"]), kept),
            "tag": mean_time(lambda p: tag_image(p, config["captions"]), kept),
        }


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
    config = configure(ws)
    smk = [sys.executable, "-m", "snakemake", "dataset", "--cores", "2", "--config", f"dataset={photos.parent}"]

    wall, scheduler_cpu, all_cpu = timed_run(smk, ws)
    jobs = {
        name: job_times(ws, prefix)
        for name, prefix in [
            ("audit", "results/dataset/audit/"),
            ("ingest", "results/dataset/images/"),
            ("mask", "results/dataset/masks/"),
            ("tag", "results/dataset/tags/"),
        ]
    }
    once = {
        name: job_times(ws, path)[0]
        for name, path in [
            ("dedup checkpoint", "results/dataset/dedup.tsv"),
            ("caption lint", "results/dataset/lint.tsv"),
            ("report", "results/dataset/report.html"),
        ]
    }
    work = per_image_work(
        sorted(photos.iterdir())[:20], sorted((ws / "results/dataset/images").iterdir())[:20], config, ws
    )
    dry = min(timed(smk + ["-n"], ws) for _ in range(3))
    version = min(timed([sys.executable, "-m", "snakemake", "--version"], ws) for _ in range(3))

    n, kept = args.images, len(jobs["ingest"])
    print(f"\nend to end, {n} photos ({kept} kept), --cores 2: {wall:.1f} s ({wall / n * 1000:.0f} ms per photo)")
    print("  dataset-wide jobs: " + ", ".join(f"{k} {v:.1f} s" for k, v in once.items()))
    print(f"  CPU: {all_cpu:.1f} s in all, of which Snakemake's own process {scheduler_cpu:.1f} s")
    print(f"{'per-image job':16} {'job (median)':>13} {'work in-process':>16} {'overhead':>9}")
    labels = {"mask": "mask (rembg)", "tag": "tag (WD14)"}
    for name, times in jobs.items():
        med = statistics.median(times)
        print(f"{labels.get(name, name):16} {med:12.2f}s {work[name]:15.2f}s {med - work[name]:8.2f}s")
    print(
        f"no-op dry run: {dry:.2f} s   (snakemake --version alone: {version:.2f} s; "
        f"workflow's own share: {dry - version:.2f} s)"
    )


if __name__ == "__main__":
    main()
