"""Pretrain the miniature base: the demo's small SDXL-layout model, taught to draw the miniature world's
people (miniature.py) on the CPU. Not part of the workflow: run it by hand; it takes up to 2 hours
on 2 cores with the defaults.

    .venv/bin/python tools/pretrain_miniature.py --out results/miniature [--pictures 6000 ...]

With --continue-from a miniature.safetensors, the VAE and the text encoders of that file are kept and
its UNet trains --unet-steps more steps on a world drawn with --seed (the VAE options are unused):

    .venv/bin/python tools/pretrain_miniature.py --continue-from config/models/miniature/miniature.safetensors \
        --out results/miniature-continued --seed 1 --pictures 2000 --unet-steps 800 --noise-offset 0.3 ...

Writes into --out: miniature.safetensors (UNet and VAE, fp16, single-file layout; its metadata holds
the settings, the VAE's scaling factor and the torch version), losses.json, and samples of the base
(one per probe prompt and seed) with what pixel_probe read from each, and the figures (probe.json).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from charlora import logs, miniature  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "results" / "miniature")
    for field in dataclasses.fields(miniature.Settings):
        parser.add_argument(f"--{field.name.replace('_', '-')}", type=type(field.default), default=field.default)
    parser.add_argument("--continue-from", type=Path, help="a miniature.safetensors whose UNet trains on")
    parser.add_argument("--probe-seeds", type=int, default=4, help="samples per probe prompt")
    parser.add_argument("--probe-at", default="", help="UNet steps to probe at on the way (comma-separated)")
    args = parser.parse_args()
    probe_at = [int(step) for step in args.probe_at.split(",") if step]
    settings = miniature.Settings(**{f.name: getattr(args, f.name) for f in dataclasses.fields(miniature.Settings)})
    args.out.mkdir(parents=True, exist_ok=True)
    log = logs.setup(str(args.out / "pretrain.log"))
    log.info("settings: %s", json.dumps(dataclasses.asdict(settings)))
    started = time.perf_counter()
    result = miniature.pretrain(
        settings,
        args.out,
        progress=tqdm,
        probe_seeds=args.probe_seeds,
        probe_at=probe_at,
        continue_from=args.continue_from,
    )
    log.info("done in %.0f s: %s", time.perf_counter() - started, json.dumps(result, indent=1))


if __name__ == "__main__":
    torch.set_num_threads(2)
    main()
