"""What Snakemake's start costs at 200 photos, and how much of it is charlora's own code.

On a cluster every job (also each job inside a group job) starts Snakemake again on its node, which
parses the Snakefile and builds the DAG for that one job before running it. Prints, side by side:
  - `snakemake --version`: Snakemake's own start (imports, plugins);
  - a no-op dry run of `snakemake dataset` on the finished dataset stage;
  - what a node runs per job (`--target-jobs mask:id=... --allowed-rules mask --force`), dry;
  - under cProfile, the share of that per-job start spent in our code (the Snakefile and rules/
    executed, the charlora modules they import, the input functions), scaled to the unprofiled wall.

    .venv/bin/python benchmarks/parse_time.py [--workspace DIR/ws]
"""

import argparse
import pstats
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import dataset_stage  # noqa: E402


def own_share(cmd_args: list[str], cwd: Path) -> tuple[float, float]:
    """(seconds in our code, seconds in all) of one profiled run of snakemake with `cmd_args`."""
    profile = Path(tempfile.mkdtemp()) / "start.prof"
    subprocess.run(
        [sys.executable, "-m", "cProfile", "-o", str(profile), "-m", "snakemake", *cmd_args],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=True,
    )
    stats = pstats.Stats(str(profile)).stats
    total = max(cumulative for (_, _, _, cumulative, _) in stats.values())
    ours = 0.0
    for (filename, _, function), (_, _, _, cumulative, callers) in stats.items():
        if str(cwd) not in filename:
            continue
        if function == "<module>":
            # the Snakefile's execution holds the rules/ files it includes and the modules they import
            ours += cumulative if Path(filename).name == "Snakefile" else 0.0
        elif not any(str(cwd) in caller[0] for caller in callers):
            ours += cumulative  # an input function or the like, called by Snakemake while building the DAG
    return ours, total


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--workspace",
        type=Path,
        help="a workspace of benchmarks/dataset_stage.py --keep DIR "
        "(DIR/ws), where the dataset stage ran on DIR/photos",
    )
    args = parser.parse_args()
    ws = args.workspace.resolve() if args.workspace else Path(tempfile.mkdtemp(prefix="charlora-parse-")) / "ws"
    config = ["--config", f"dataset={ws.parent / 'photos'}"]
    smk = [sys.executable, "-m", "snakemake"]
    if args.workspace is None:
        dataset_stage.generate(ws.parent / "photos" / "images", 200)
        dataset_stage.make_workspace(ws)
        dataset_stage.configure(ws)
        dataset_stage.timed(smk + ["dataset", "--cores", "2", *config], ws)
    photos = sorted((ws / "results" / "dataset" / "images").iterdir())
    per_job = [
        "--target-jobs",
        f"mask:id={photos[0].stem}",
        "--allowed-rules",
        "mask",
        "--cores",
        "all",
        "--force",
        "-n",
        *config,
    ]
    version, noop, job = (
        min(dataset_stage.timed(smk + cmd, ws) for _ in range(3))
        for cmd in (["--version"], ["dataset", "-n", "--cores", "2", *config], per_job)
    )
    ours, total = own_share(per_job, ws)
    print(f"{len(photos)} kept photos")
    print(f"snakemake --version:               {version:.2f} s")
    print(f"no-op dry run (snakemake dataset): {noop:.2f} s")
    print(
        f"one job's start on a node (dry):   {job:.2f} s; our code {ours / total:.0%} of it under cProfile "
        f"({ours:.2f} of {total:.2f} s profiled), about {job * ours / total:.2f} s unprofiled"
    )


if __name__ == "__main__":
    main()
