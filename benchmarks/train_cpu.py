"""Training on the CPU with the tiny model: steps/s, the fused step's weights against the usual
step's, and what chaining costs (one Snakemake job per epoch against one job for all).

    python benchmarks/train_cpu.py                 # all three parts, about 15 minutes on 2 cores
    python benchmarks/train_cpu.py --part chain    # one part: rates, fused or chain
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(REPO / "tests"))

import torch  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

import badfiles  # noqa: E402
from charlora import sdxl  # noqa: E402
from charlora.train import Sample, Settings, train_block  # noqa: E402
from workflow import make_workspace, snakemake  # noqa: E402


def samples(folder: Path, count: int = 8) -> list[Sample]:
    out = []
    for i in range(count):
        badfiles.photo(384, 512, seed=i).save(folder / f"p{i}.png")
        out.append(Sample(f"p{i}", folder / f"p{i}.png", f"mira, photo {i}"))
    return out


def block(tmp: Path, name: str, data, epochs: int = 1, **settings) -> tuple[Path, float]:
    settings = Settings.from_schema(**(dict(precision="fp32", device="cpu", lr=1e-4, val_timesteps=1) | settings))
    results = train_block(
        base_model=tmp / "tiny.safetensors",
        model_hash="tiny",
        samples=data,
        val_ids=[data[-1].id],
        settings=settings,
        first=1,
        last=epochs,
        out_dir=tmp / name,
        previous_state=None,
        cache_dir=tmp / "cache",
        progress=False,
    )
    steps = sum(len(r.steps) for r in results)
    return tmp / name / f"epoch-{epochs:03d}.safetensors", steps / sum(r.seconds for r in results)


def same(a: Path, b: Path) -> bool:
    x, y = load_file(str(a)), load_file(str(b))
    return all(torch.equal(x[k], y[k]) for k in x)


def rates(tmp: Path, data: list[Sample]) -> None:
    print(f"tiny SDXL-topology UNet (24 M parameters), batch 2, Adafactor, CPU ({torch.get_num_threads()} threads)")
    print(f"{'set-up':48} {'steps/s':>8} {'s/step':>7}")
    # fp32 only: bf16 matmuls on CPUs without AMX are slower than fp32, which says nothing of a GPU
    for resolution in (64, 128):
        for checkpointing in (False, True):
            _, rate = block(
                tmp,
                f"r{resolution}{checkpointing}",
                data,
                epochs=2,
                resolution=resolution,
                bucket_step=32,
                precision="fp32",
                gradient_checkpointing=checkpointing,
            )
            label = f"{resolution} px, fp32, checkpointing {'on' if checkpointing else 'off'}"
            print(f"{label:48} {rate:8.2f} {1 / rate:7.2f}", flush=True)


def fused_against_plain(tmp: Path, data: list[Sample]) -> None:
    print("\nfused backward against the usual step, 2 epochs at 64 px (weights compared bit for bit):")
    for precision in ("fp32", "bf16"):
        fused, _ = block(
            tmp,
            f"fused{precision}",
            data,
            epochs=2,
            resolution=64,
            bucket_step=32,
            precision=precision,
            fused_backward=True,
        )
        plain, _ = block(
            tmp,
            f"plain{precision}",
            data,
            epochs=2,
            resolution=64,
            bucket_step=32,
            precision=precision,
            fused_backward=False,
        )
        print(f"  {precision}: identical weights: {same(fused, plain)}", flush=True)


def chain() -> None:
    print("\nchained jobs against one job: the demo, 4 epochs, through Snakemake")
    with tempfile.TemporaryDirectory() as tmp:
        ws = make_workspace(Path(tmp) / "ws")
        snakemake(ws, "dataset")
        snakemake(ws, "results/models/base_model.sha256")
        times = {}
        for per_job in (4, 1):
            shutil.rmtree(ws / "results/cache", ignore_errors=True)  # both runs encode their latents
            (ws / "c.yaml").write_text(f"run: per{per_job}\ntrain:\n  epochs: 4\n  epochs_per_job: {per_job}\n")
            start = time.perf_counter()
            snakemake(ws, "--configfile", "c.yaml")
            times[per_job] = time.perf_counter() - start
        same_weights = same(
            ws / "results/runs/per4/train/epoch-004.safetensors", ws / "results/runs/per1/train/epoch-004.safetensors"
        )
        print(
            f"  one job of 4 epochs: {times[4]:.1f} s; 4 jobs of 1 epoch: {times[1]:.1f} s; "
            f"overhead per extra job: {(times[1] - times[4]) / 3:.1f} s; identical weights: {same_weights}"
        )
        shutil.rmtree(ws / "results")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=("all", "rates", "fused", "chain"), default="all")
    part = parser.parse_args().part
    if part in ("all", "rates", "fused"):
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            sdxl.write_tiny(tmp / "tiny.safetensors")
            data = samples(tmp)
            if part in ("all", "rates"):
                rates(tmp, data)
            if part in ("all", "fused"):
                fused_against_plain(tmp, data)
    if part in ("all", "chain"):
        chain()


if __name__ == "__main__":
    main()
