"""The demo on the miniature base (docs/miniature.md): does the fine-tune learn mira's trait, her hair
colour (demo.MIRA.hair), which the base never drew, and which epoch does the selection pick?
First it prints how much of the hair the base's VAE gives back at all (miniature.trait_through_vae).

Runs the shipped demo (config/demo.yaml) in a scratch workspace, with the settings of --override (a
config file such as config/demo-overtrain.yaml) applied over it, then prints, for every sampled epoch:
the share of samples of a "mira" prompt that show her hair (pixel_probe.trait_share of the head's place
at or above --trait-share), the pixel probe's adherence, the scorecard's levels, and the selected epoch;
then the hair's count by seed and by framing. --seeds validates at more seeds than the demo's two (the
scorecard and the selection then read them all): one seed's colour cast can carry a two-seed figure.

    .venv/bin/python benchmarks/miniature_demo.py [--override FILE] [--seeds N] [--keep DIR]
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(REPO / "tests"))

from charlora import miniature, plan, sample_metrics, scorecard, sdxl  # noqa: E402
from workflow import make_workspace  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--override", type=Path, help="a config file applied over config/demo.yaml")
    parser.add_argument(
        "--trait-share", type=float, default=sample_metrics.TRAIT_SHOWN, help="share of the head that counts as shown"
    )
    parser.add_argument("--seeds", type=int, help="validation seeds per prompt (the demo's: 2)")
    parser.add_argument("--keep", type=Path, help="run in this folder and keep it")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="charlora-miniature-demo-"))
    workspace = make_workspace(root, shipped_demo=True)
    configfiles = [str(args.override.resolve())] if args.override else []
    if args.seeds:
        seeds = workspace / "config" / "benchmark-seeds.yaml"
        seeds.write_text(f"validate:\n  seeds: {args.seeds}\n")
        configfiles.append(str(seeds))
    # one --configfile with every file: a second --configfile would replace the first, not add to it
    command = [sys.executable, "-m", "snakemake", "--cores", "2"] + (
        ["--configfile", *configfiles] if configfiles else []
    )
    started = time.perf_counter()
    done = subprocess.run(command, cwd=workspace, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wall = time.perf_counter() - started
    if done.returncode:
        sys.exit(f"{' '.join(command)} failed:\n{done.stdout[-4000:]}")
    run = next(p for p in sorted((workspace / "results" / "runs").iterdir()) if p.is_dir())
    validate = workspace / plan.validate_dir(run.name, workspace / "results" / "runs")
    selected = json.loads((validate / "selected.json").read_text())
    levels = {row.epoch: row.levels for row in scorecard.read_scorecard(validate / "scorecard.tsv")}
    print(f"demo on the miniature base, run {run.name}: {wall:.0f} s on 2 cores ({root})")
    vae = sdxl.load_vae(workspace / "results" / "models" / "miniature.safetensors").eval()
    through = miniature.trait_through_vae(vae, "cpu")
    print(
        f"mira's hair, share of the figure: {through['photos']:.1%} in her photos, {through['reconstructed']:.1%} "
        "through the base's VAE (what the fine-tune is taught to draw)"
    )
    print("epoch  mira's hair shown  adherence (pixel probe)  samples  scorecard")
    readings = miniature.trait_by_epoch(validate, "mira", args.trait_share)
    for epoch, reading in readings.items():
        adherence = "n/a" if reading.adherence is None else f"{reading.adherence:.0%}"
        print(
            f"{epoch:5d}  {reading.shown:17.0%}  {adherence:>23}  {reading.samples:7d}  "
            + ", ".join(f"{k} {v}" for k, v in levels.get(epoch, {}).items())
        )
    print("epoch  hair shown by seed; by framing (samples showing it / samples)")
    for epoch, reading in readings.items():
        seeds = ", ".join(f"seed {seed} {k}/{n}" for seed, (k, n) in reading.by_seed.items())
        framings = ", ".join(f"{framing} {k}/{n}" for framing, (k, n) in reading.by_framing.items())
        print(f"{epoch:5d}  {seeds}; {framings}")
    print(f"selected epoch: {selected['epoch']}: " + "; ".join(selected["reasons"]))


if __name__ == "__main__":
    main()
