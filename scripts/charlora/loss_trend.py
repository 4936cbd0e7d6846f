"""What the per-epoch losses say, for the refinement and the selection alike: the smoothed validation
curve, its noise, its minimum (or that it is flat), the knee of the training loss and whether the
training loss still falls. Pure Python (rules/common.smk imports the modules that import this one).

Every estimate is a local least-squares polynomial over neighbouring epochs (by position among the
epochs with a finite loss, so a NaN leaves a gap, not a zero):

- **Smoothed**: the straight line through the 3 nearest epochs, read at the epoch. Inside the curve
  this is the centred 3-epoch mean, so one noisy dip moves it by a third; at the ends it is the
  trend's value there, not a 2-epoch mean that ties the last two epochs (`{1: .3, 2: .2}` keeps 2 as
  the lower).
- **Noise**: the residual of each epoch from the quadratic through its 5 centred neighbours, divided
  by sqrt(1 - leverage) so that it estimates one epoch's scatter; the noise is the median absolute
  residual scaled to a standard deviation (x 1.4826). A quadratic follows the curve's bend, so a clean
  V or U has almost no noise, while the scatter of a noisy curve remains; the median keeps the few
  epochs at a sharp corner from counting. Fewer than 5 epochs: unknown (None).
- **Minimum**: the epoch of the lowest smoothed loss; the **start** of the selection is the earliest
  epoch whose smoothed loss lies within the noise of it (on a plateau, its beginning: the guide takes
  no more training than the curve pays for). The curve is **flat** when its whole smoothed range is
  within FLAT noise: then nothing stands out, and the start is the knee of the training loss (or,
  without one, no epoch: the scorecard rows alone decide).
- **Knee** of the training loss: the epoch furthest below the chord from the first to the last epoch
  of the smoothed per-epoch mean training loss (the "maximum distance to the chord" form of Kneedle,
  Satopaa et al. 2011), if it lies further below than twice the noise (the smoothed curve of a noisy
  straight line strays about 1.3 noise from its chord over 40 epochs).
- **Still falling** at an epoch: the Theil-Sen slope (median of the pairwise slopes) of the per-epoch
  mean training loss over the epochs within SLOPE_REACH of it lies two standard errors below 0, and is
  at least FALLING_SHARE of the run's mean slope (the chord of the smoothed curve from its first to
  its last epoch): a curve past its bend that still creeps down has stopped falling in the sense the
  guide means ("the loss consistently declines and then begins to flatten"). The standard error is
  the training loss's noise over the spread of the window's epochs, as for a least-squares slope;
  without a noise estimate the sign of the slope decides.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

KNEE_NOISE = 2.0  # a knee lies further below the chord than this many noise (a noisy line has none)
FLAT = 5.0  # a smoothed range within this many noise: flat (pure noise spans about 2.5)
SLOPE_REACH = 4  # epochs on either side of an epoch for its training-loss slope (the guide's step)
FALLING_SHARE = 0.5  # of the run's mean slope, for "still falling"
MAD_TO_SD = 1.4826  # median absolute deviation -> standard deviation, for normal scatter


def finite(losses: dict[int, float]) -> dict[int, float]:
    """The epochs with a finite loss, in epoch order."""
    return {e: losses[e] for e in sorted(losses) if losses[e] is not None and math.isfinite(losses[e])}


def fit(xs: list[float], ys: list[float], degree: int) -> tuple[list[float], list[float]]:
    """Least squares of ys by a polynomial of `degree` in xs: the fitted values and each point's
    leverage (the diagonal of the hat matrix), through an orthonormal basis (Gram-Schmidt)."""
    centre = statistics.fmean(xs)
    basis = []
    for k in range(degree + 1):
        v = [(x - centre) ** k for x in xs]
        for q in basis:
            dot = sum(a * b for a, b in zip(v, q))
            v = [a - dot * b for a, b in zip(v, q)]
        norm = math.sqrt(sum(a * a for a in v))
        if norm > 1e-12 * len(xs):
            basis.append([a / norm for a in v])
    fitted = [0.0] * len(xs)
    for q in basis:
        dot = sum(a * b for a, b in zip(ys, q))
        fitted = [f + dot * b for f, b in zip(fitted, q)]
    leverage = [sum(q[i] ** 2 for q in basis) for i in range(len(xs))]
    return fitted, leverage


def nearest(i: int, n: int, width: int) -> range:
    """The `width` positions nearest to i among 0..n-1 (centred where the ends allow)."""
    first = min(max(0, i - width // 2), max(0, n - width))
    return range(first, min(n, first + width))


def smooth(losses: dict[int, float]) -> dict[int, float]:
    """Each finite epoch's loss read off the straight line through its 3 nearest epochs."""
    curve = finite(losses)
    epochs, values = list(curve), list(curve.values())
    out = {}
    for i, e in enumerate(epochs):
        window = nearest(i, len(epochs), 3)
        fitted, _ = fit([epochs[j] for j in window], [values[j] for j in window], 1)
        out[e] = fitted[i - window.start]
    return out


def noise(losses: dict[int, float]) -> float | None:
    """One epoch's scatter around the curve (None: fewer than 5 finite epochs)."""
    curve = finite(losses)
    epochs, values = list(curve), list(curve.values())
    residuals = []
    for i in range(2, len(epochs) - 2):
        window = range(i - 2, i + 3)
        fitted, leverage = fit([epochs[j] for j in window], [values[j] for j in window], 2)
        residuals.append((values[i] - fitted[2]) / math.sqrt(1 - leverage[2]))
    return MAD_TO_SD * statistics.median(abs(r) for r in residuals) if residuals else None


