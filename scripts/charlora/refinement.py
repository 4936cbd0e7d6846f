"""Which saved epochs the validation samples beyond the coarse pass (every `validate.every`-th).
Light imports only: rules/common.smk reads the checkpoint's table with `read_table`.

The guide's selection starts at the epoch with the lowest validation loss and weighs the knee of the
smoothed training loss (where it stops falling fast); from there it advances or rolls back 2-4
epochs on what the samples show. So once the losses are known, the saved epochs within 4 epochs of
either point that the coarse pass skipped are sampled too: the comparison sheet then holds every
epoch the selection can land on.

The knee: the epoch whose smoothed training loss (TensorBoard's smoothing, at the epoch's last step)
lies furthest below the straight line from the first epoch's to the last epoch's, the "maximum
distance to the chord" form of Kneedle (Satopää et al. 2011). A curve with no bend (a straight or
rising line) has no knee.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

from charlora import atomic

STEPS_AROUND = 4       # the guide's advance / roll back: 2-4 epochs


@dataclass(frozen=True)
class Refinement:
    lowest_val: int | None    # the epoch of the lowest mean validation loss
    knee: int | None          # the knee of the smoothed training loss
    epochs: list[int]         # saved, not sampled by the coarse pass, within STEPS_AROUND of either


def epoch_losses(metrics: dict[int, Path]) -> tuple[dict[int, float], dict[int, float]]:
    """Per epoch: the smoothed training loss at its last step, and the mean validation loss."""
    from charlora.validate_plots import read_losses, smoothed

    train_losses, last_step, val = [], {}, {}
    for epoch in sorted(metrics):  # one epoch at a time, to know where each ends
        steps, per_epoch = read_losses({epoch: metrics[epoch]})
        train_losses += [loss for _, loss in steps]
        if "mean" in per_epoch.get(epoch, {}):
            val[epoch] = per_epoch[epoch]["mean"]
        last_step[epoch] = len(train_losses) - 1
    curve = smoothed(train_losses)
    return {e: curve[i] for e, i in last_step.items() if i >= 0}, val


def knee(losses: dict[int, float]) -> int | None:
    """The epoch furthest below the chord from the first to the last epoch's loss (None: no bend)."""
    epochs = sorted(e for e in losses if math.isfinite(losses[e]))
    if len(epochs) < 3:
        return None
    (x0, y0), (x1, y1) = (epochs[0], losses[epochs[0]]), (epochs[-1], losses[epochs[-1]])
    below = {e: (y0 + (y1 - y0) * (e - x0) / (x1 - x0)) - losses[e] for e in epochs[1:-1]}
    best = max(below, key=below.get)
    return best if below[best] > 0 else None


def refine(saved: list[int], sampled: list[int], train: dict[int, float], val: dict[int, float]) -> Refinement:
    finite = {e: v for e, v in val.items() if math.isfinite(v)}
    lowest = min(finite, key=finite.get) if finite else None
    bend = knee(train)
    centres = [c for c in (lowest, bend) if c is not None]
    epochs = [e for e in saved if e not in sampled and any(abs(e - c) <= STEPS_AROUND for c in centres)]
    return Refinement(lowest, bend, epochs)


COLUMNS = ["epoch", "why"]


def write_table(path: Path, refinement: Refinement) -> None:
    """refine.tsv: the extra epochs to sample and why (the first lines name the two reference points)."""
    rows = []
    for e in refinement.epochs:
        near = [f"{STEPS_AROUND} or fewer epochs from the {what} (epoch {c})"
                for what, c in (("lowest validation loss", refinement.lowest_val),
                                ("knee of the smoothed training loss", refinement.knee))
                if c is not None and abs(e - c) <= STEPS_AROUND]
        rows.append((e, "; ".join(near)))
    atomic.write_tsv(path, COLUMNS, rows)


def read_table(path: Path) -> list[int]:
    with open(path, newline="", encoding="utf-8") as f:
        return [int(row["epoch"]) for row in csv.DictReader(f, delimiter="\t")]
