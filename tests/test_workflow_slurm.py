"""profiles/slurm on a real one-node Slurm cluster (tests/slurm_cluster.py): the demo's dataset stage
and its first training block go through sbatch, grouped as the profile says, and what they write
equals the local run's files byte for byte. Skipped, with the reason, where the cluster cannot be
started (not root, Slurm or Snakemake's Slurm executor not installed); CI installs both."""

import os
import re
import subprocess
import sys

import pytest

from slurm_cluster import one_node_cluster, unavailable
from workflow import make_workspace, snapshot

WHY_NOT = unavailable()

# Dataset-wide files and per-photo files; logs, the HTML report and its chart are left out (they
# hold times and paths by nature).
COMPARED = ["dedup.tsv", "split.tsv", "lint.tsv", "pruned.tsv", "audit", "images", "masks", "tags", "captions"]


@pytest.mark.skipif(WHY_NOT is not None, reason=f"no Slurm cluster here: {WHY_NOT}")
def test_the_dataset_stage_and_a_training_block_through_slurm_equal_the_local_run(trained, tmp_path):
    local, _ = trained
    ws = make_workspace(tmp_path / "ws")
    with one_node_cluster(tmp_path / "cluster") as env:
        # Group jobs and threads are held to the node's CPUs (the profile asks for 4; CI has 2).
        # No accounting database here, so the executor follows jobs with squeue, every few seconds.
        cpus = str(len(os.sched_getaffinity(0)))
        cmd = [
            sys.executable,
            "-m",
            "snakemake",
            "--profile",
            "profiles/slurm",
            "--cores",
            cpus,
            "--max-threads",
            cpus,
            "--slurm-status-command",
            "squeue",
            "--slurm-init-seconds-before-status-checks",
            "2",
            "--slurm-keep-successful-logs",
            "dataset",
            "train_epochs_001_002",
        ]
        run = subprocess.run(cmd, cwd=ws, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert run.returncode == 0, run.stdout[-6000:]

    # Every job but the local rules went through Slurm, the per-photo jobs in groups.
    submitted = dict(re.findall(r"Job (\S+) has been submitted with SLURM jobid (\d+)", run.stdout))
    logs = {p.parent.name for p in (ws / ".snakemake" / "slurm_logs").rglob("*.log")}
    assert {
        "rule_demo_dataset",
        "group_audit_audit",
        "rule_dedup",
        "group_photo_caption_ingest_mask_tag",
        "rule_dataset_report",
        "rule_train_epochs_001_002",
    } <= logs, logs
    assert len(submitted) == len(list((ws / ".snakemake" / "slurm_logs").rglob("*.log")))
    assert not any(name.startswith("rule_audit") or name.startswith("rule_mask") for name in logs)
    for rule in ("split", "prune_dataset", "caption_lint"):
        assert f"localrule {rule}:" in run.stdout and f"rule_{rule}" not in logs

    # Byte for byte what the local run wrote.
    for name in COMPARED:
        here, there = ws / "results" / "dataset" / name, local / "results" / "dataset" / name
        assert (snapshot(here) if here.is_dir() else here.read_bytes()) == (
            snapshot(there) if there.is_dir() else there.read_bytes()
        ), name
    train = [
        p.relative_to(ws)
        for p in (ws / "results" / "runs").glob("*/train/*")
        if p.suffix == ".safetensors" or p.name.endswith(".metrics.tsv")
    ]
    assert len([p for p in train if p.suffix == ".safetensors"]) >= 1, train
    for path in train:
        assert (ws / path).read_bytes() == (local / path).read_bytes(), path
