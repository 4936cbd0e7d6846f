"""The pictures a user reads to judge a run: each epoch's grid of samples, the comparison sheet
(prompts x epochs, the guide's visual regression archive) and the loss curves.

The sheets are mosaics of thumbnails with the prompt on each row and the epoch (or seed) on each
column; the samples themselves stay full size in their folders. Loss curves: the training loss per
step, raw and smoothed as TensorBoard smooths it (an exponential moving average with weight 0.999,
debiased so that its start is not pulled towards 0), and the validation loss of each epoch per fixed
timestep and their mean. The per-timestep lines are the signal: loss scales differ by orders of
magnitude between timesteps, so the mean is dominated by the noisiest ones.
"""

from __future__ import annotations

import csv
import math
import textwrap
from collections import defaultdict
from pathlib import Path

from PIL import Image

from charlora import atomic
from charlora.sample import Prompt, image_name

SMOOTHING = 0.999  # TensorBoard's smoothing weight for the training loss
THUMBNAIL = 192  # px, the longer side of a sample in a sheet
LABEL_CHARS = 36  # a row label's line length


def mosaic(cells: list[list[Path | None]], size: int) -> Image.Image:
    """Rows x columns of images, each fitted into a size x size square (grey where a cell is None)."""
    columns = max(len(row) for row in cells)
    sheet = Image.new("RGB", (columns * size, len(cells) * size), (128, 128, 128))
    for r, row in enumerate(cells):
        for c, path in enumerate(row):
            if path is None:
                continue
            with Image.open(path) as image:
                image = image.convert("RGB")
                image.thumbnail((size, size), Image.Resampling.LANCZOS)
                sheet.paste(image, (c * size + (size - image.width) // 2, r * size + (size - image.height) // 2))
    return sheet


def labelled_sheet(
    cells: list[list[Path | None]], row_labels: list[str], column_labels: list[str], title: str, out: Path
) -> None:
    """The mosaic with a label per row (left) and per column (top), as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size = min(THUMBNAIL, max(Image.open(p).size[0] for row in cells for p in row if p is not None))
    image = mosaic(cells, size)
    dpi, left, top = 100, 3.2, 0.7  # margins in inches, for the labels
    width, height = image.width / dpi + left + 0.2, image.height / dpi + top + 0.2
    fig = plt.figure(figsize=(width, height), dpi=dpi)
    ax = fig.add_axes((left / width, 0.2 / height, image.width / dpi / width, image.height / dpi / height))
    ax.imshow(image, interpolation="none")
    ax.set_xticks([size * (c + 0.5) for c in range(len(column_labels))], column_labels, fontsize=9)
    ax.xaxis.tick_top()
    ax.set_yticks(
        [size * (r + 0.5) for r in range(len(row_labels))],  # at most 3 lines each
        ["\n".join(textwrap.wrap(textwrap.shorten(label, 3 * LABEL_CHARS), LABEL_CHARS)) for label in row_labels],
        fontsize=8,
    )
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    fig.suptitle(title, x=0.01, y=1 - 0.05 / height, ha="left", va="top", fontsize=10)
    with atomic.atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, metadata={"Software": None})
    plt.close(fig)


def epoch_grid(folder: Path, prompts: list[Prompt], seeds: list[int], title: str, out: Path) -> None:
    """One epoch's samples: a row per prompt, a column per seed."""
    cells = [[folder / image_name(p, seed) for seed in seeds] for p in prompts]
    labelled_sheet(cells, [f"{p.name}: {p.text}" for p in prompts], [f"seed {s}" for s in seeds], title, out)


def compare_sheet(folders: dict[int, Path], prompts: list[Prompt], seeds: list[int], title: str, out: Path) -> None:
    """Every sampled epoch side by side: a row per prompt and seed, a column per epoch (0 = the base model)."""
    epochs = sorted(folders)
    cells = [[folders[e] / image_name(p, seed) for e in epochs] for p in prompts for seed in seeds]
    labels = [f"{p.name} s{seed}: {p.text}" for p in prompts for seed in seeds]
    labelled_sheet(cells, labels, ["base" if e == 0 else f"epoch {e}" for e in epochs], title, out)


def smoothed(values: list[float], weight: float = SMOOTHING) -> list[float]:
    """TensorBoard's smoothing: a debiased exponential moving average."""
    out, average = [], 0.0
    for i, value in enumerate(values, start=1):
        average = weight * average + (1 - weight) * value
        out.append(average / (1 - weight**i))
    return out


def read_losses(metrics: dict[int, Path]) -> tuple[list[tuple[int, float]], dict[int, dict[str, float]]]:
    """The training losses [(global step, loss)] of all epochs, and per epoch the validation losses
    {timestep or 'mean': loss}, from the epochs' metrics.tsv files."""
    train, val = [], defaultdict(dict)
    for epoch in sorted(metrics):
        with open(metrics[epoch], newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f, delimiter="\t"):
                if row["kind"] == "train":
                    train.append((int(row["step"]), float(row["loss"])))
                else:
                    val[epoch][row["timestep"]] = float(row["loss"])
    return train, dict(val)


def loss_curves(metrics: dict[int, Path], title: str, out: Path, selected: int | None = None) -> None:
    """losses.png: the training loss (left) and the validation loss per timestep (right), with the
    selected epoch marked."""
    import matplotlib.pyplot as plt

    fig = loss_figure(metrics, title, selected)
    with atomic.atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", metadata={"Software": None})
    plt.close(fig)


def loss_figure(metrics: dict[int, Path], title: str, selected: int | None = None):
    """The figure of losses.png. Each plot's legend stands beside it, outside the axes, so that no
    line (the selected epoch's least of all) is hidden behind it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FormatStrFormatter, MaxNLocator, NullFormatter

    from charlora import loss_trend

    train, val = read_losses(metrics)
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.5), dpi=100)
    if train:
        steps, losses = zip(*train)
        left.plot(steps, losses, color="tab:blue", alpha=0.3, linewidth=0.8, label="loss per step")
        left.plot(steps, smoothed(list(losses)), color="tab:blue", linewidth=2, label=f"smoothed ({SMOOTHING})")
        left.set_yscale("log")
    left.set(xlabel="step", ylabel="training loss", title="training loss")
    left.legend(loc="upper right", fontsize=8)  # the loss falls to the lower right: the corner stays clear
    epochs = sorted(val)
    timesteps = sorted({t for e in epochs for t in val[e] if t != "mean"}, key=int)
    colours = plt.get_cmap("viridis")
    for i, t in enumerate(timesteps):
        right.plot(
            epochs,
            [val[e].get(t, math.nan) for e in epochs],
            marker=".",
            linewidth=1,
            color=colours(i / max(1, len(timesteps) - 1)),
            label=f"t = {t}",
        )
    if epochs:
        means = {e: val[e].get("mean", math.nan) for e in epochs}
        right.plot(epochs, list(means.values()), color="black", linewidth=2.5, marker="o", label="mean (raw)")
        curve = loss_trend.smooth(means)  # the curve whose minimum the selection starts from
        right.plot(
            list(curve), list(curve.values()), color="tab:orange", linestyle=":", linewidth=2, label="mean (smoothed)"
        )
        right.set_yscale("log")
    if selected is not None:
        right.axvline(selected, color="tab:red", linestyle="--", linewidth=1.5, label=f"selected: epoch {selected}")
    right.set(xlabel="epoch", ylabel="validation loss (fixed noise)", title="validation loss per timestep")
    right.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in (left, right):  # plain numbers on the log axes, not powers of ten; minor ones within a decade
        low, high = ax.get_ylim()
        ax.yaxis.set_major_formatter(FormatStrFormatter("%.3g"))
        ax.yaxis.set_minor_formatter(FormatStrFormatter("%.3g") if high < 10 * low else NullFormatter())
        ax.tick_params(axis="y", which="minor", labelsize=7)
    right.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=7, borderaxespad=0)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
