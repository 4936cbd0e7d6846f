"""A real one-node Slurm cluster on localhost, for the workflow test of profiles/slurm.

Debian's packages (apt-get install slurmctld slurmd slurm-client munge) and root: munged runs as
the munge user with the key the package wrote (or one written here), slurmctld and slurmd run in
the foreground as children of the test. Their slurm.conf (the node's real CPUs and memory, as
`slurmd -C` reads them; no accounting database, so job status comes from squeue) is written where
Slurm looks by default, /etc/slurm/slurm.conf: Snakemake's job step plugin clears every SLURM_
variable, SLURM_CONF too, before its `srun` inside a job. A slurm.conf that is not ours is never
replaced (the cluster is then unavailable); ours is removed afterwards, with the daemons and
munged if started here, each by its own pid. State and logs stay in the test's folder.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Iterator

DAEMONS = ("slurmctld", "slurmd", "munged")
CLIENTS = ("sbatch", "squeue", "sinfo", "scontrol", "scancel")
MUNGE_KEY, MUNGE_RUN = Path("/etc/munge/munge.key"), Path("/run/munge")
SLURM_CONF = Path("/etc/slurm/slurm.conf")
MARK = "# written by charlora's tests/slurm_cluster.py"


def _which(name: str) -> str | None:
    """A Slurm or munge program: on PATH, or in /usr/sbin (where the daemons are, off some PATHs)."""
    return shutil.which(name) or shutil.which(name, path="/usr/sbin")


def unavailable() -> str | None:
    """Why a cluster cannot be started here, or None."""
    if os.geteuid() != 0:
        return "a one-node Slurm cluster needs root (slurmd runs jobs as their user; munged as munge)"
    missing = [name for name in DAEMONS + CLIENTS if _which(name) is None]
    if missing:
        return (
            f"Slurm is not installed ({', '.join(missing)} missing): "
            "apt-get install slurmctld slurmd slurm-client munge"
        )
    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        return "Snakemake's Slurm executor is not installed: pip install -r envs/slurm.txt"
    if SLURM_CONF.exists() and not SLURM_CONF.read_text().startswith(MARK):
        return f"{SLURM_CONF} belongs to a real Slurm setup; the test cluster will not replace it"
    return None


def _node_line() -> str:
    """This machine as slurm.conf names it: `NodeName=... CPUs=... RealMemory=...` from slurmd -C."""
    out = subprocess.run([_which("slurmd"), "-C"], capture_output=True, text=True, check=True).stdout
    return next(line for line in out.splitlines() if line.startswith("NodeName="))


def _config(folder: Path, node: str) -> str:
    name = node.split()[0].split("=", 1)[1]
    return "\n".join(
        [
            MARK,
            "ClusterName=charlora-test",
            f"SlurmctldHost={name}",
            "SlurmUser=root",
            "AuthType=auth/munge",
            f"StateSaveLocation={folder}/state",
            f"SlurmdSpoolDir={folder}/spool",
            f"SlurmctldPidFile={folder}/slurmctld.pid",
            f"SlurmdPidFile={folder}/slurmd.pid",
            f"SlurmctldLogFile={folder}/slurmctld.log",
            f"SlurmdLogFile={folder}/slurmd.log",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core_Memory",
            "AccountingStorageType=accounting_storage/none",
            "JobAcctGatherType=jobacct_gather/none",
            "JobCompType=jobcomp/none",
            "MpiDefault=none",
            "SchedulerType=sched/backfill",
            "MinJobAge=600",
            "ReturnToService=2",
            f"{node} State=UNKNOWN",
            f"PartitionName=test Nodes={name} Default=YES MaxTime=INFINITE State=UP",
            "",
        ]
    )


@contextlib.contextmanager
def _munged() -> Iterator[None]:
    """munged, started as the munge user unless one already answers; stopped if started here."""
    if subprocess.run("munge -n | unmunge", shell=True, capture_output=True).returncode == 0:
        yield
        return
    if not MUNGE_KEY.exists():
        MUNGE_KEY.parent.mkdir(parents=True, exist_ok=True)
        MUNGE_KEY.write_bytes(os.urandom(1024))
        shutil.chown(MUNGE_KEY, "munge", "munge")
        MUNGE_KEY.chmod(0o400)
    MUNGE_RUN.mkdir(parents=True, exist_ok=True)
    shutil.chown(MUNGE_RUN, "munge", "munge")
    subprocess.run(["runuser", "-u", "munge", "--", _which("munged")], check=True)
    pid = int((MUNGE_RUN / "munged.pid").read_text())
    try:
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 15)


def _wait(what: str, ready, timeout: float, logs: list[Path]) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            tails = "\n".join(f"--- {p}\n{p.read_text()[-2000:]}" for p in logs if p.exists())
            raise RuntimeError(f"Slurm: {what} within {timeout:.0f} s\n{tails}")
        time.sleep(0.5)


@contextlib.contextmanager
def one_node_cluster(folder: Path) -> Iterator[dict[str, str]]:
    """Start munged (if needed), slurmctld and slurmd; yield the environment for Slurm's clients
    (SLURM_CONF); stop the daemons started here when done."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "state").mkdir(exist_ok=True)
    (folder / "spool").mkdir(exist_ok=True)
    SLURM_CONF.parent.mkdir(parents=True, exist_ok=True)
    SLURM_CONF.write_text(_config(folder, _node_line()))
    env = {**os.environ, "SLURM_CONF": str(SLURM_CONF)}
    logs = [folder / "slurmctld.log", folder / "slurmd.log"]
    with contextlib.ExitStack() as cleanup:  # stops, in reverse order, what was started
        cleanup.callback(SLURM_CONF.unlink, missing_ok=True)
        cleanup.enter_context(_munged())
        cleanup.callback(_stop, _start("slurmctld", env))
        _wait(
            "slurmctld did not answer",
            lambda: (
                subprocess.run(["scontrol", "ping"], env=env, capture_output=True, text=True).stdout.count("UP") > 0
            ),
            60,
            logs,
        )
        cleanup.callback(_stop, _start("slurmd", env))
        _wait(
            "the node did not come up idle",
            lambda: (
                subprocess.run(["sinfo", "-h", "-o", "%T"], env=env, capture_output=True, text=True).stdout.strip()
                == "idle"
            ),
            60,
            logs,
        )
        yield env


def _start(daemon: str, env: dict[str, str]) -> subprocess.Popen:
    """A Slurm daemon in the foreground (-D), as a child of this process; slurmctld with a clear state."""
    clear = ["-c"] if daemon == "slurmctld" else []
    return subprocess.Popen(
        [_which(daemon), "-D", *clear, "-f", str(SLURM_CONF)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