def knee(train: dict[int, float]) -> int | None:
    """The epoch of the smoothed training loss furthest below the chord, beyond twice the noise (None: no bend)."""
    curve = smooth(train)
    epochs = list(curve)
    if len(epochs) < 3:
        return None
    (x0, y0), (x1, y1) = (epochs[0], curve[epochs[0]]), (epochs[-1], curve[epochs[-1]])
    below = {e: (y0 + (y1 - y0) * (e - x0) / (x1 - x0)) - curve[e] for e in epochs[1:-1]}
    best = max(below, key=below.get)
    return best if below[best] > KNEE_NOISE * (noise(train) or 0.0) else None


@dataclass(frozen=True)
class Slope:
    epoch: int
    value: float | None  # loss per epoch (None: fewer than 2 epochs around it)
    error: float | None  # its standard error (None: no noise estimate)
    run: float | None = None  # the run's mean slope (None: fewer than 2 epochs)

    @property
    def within_noise(self) -> bool:
        """The slope lies within two standard errors of 0 (False without a noise estimate)."""
        return self.value is not None and self.error is not None and self.value + 2 * self.error >= 0

    @property
    def falling(self) -> bool:
        if self.value is None or self.value >= 0 or self.within_noise:
            return False
        return self.run is None or self.run >= 0 or self.value <= FALLING_SHARE * self.run

    def how_not_falling(self) -> str:
        """Why the training loss does not count as still falling here, in words."""
        if self.value is None:
            return "cannot be told to fall"
        if self.value >= 0:
            return "no longer falls"
        if self.within_noise:
            return "falls no more than its noise"
        return f"has flattened (under {FALLING_SHARE * 100:g} % of the run's mean slope)"

    def words(self) -> str:
        if self.value is None:
            return f"no training loss around epoch {self.epoch}"
        error = f" +- {self.error:.2g}" if self.error is not None else " (noise unknown)"
        run = f", the run's mean {self.run:+.3g}" if self.run is not None else ""
        return f"training loss slope at epoch {self.epoch}: {self.value:+.3g}{error} per epoch{run}"


def slope(train: dict[int, float], epoch: int) -> Slope:
    """The robust slope of the per-epoch mean training loss around `epoch`, with its uncertainty, and
    the run's mean slope."""
    curve = finite(train)
    window = [e for e in curve if abs(e - epoch) <= SLOPE_REACH]
    if len(window) < 2:
        return Slope(epoch, None, None)
    pairs = [(curve[b] - curve[a]) / (b - a) for i, a in enumerate(window) for b in window[i + 1 :]]
    scatter = noise(curve)
    centre = statistics.fmean(window)
    spread = math.sqrt(sum((e - centre) ** 2 for e in window))
    line = smooth(curve)
    first, last = min(line), max(line)
    return Slope(
        epoch,
        statistics.median(pairs),
        scatter / spread if scatter is not None else None,
        (line[last] - line[first]) / (last - first),
    )


@dataclass(frozen=True)
class Minimum:
    """Where the selection starts, and what the validation curve looks like."""

    smoothed: dict[int, float] = field(default_factory=dict)
    noise: float | None = None
    lowest: int | None = None  # the epoch of the lowest smoothed validation loss
    flat: bool = False  # nothing stands out of the noise
    knee: int | None = None  # of the training loss
    start: int | None = None  # None: neither the validation curve nor the training loss points anywhere
    why: str = ""

    def past(self, epoch: int) -> str | None:
        """Words when `epoch`'s smoothed loss lies past the minimum by more than the noise."""
        if self.lowest is None or self.flat or epoch <= self.lowest or epoch not in self.smoothed:
            return None
        margin = self.noise or 0.0
        low = self.smoothed[self.lowest]
        if self.smoothed[epoch] > low + margin:
            return (
                f"validation loss {self.smoothed[epoch]:.4g} (smoothed), above its minimum {low:.4g} at "
                f"epoch {self.lowest} by more than the noise ({margin:.2g})"
            )
        return None


def minimum(val: dict[int, float], train: dict[int, float]) -> Minimum:
    """The one minimum that the refinement samples around and the selection starts from."""
    bend = knee(train)
    curve = smooth(val)
    if not curve:
        return Minimum(
            knee=bend,
            start=bend,
            why=(
                f"no validation loss: start at the knee of the training loss (epoch {bend})"
                if bend is not None
                else "no validation loss and no knee in the training loss"
            ),
        )
    scatter = noise(val)
    lowest = min(curve, key=curve.get)
    spread = max(curve.values()) - curve[lowest]
    if scatter is not None and spread <= FLAT * scatter:
        return Minimum(
            curve,
            scatter,
            lowest,
            True,
            bend,
            bend,
            (
                f"the validation loss is flat: its smoothed range {spread:.2g} is within {FLAT:g} x its noise "
                f"{scatter:.2g}, so no epoch stands out; "
                + (
                    f"start at the knee of the training loss (epoch {bend})"
                    if bend is not None
                    else "the training loss has no knee either: the scorecard rows alone decide"
                )
            ),
        )
    margin = scatter or 0.0
    start = next(e for e in curve if curve[e] <= curve[lowest] + margin)
    noise_words = f"noise {scatter:.2g}" if scatter is not None else "noise unknown (fewer than 5 epochs)"
    why = f"lowest validation loss (smoothed): epoch {lowest} ({curve[lowest]:.4g}; {noise_words})"
    if start != lowest:
        why += f"; start at epoch {start}, the earliest within the noise of it ({curve[start]:.4g})"
    return Minimum(curve, scatter, lowest, False, bend, start, why)
