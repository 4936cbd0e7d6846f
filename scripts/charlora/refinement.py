"""Which saved epochs the validation samples beyond the coarse pass (every `validate.every`-th).
Light imports only: rules/common.smk reads the checkpoint's table with `read_table`.

The selection (selection.py) starts at the one minimum of the validation loss (loss_trend.minimum:
the same smoothing, noise and plateau rule; the knee of the training loss when the curve is flat),
ranks the sampled epochs within 4 of it, then steps 2-4 epochs back or ahead on what the samples
show. So once the losses are known, the saved epochs within 8 of that start that the coarse pass
skipped are sampled too: every candidate, and one full step beyond the farthest. Cost: at most 16
epochs more (8 with the default validate.every 2, none with 1), each `prompts x seeds` samples.
Further steps, where the samples call for them, are named in selected.json's `to_sample`.
"""

from __future__ import annotations

import csv
import statistics
from dataclasses import dataclass
from pathlib import Path

from charlora import atomic, loss_trend, selection

REACH = 2 * selection.REACH  # a candidate's distance from the start plus one step


@dataclass(frozen=True)
class EpochLosses:
    train: dict[int, float]  # each epoch's mean training loss
    train_smoothed: dict[int, float]  # TensorBoard's smoothing (0.999) at each epoch's last step
    val: dict[int, float]  # each epoch's mean validation loss
    val_per_timestep: dict[int, dict[str, float]]


def epoch_losses(metrics: dict[int, Path]) -> EpochLosses:
    """The losses of each epoch, from the epochs' metrics.tsv files."""
    from charlora.validate_plots import read_losses, smoothed

    losses, last_step, train, val_per_timestep = [], {}, {}, {}
    for epoch in sorted(metrics):  # one epoch at a time, to know where each ends
        epoch_steps, val = read_losses({epoch: metrics[epoch]})
        if epoch_steps:
            train[epoch] = statistics.fmean(loss for _, loss in epoch_steps)
        losses += [loss for _, loss in epoch_steps]
        last_step[epoch] = len(losses) - 1
        val_per_timestep.update(val)
    curve = smoothed(losses)
    return EpochLosses(
        train,
        {e: curve[i] for e, i in last_step.items() if i >= 0},
        {e: v["mean"] for e, v in val_per_timestep.items() if "mean" in v},
        val_per_timestep,
    )


@dataclass(frozen=True)
class Refinement:
    start: int | None  # the selection's start (None: the rows alone decide)
    why: str  # how the start was found
    epochs: list[int]  # saved, not sampled by the coarse pass, within REACH of the start


def refine(saved: list[int], sampled: list[int], train: dict[int, float], val: dict[int, float]) -> Refinement:
    minimum = loss_trend.minimum(val, train)
    start = minimum.start
    epochs = [e for e in saved if e not in sampled and start is not None and abs(e - start) <= REACH]
    return Refinement(start, minimum.why, epochs)


COLUMNS = ["epoch", "why"]


def write_table(path: Path, refinement: Refinement) -> None:
    """refine.tsv: the extra epochs to sample and why."""
    rows = []
    for e in refinement.epochs:
        distance = abs(e - refinement.start)
        role = "a candidate of the selection" if distance <= selection.REACH else "one step beyond the candidates"
        rows.append((e, f"{distance} from the selection's start, epoch {refinement.start}: {role}"))
    atomic.write_tsv(path, COLUMNS, rows)


def read_table(path: Path) -> list[int]:
    with open(path, newline="", encoding="utf-8") as f:
        return [int(row["epoch"]) for row in csv.DictReader(f, delimiter="\t")]
