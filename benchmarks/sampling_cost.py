"""Benchmark: what one epoch's validation samples cost on the CPU with the tiny model, the parent commit's
sampler (every job encodes every prompt, one image per pipeline call) against this checkout's (the
prompts encoded once per run, `validate.batch` images per call), side by side in one run; and whether
a batch changes pixels.

Each design runs as its own process per epoch job, as Snakemake runs them: the figures are the job's
wall time (imports and model loads included) and the sampling loop's seconds per image. This checkout
also pays once per run for the embeddings file, shown apart.

    .venv/bin/python benchmarks/sampling_cost.py [--prompts 8] [--seeds 2] [--steps 8] [--resolution 128]
        [--batches 1,4,16] [--parent REV] [--keep DIR]
"""

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]

JOB = """
import json, sys, time
from pathlib import Path
sys.path.insert(0, {scripts!r})
started = time.perf_counter()
from charlora import sample
args = json.loads({args!r})
prompts = [sample.Prompt(f"p{{i:02d}}", "extra", text) for i, text in enumerate(args["texts"], 1)]
settings = sample.Settings(**args["settings"])
out = Path(args["out"])
if args["embeddings"] is None:  # the parent's sampler: it encodes the prompts itself
    sample.sample_epoch(Path(args["model"]), None, prompts, settings, out, "bench", progress=False)
elif args["encode"]:
    sample.write_embeddings(Path(args["model"]), prompts, settings.negative_prompt, Path(args["embeddings"]))
else:
    sample.sample_epoch(Path(args["model"]), None, prompts, Path(args["embeddings"]), settings, out, "bench",
                        progress=False)
print(json.dumps({{"seconds": time.perf_counter() - started}}))
"""

TEXTS = [
    "mira",
    "mira, smiling, close-up",
    "mira, red dress, standing, park",
    "mira, full body, night, street",
    "a photo of mira, sitting, studio",
    "mira, upper body, laughing, beach",
    "mira, from side, hat, snow",
    "mira, looking at viewer, indoors",
]


def run_job(scripts: Path, args: dict) -> float:
    code = JOB.format(scripts=str(scripts), args=json.dumps(args))
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    if result.returncode:
        sys.exit(f"job failed:\n{result.stderr[-3000:]}")
    return time.perf_counter() - started


def per_embeddings_commit() -> str:
    """The last commit whose sampler encodes the prompts itself (before write_embeddings)."""
    found = subprocess.run(
        [
            "git",
            "-C",
            str(REPO),
            "log",
            "-S",
            "def write_embeddings",
            "--format=%H",
            "--",
            "scripts/charlora/sample.py",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return f"{found[-1]}~1" if found else "HEAD"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--batches", default="1,4,16")
    parser.add_argument("--parent", help="the commit whose sampler encodes every prompt in every job")
    parser.add_argument("--keep", type=Path, help="keep the model, samples and worktree here")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO / "scripts"))
    from charlora import sdxl

    root = args.keep or Path(tempfile.mkdtemp(prefix="charlora-sampling-"))
    root.mkdir(parents=True, exist_ok=True)
    model = root / "tiny.safetensors"
    if not model.exists():
        sdxl.write_tiny(model, seed=0)
    worktree = root / "parent"
    if not worktree.exists():
        parent = args.parent or per_embeddings_commit()
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(worktree), parent], check=True)
    texts = (TEXTS * (args.prompts // len(TEXTS) + 1))[: args.prompts]
    settings = dict(
        sampler="euler",
        steps=args.steps,
        cfg=5.0,
        negative_prompt="",
        resolution=args.resolution,
        seeds=args.seeds,
        device="cpu",
    )
    images = args.prompts * args.seeds
    print(
        f"one epoch: {args.prompts} prompts x {args.seeds} seeds, {args.steps} steps at {args.resolution} px",
        flush=True,
    )
    common = dict(model=str(model), texts=texts)
    out = root / "parent-samples"
    shutil.rmtree(out, ignore_errors=True)
    job = run_job(worktree / "scripts", {**common, "settings": settings, "out": str(out), "embeddings": None})
    print(
        f"parent (encodes in every job, 1 image a call): {job:6.1f} s a job, {job / images:.3f} s an image", flush=True
    )
    embeddings = root / "prompts.safetensors"
    encode = run_job(
        REPO / "scripts", {**common, "settings": settings, "out": "", "embeddings": str(embeddings), "encode": True}
    )
    print(f"this: the prompts encoded once per run in {encode:.1f} s", flush=True)
    samples = {}
    for batch in [int(b) for b in args.batches.split(",")]:
        out = root / f"batch-{batch}"
        shutil.rmtree(out, ignore_errors=True)
        job_args = {**common, "settings": {**settings, "batch": batch}, "out": str(out), "embeddings": str(embeddings)}
        seconds = run_job(REPO / "scripts", {**job_args, "encode": False})
        samples[batch] = out
        print(
            f"this, batch {batch:2d}: {seconds:6.1f} s a job, {seconds / images:.3f} s an image "
            f"({job / seconds:.2f}x the parent)",
            flush=True,
        )
    first = min(samples)
    names = sorted(p.name for p in samples[first].glob("*.png"))
    same_as_parent = all((root / "parent-samples" / n).read_bytes() == (samples[first] / n).read_bytes() for n in names)
    print(f"batch {first} byte-identical to the parent's samples: {same_as_parent}")
    for batch, folder in samples.items():
        if batch == first:
            continue
        diffs = [
            np.abs(np.asarray(Image.open(samples[first] / n), int) - np.asarray(Image.open(folder / n), int)).max()
            for n in names
        ]
        identical = sum((samples[first] / n).read_bytes() == (folder / n).read_bytes() for n in names)
        print(
            f"batch {batch} against batch {first}: {identical} of {len(names)} images byte-identical, "
            f"largest pixel difference {max(diffs)} of 255"
        )
    if not args.keep:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(worktree)], check=False)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
