"""Run the real workflow in a scratch copy of the project, as a user would, and read what it did."""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
WORKFLOW_FILES = ["Snakefile", "rules", "scripts", "config", "profiles", "envs"]


def make_workspace(path: Path, shipped_demo: bool = False) -> Path:
    """A fresh checkout-like folder with the workflow and the shipped config, no results. Its demo runs
    the random tiny model briefly (tests/demo_tiny.yaml merged over config/demo.yaml) unless
    `shipped_demo`: the demo as a user runs it, on the miniature base (minutes, not seconds)."""
    path.mkdir(parents=True, exist_ok=True)
    for name in WORKFLOW_FILES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, path / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, path / name)
    if not shipped_demo:
        use_tiny_demo(path)
    return path


def use_tiny_demo(workspace: Path) -> None:
    """Write the workspace's config/demo.yaml as the shipped one with tests/demo_tiny.yaml over it."""
    from snakemake.utils import update_config

    demo = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
    update_config(demo, yaml.safe_load((REPO / "tests" / "demo_tiny.yaml").read_text()))
    (workspace / "config" / "demo.yaml").write_text(yaml.safe_dump(demo, sort_keys=False))


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run snakemake in `workdir`; its whole output (stdout and stderr) is in `.stdout`."""
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", *args]
    result = subprocess.run(cmd, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout[-6000:]}")
    return result


_JOB = re.compile(r"^(?:local)?(?:rule|checkpoint) (\S+):$")
_WILDCARDS = re.compile(r"^\s+wildcards: (.*)$")


def jobs_run(output: str) -> set[tuple[str, str]]:
    """(rule, wildcards) of every job Snakemake started, read from its log output. A job's block
    is its rule line and the indented lines below it, where a path holding a newline (an odd file
    name) continues on unindented lines: the block's first wildcards line belongs to it."""
    jobs, current = set(), None
    for line in output.splitlines():
        if match := _JOB.match(line):
            current = [match.group(1), ""]
            jobs.add(tuple(current))
        elif current and not current[1] and (match := _WILDCARDS.match(line)):
            jobs.discard(tuple(current))
            current[1] = match.group(1)
            jobs.add(tuple(current))
        elif line.startswith(("[", "Error in rule")):  # a time stamp: the block has ended
            current = None
    return jobs


def snapshot(folder: Path) -> dict[str, str]:
    """Every file below `folder` with the SHA-256 of its bytes."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def copy_workspace(src: Path, dst: Path) -> Path:
    """A copy of a workspace with its results and Snakemake's records (times kept: nothing reruns)."""
    shutil.copytree(src, dst, symlinks=True)
    return dst
