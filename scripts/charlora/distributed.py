"""Training on several processes of one node (DDP): which processes, how they start, what they share.

`train.gpus: N` trains on N processes, one per GPU (NCCL), or, with `train.device: cpu`, on N CPU
processes (gloo: how the tests show that N processes give the weights of one process accumulating N
batches). `launch` starts them the way torchrun does, with torch's elastic agent in this process
(rendezvous on a free local port, every worker stopped when one fails). Each worker is
`python -c ... <job file>` running `worker_main`, not a fork or spawn of the rule script: spawn would
run the Snakemake script again in every worker, and fork after torch started threads can hang.
Rank 0's return value comes back to the caller; a worker's exception is raised again here as itself.
"""

from __future__ import annotations

import datetime
import logging
import os
import pickle
import sys
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

TIMEOUT = datetime.timedelta(minutes=30)  # the longest one process waits for the others (rank 0 encodes the cache)


@dataclass(frozen=True)
class World:
    """This process among the training processes: rank 0 of 1 when training alone."""

    rank: int
    size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """The process that logs, shows progress and writes files."""
        return self.rank == 0

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The element-wise sum over all processes, in place (on the CPU: small tables, not weights)."""
        if self.size > 1:
            on_device = tensor.to(self.device)
            dist.all_reduce(on_device)
            tensor.copy_(on_device.cpu())
        return tensor

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier()


def process_count(gpus: int | str, device: torch.device) -> int:
    """How many training processes `train.gpus` asks for on `device` ('all': every GPU the job sees)."""
    if device.type != "cuda":
        return 1 if gpus == "all" else gpus
    visible = torch.cuda.device_count()
    if gpus == "all":
        return max(1, visible)  # (none: the one process reports that CUDA has no device)
    if gpus > 1 and device.index is not None:
        raise ValueError(
            f"train.device: {device} names one GPU, but train.gpus: {gpus} asks for {gpus}; "
            "use device: auto or cuda, and CUDA_VISIBLE_DEVICES to choose the GPUs"
        )
    if gpus > visible:
        raise ValueError(
            f"train.gpus: {gpus}, but this job sees {visible} GPU(s) (CUDA_VISIBLE_DEVICES="
            f"{os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}); lower train.gpus, or on Slurm "
            "check that the job got them (its resources show gpu)"
        )
    return gpus


def launch(processes: int, device_type: str, function, kwargs: dict):
    """Run `function(world=World(...), **kwargs)` in `processes` worker processes; rank 0's result."""
    from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    log_files = [h.baseFilename for h in logging.getLogger("charlora").handlers if isinstance(h, logging.FileHandler)]
    with tempfile.TemporaryDirectory(prefix="charlora-ddp-") as tmp:
        job = Path(tmp) / "job.pickle"
        job.write_bytes(
            pickle.dumps(
                {
                    "function": function,
                    "kwargs": kwargs,
                    "device_type": device_type,
                    "log_file": log_files[0] if log_files else None,
                    "threads": max(1, torch.get_num_threads() // processes),
                }
            )
        )
        config = LaunchConfig(
            min_nodes=1,
            max_nodes=1,
            nproc_per_node=processes,
            run_id=uuid.uuid4().hex,
            rdzv_backend="c10d",
            rdzv_endpoint="localhost:0",
            max_restarts=0,
            monitor_interval=0.5,
            logs_specs=DefaultLogsSpecs(log_dir=str(Path(tmp) / "elastic")),
        )
        scripts = str(Path(__file__).resolve().parent.parent)  # the folder that holds charlora/
        start = (
            "import sys; sys.path.insert(0, sys.argv[1]); from charlora.distributed import worker_main; "
            "worker_main(sys.argv[2])"
        )
        try:
            elastic_launch(config, sys.executable)("-c", start, scripts, str(job))
        except ChildFailedError:
            for rank in range(processes):  # the workers' own exception, from the lowest rank that failed
                error = job.with_suffix(f".error{rank}")
                if error.is_file():
                    raise pickle.loads(error.read_bytes()) from None
            raise
        return pickle.loads(job.with_suffix(".result").read_bytes())


def worker_main(job_file: str) -> None:
    """One training process, started by `launch`: join the others, run the function, hand back its result."""
    from charlora import logs

    job = Path(job_file)
    task = pickle.loads(job.read_bytes())
    rank, size, local_rank = (int(os.environ[k]) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
    logs.setup(task["log_file"] if rank == 0 else None, append=True)
    torch.set_num_threads(task["threads"])  # the job's threads (Snakemake's `threads:`) shared out
    if task["device_type"] == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", timeout=TIMEOUT, device_id=device)
    else:
        device = torch.device("cpu")
        dist.init_process_group("gloo", timeout=TIMEOUT)
    try:
        result = task["function"](world=World(rank, size, device), **task["kwargs"])
        if rank == 0:
            job.with_suffix(".result").write_bytes(pickle.dumps(result))
    except BaseException as exc:
        try:
            error = pickle.dumps(exc)
        except Exception:  # an exception that does not pickle comes back as its message
            error = pickle.dumps(RuntimeError(f"{type(exc).__name__}: {exc}"))
        job.with_suffix(f".error{rank}").write_bytes(error)
        raise
    finally:
        dist.destroy_process_group()
