"""The checkpoint selection of the guide's chapters 5 and 6, on the scorecard and the losses, explained
step by step. Light imports only (rules/common.smk reads the selected epoch).

1. **Start** at the one minimum of the validation loss (loss_trend.minimum, the same that the
   refinement samples around): the earliest epoch whose smoothed loss lies within the noise of the
   lowest. A flat curve starts at the knee of the training loss; with neither, the rows alone decide.
2. **Signs.** Each sampled row's levels are read as the guide's indicators, relative to the start:

   - overfit signs slight or present, visual fidelity over-sharpened or burned: overtraining;
   - visual fidelity poor, prompt accuracy low: undertraining while the training loss still falls, at
     or before the start, or past it where every sampled epoch since the start shows it too (not
     reached yet); otherwise a sign;
   - past the start, prompt accuracy or generalisation below its best at or before the start:
     overtraining (dropping: the guide's "prompt insensitivity");
   - generalisation poor: a sign.

   "Still falling": the training loss's robust slope lies two standard errors below 0 and at least
   half as steep as the run's mean slope (loss_trend.slope). A sign that is neither overtraining nor
   undertraining still counts. "n/a" (not measured) is no sign. Where a row stands among the others
   counts too: the epoch just before an overtrained one, or just after an undertrained one, carries a
   weak sign where an epoch 2-4 away from that one was sampled (the guide steps 2-4 epochs, not 1: a
   sign shows a little after what causes it; where none was sampled, `to_sample` names them); and
   overtraining past the start, or undertraining before it, does not heal: a row after (before) such
   an epoch stands no better than it, whatever its own levels say.
3. **Rank** rows by their standing: the number of signs, their weight (the rank of the level behind
   each: slight or moderate 1, present, poor, low, burned 2), the sum of the four levels (0 for a
   criterion's best level, 1 for the next, 2 for the rest; "n/a" counts 1), the resemblance (the
   identity's own level, ranked as the fidelity's: of two rows "poor" for softer samples, the one
   that looks like the character; the guide counts poor resemblance as undertraining); then by the smoothed
   validation loss above the lowest in whole noise units (within the noise counts as the lowest; on a
   flat curve with a knee every loss does), then by the distance from the start, then the earlier
   epoch. The guide's matrix (18: high, excellent, moderate, none; 20: high, good, high, none; 22:
   moderate, good, high, slight; 26: low, over-sharpened, poor, present) ranks 18 and 20 before 22,
   and 26 last.
4. **Candidates**: the eligible sampled epochs within 4 of the start (eligible: not rejected by a
   review, with a finite validation loss); the best ranked is the first choice. No eligible epoch
   within 4: the nearest ones (and where none within 4 was saved, the reasons say to save more often).
5. **Steps** (the guide's "advance / roll back 2-4 epochs; repeat until the optimal checkpoint is
   identified"). Overtraining signs only: roll back; undertraining signs only: advance; onto the
   eligible sampled epoch 1-4 away in that direction that stands best, if it stands as well as the
   chosen one or better (2-4 epochs away before 1, then by rank). Signs that point no way (or both):
   to an epoch within 4 either way that stands strictly better. A step never lands on a rejected, NaN,
   worse-standing or visited row, so the walk ends; the answer is the best ranked epoch it visited.
   Where it stops because the epochs it would look at were not sampled (or not trained), `to_sample`
   names them: sample them (validate.epochs) or train longer, and the selection reruns.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from charlora import atomic, loss_trend
from charlora.scorecard import CRITERIA, LEVELS, RESEMBLANCE_LEVELS, Row

REACH = 4  # the candidates' distance from the start, and the farthest step
STEP = 2  # the nearest step the guide takes ("2-4 epochs")
OVER, UNDER = "overtraining", "undertraining"


@dataclass(frozen=True)
class Sign:
    kind: str  # OVER, UNDER or "" (counts in the ranking, points no way)
    text: str
    weight: int  # the rank of the level behind it: 1 (slight, moderate) or 2 (present, poor, low, ...)
    beside: int | None = None  # the epoch 1 away whose sign this echoes (it ranks, it does not step)


@dataclass
class Selection:
    epoch: int | None  # None: no eligible epoch was sampled
    lowest_validation_loss_smoothed: int | None  # the epoch of the lowest smoothed validation loss
    knee: int | None
    start: int | None
    reasons: list[str]
    flat: bool = False
    noise: float | None = None
    steps: list[dict] = field(default_factory=list)  # {"epoch", "action", "why"}, one per step
    to_sample: list[int] = field(default_factory=list)  # epochs whose samples would settle the choice


def level_rank(criterion: str, level: str) -> int:
    """0 for the criterion's best level, 1 for the next, 2 for the rest; "n/a" counts as 1."""
    if level not in LEVELS[criterion]:
        return 1
    return min(LEVELS[criterion].index(level), 2)


class Judge:
    """The signs and rank of each sampled row, relative to the start."""

    def __init__(self, rows: dict[int, Row], minimum: loss_trend.Minimum, train: dict[int, float]):
        self.rows, self.minimum, self.train, self.start = rows, minimum, train, minimum.start
        self.cache: dict[int, list[Sign]] = {}
        self.own_cache: dict[int, list[Sign]] = {}
        before = [r for e, r in rows.items() if self.start is None or e <= self.start]
        self.best_before = {
            c: min((level_rank(c, r.levels[c]) for r in before if r.levels[c] in LEVELS[c]), default=None)
            for c in ("prompt_accuracy", "generalisation")
        }

    def past_start(self, epoch: int) -> bool:
        return self.start is not None and epoch > self.start

    def signs(self, epoch: int) -> list[Sign]:
        """The row's own signs, then where it stands among the others: just before an overtrained epoch
        or just after an undertrained one (a weak sign: the guide steps 2-4 epochs, not 1, because a sign
        shows a little after what causes it); after an epoch at or past the start that shows overtraining,
        or before one at or before the start that shows undertraining (neither heals: the row stands no
        better than that epoch, see `standing`)."""
        if epoch not in self.cache:
            signs = self.own_signs(epoch)
            after, before = self.sources(epoch)
            if self.shows(epoch + 1, OVER) and self.guide_steps(epoch + 1, -1):
                signs.append(Sign(OVER, f"1 epoch before epoch {epoch + 1}'s overtraining signs", 1, epoch + 1))
            elif after:
                signs.append(Sign(OVER, f"after epoch {max(after)}'s overtraining signs", 0))
            if self.shows(epoch - 1, UNDER) and self.guide_steps(epoch - 1, 1):
                signs.append(Sign(UNDER, f"1 epoch after epoch {epoch - 1}'s undertraining signs", 1, epoch - 1))
            elif before:
                signs.append(Sign(UNDER, f"before epoch {min(before)}'s undertraining signs", 0))
            self.cache[epoch] = signs
        return self.cache[epoch]

    def sources(self, epoch: int) -> tuple[list[int], list[int]]:
        """The sampled epochs at or past the start, before `epoch`, that show overtraining; and those after
        it, at or before the start, that show undertraining (none without a start)."""
        start = self.start
        if start is None:  # no minimum to be past or before: the rows alone decide
            return [], []
        after = [r for r in self.rows if start <= r < epoch and self.shows(r, OVER)]
        before = [r for r in self.rows if epoch < r <= start and self.shows(r, UNDER)]
        return after, before

    def guide_steps(self, epoch: int, direction: int) -> list[int]:
        """The eligible sampled epochs 2-4 epochs from `epoch` in `direction`: where the guide would step."""
        return [e for e in away(epoch, direction) if self.eligible(e)]

    def eligible(self, epoch: int) -> bool:
        """Sampled, not rejected, with a finite validation loss (where the run has one)."""
        return (
            epoch in self.rows
            and not self.rows[epoch].reject
            and (not self.minimum.smoothed or epoch in self.minimum.smoothed)
        )

    def shows(self, epoch: int, kind: str) -> bool:
        return any(s.kind == kind for s in self.own_signs(epoch))

    def own_signs(self, epoch: int) -> list[Sign]:
        """What the row's own levels show (nothing for an epoch that was not sampled); a copy, as `signs`
        adds to it."""
        if epoch not in self.own_cache:
            self.own_cache[epoch] = self.read_levels(epoch) if epoch in self.rows else []
        return list(self.own_cache[epoch])

    def read_levels(self, epoch: int) -> list[Sign]:
        """The signs of a sampled row's four levels (see the module docstring, 2)."""
        levels = self.rows[epoch].levels
        weight = {c: level_rank(c, levels[c]) for c in CRITERIA}
        out = []
        if levels["overfit_signs"] in ("slight", "present"):
            out.append(Sign(OVER, f"overfit signs {levels['overfit_signs']}", weight["overfit_signs"]))
        fidelity = levels["visual_fidelity"]
        if fidelity in ("over-sharpened", "burned"):
            out.append(Sign(OVER, f"visual fidelity {fidelity}", weight["visual_fidelity"]))
        elif fidelity == "poor":
            out.append(self.early_sign(epoch, "visual_fidelity"))
        for criterion, worst in (("prompt_accuracy", "low"), ("generalisation", "poor")):
            level, words = levels[criterion], criterion.replace("_", " ")
            if self.dropped(epoch, criterion):
                best = LEVELS[criterion][self.best_before[criterion]]
                out.append(Sign(OVER, f"{words} {level} past the start, {best} at or before it", weight[criterion]))
            elif level == worst:
                out.append(
                    self.early_sign(epoch, criterion)
                    if criterion == "prompt_accuracy"
                    else Sign("", f"{words} {level}", weight[criterion])
                )
        return out

    def early_sign(self, epoch: int, criterion: str) -> Sign:
        """Poor fidelity or low prompt accuracy is undertraining while the training loss still falls, at or
        before the start, or past it where every sampled epoch since the start shows it too (not reached
        yet); otherwise a sign that points no way."""
        level = self.rows[epoch].levels[criterion]
        words, weight = f"{criterion.replace('_', ' ')} {level}", level_rank(criterion, level)
        trend = loss_trend.slope(self.train, epoch)
        if not trend.falling:
            return Sign("", f"{words}, but the training loss {trend.how_not_falling()} ({trend.words()})", weight)
        since = [
            r.levels[criterion] for e, r in self.rows.items() if self.past_start(epoch) and self.start <= e < epoch
        ]
        if all(x == level for x in since):
            return Sign(
                UNDER,
                f"{words} while the training loss still falls ({trend.words()})"
                + (" and in every sampled epoch since the start" if self.past_start(epoch) else ""),
                weight,
            )
        return Sign("", f"{words} past the start, after better epochs", weight)

    def dropped(self, epoch: int, criterion: str) -> bool:
        """Past the start, a level worse than the criterion's best at or before the start."""
        best, level = self.best_before[criterion], self.rows[epoch].levels[criterion]
        return (
            self.past_start(epoch)
            and best is not None
            and level in LEVELS[criterion]
            and level_rank(criterion, level) > best
        )

    def standing(self, epoch: int) -> tuple[int, int, int, int]:
        """What a step compares: the number of signs, their weight (the level ranks behind them: slight 1,
        present 2), the sum of the four levels, then the resemblance; no better than the standing of an
        epoch whose overtraining it follows or whose undertraining it precedes (`sources`)."""
        mine = self.plain_standing(epoch, self.signs(epoch))
        after, before = self.sources(epoch)
        return max([mine] + [self.plain_standing(r, self.own_signs(r)) for r in after + before])

    def plain_standing(self, epoch: int, signs: list[Sign]) -> tuple[int, int, int, int]:
        levels = self.rows[epoch].levels
        return (
            len(signs),
            sum(s.weight for s in signs),
            sum(level_rank(c, levels[c]) for c in CRITERIA),
            level_rank("visual_fidelity", self.resemblance(epoch)),
        )

    def resemblance(self, epoch: int) -> str:
        """The identity's own level (scorecard.resemblance), which a softness flag can hide in the fidelity's
        "poor": of two rows that stand the same, the one more like the character is the better. Where the
        review set the fidelity, the user's word is the whole of it: the level they set ("n/a" for a flag)."""
        row = self.rows[epoch]
        if "visual_fidelity" not in row.reviewed:
            return row.resemblance
        level = row.levels["visual_fidelity"]
        return level if level in RESEMBLANCE_LEVELS else "n/a"

    def loss_key(self, epoch: int) -> float:
        """The smoothed validation loss above the lowest, in whole noise units (0: within the noise of
        the lowest), so that differences within the noise do not decide; on a flat curve with a start
        (the knee) 0 for every epoch; inf without a loss."""
        smoothed, m = self.minimum.smoothed.get(epoch), self.minimum
        if smoothed is None:
            return math.inf
        if m.flat and m.start is not None:
            return 0.0
        excess = smoothed - m.smoothed[m.lowest]
        return float(max(0, math.ceil(excess / m.noise) - 1)) if m.noise else excess

    def rank(self, epoch: int) -> tuple:
        """The standing, then the loss (loss_key), then the distance from the start, then the earlier epoch."""
        return (
            *self.standing(epoch),
            self.loss_key(epoch),
            abs(epoch - self.start) if self.start is not None else 0,
            epoch,
        )

    def describe(self, epoch: int) -> str:
        """The row's signs, and its resemblance where the fidelity's level does not say it."""
        signs = self.signs(epoch)
        words = "; ".join(s.text for s in signs) if signs else "no signs"
        resemblance = self.resemblance(epoch)
        if resemblance != "n/a" and resemblance != self.rows[epoch].levels["visual_fidelity"]:
            words += f"; resemblance {resemblance}"
        return words


def away(epoch: int, direction: int, nearest: int = STEP) -> list[int]:
    """The epochs `nearest`..REACH epochs from `epoch` in `direction` (-1 back, 1 ahead), nearest first."""
    return [epoch + direction * d for d in range(nearest, REACH + 1)]


def epochs_words(epochs) -> str:
    return ", ".join(map(str, epochs))


def select(
    rows: list[Row], val: dict[int, float], train: dict[int, float], saved: list[int] | None = None
) -> Selection:
    """The guide's selection on the scorecard rows (sampled epochs > 0), the per-epoch mean validation
    and training losses, and the saved epochs (default: every epoch with a loss or a row)."""
    minimum = loss_trend.minimum(val, train)
    trained = sorted({*val, *train, *(r.epoch for r in rows)})
    saved = sorted(saved) if saved is not None else trained
    last = max(trained, default=0)
    by_epoch = {r.epoch: r for r in rows}
    selection = Selection(None, minimum.lowest, minimum.knee, minimum.start, [], minimum.flat, minimum.noise)
    reasons = selection.reasons
    rejected = sorted(e for e, r in by_epoch.items() if r.reject)
    if rejected:
        reasons.append(f"rejected by review: epoch {epochs_words(rejected)}")
    nan = sorted(e for e in by_epoch if minimum.smoothed and e not in minimum.smoothed)
    if nan:
        reasons.append(f"no finite validation loss: epoch {epochs_words(nan)} (never chosen)")
    judge = Judge(by_epoch, minimum, train)
    eligible = [e for e in sorted(by_epoch) if judge.eligible(e)]
    reasons.append(minimum.why)
    if minimum.knee is not None and "knee" not in minimum.why:
        reasons.append(f"knee of the smoothed training loss: epoch {minimum.knee}")
    if not eligible:
        if minimum.start is not None:
            selection.to_sample = [e for e in saved if abs(e - minimum.start) <= REACH and e not in by_epoch]
        reasons.append(
            "no epoch can be selected: "
            + (
                "no epoch was sampled"
                if not by_epoch
                else "every sampled epoch is rejected or has no finite validation loss"
            )
            + "; sample other epochs (validate.epochs), change a review, or set lora.epoch"
            + "".join(f"; {words}" for words in settle_words(selection.to_sample, last))
        )
        return selection
    chosen, opening, unsampled = first_choice(judge, eligible, saved)
    selection.to_sample += unsampled
    order = "; ".join(f"{e}: {judge.describe(e)}" for e in sorted(opening[1], key=judge.rank))
    selection.steps.append(
        {
            "epoch": chosen,
            "action": "best candidate",
            "why": f"{opening[0]}; ranked by signs, then levels, then resemblance, then smoothed loss: {order}",
        }
    )
    reasons.append(f"{opening[0]}; best ranked: epoch {chosen} ({judge.describe(chosen)})")
    visited = [chosen]
    while True:
        landing, action, why, unsampled = step(judge, chosen, eligible, visited, saved, last)
        selection.to_sample += unsampled
        if landing is None:
            break
        selection.steps.append({"epoch": landing, "action": action, "why": why})
        reasons.append(f"epoch {chosen}: {judge.describe(chosen)}: {action} to epoch {landing}")
        visited.append(landing)
        chosen = landing
    best = min(visited, key=judge.rank)
    if best != chosen:
        why += f"; of the epochs the steps visited, epoch {best} ranks best ({judge.describe(best)})"
        chosen = best
    for kind, direction in ((OVER, -1), (UNDER, 1)):  # beside a sign, where the guide's 2-4 step was not sampled
        if judge.shows(chosen - direction, kind) and not judge.guide_steps(chosen - direction, direction):
            source = chosen - direction
            selection.to_sample += [e for e in away(source, direction) if e in saved]
    selection.epoch = chosen
    selection.steps.append({"epoch": chosen, "action": "stop", "why": why})
    selection.to_sample = sorted(set(selection.to_sample) - set(by_epoch))
    settle = "".join(f"; {words}" for words in settle_words(selection.to_sample, last))
    reasons.append(f"epoch {chosen}: {why}{settle}")
    return selection


def first_choice(judge: Judge, eligible: list[int], saved: list[int]) -> tuple[int, tuple[str, list[int]], list[int]]:
    """The best ranked candidate, (the words for the candidates, the candidates), and the saved epochs
    within REACH of the start that were not sampled when no candidate lies there."""
    start = judge.start
    if start is None:
        return (
            min(eligible, key=judge.rank),
            (f"candidates: every eligible sampled epoch ({epochs_words(eligible)})", eligible),
            [],
        )
    candidates = [e for e in eligible if abs(e - start) <= REACH]
    if candidates:
        return (
            min(candidates, key=judge.rank),
            (f"candidates within {REACH} of epoch {start}: {epochs_words(candidates)}", candidates),
            [],
        )
    distance = min(abs(e - start) for e in eligible)
    nearest = [e for e in eligible if abs(e - start) == distance]
    words = f"no eligible sampled epoch within {REACH} of epoch {start}; the nearest: {epochs_words(nearest)}"
    if not any(abs(e - start) <= REACH for e in saved):  # nothing there to sample: the run saved too seldom
        words += f" (no epoch within {REACH} of epoch {start} was saved: a lower train.save_every saves some to sample)"
    return (
        min(nearest, key=judge.rank),
        (words, nearest),
        [e for e in saved if abs(e - start) <= REACH and e not in judge.rows],
    )


def step(
    judge: Judge, chosen: int, eligible: list[int], visited: list[int], saved: list[int], last: int
) -> tuple[int | None, str, str, list[int]]:
    """One of the guide's steps from `chosen`: (the epoch it lands on, or None where the walk stops;
    the action; why; the unsampled epochs whose samples would settle it)."""
    signs = judge.signs(chosen)
    if not signs:
        return None, "stop", "no overtraining or undertraining signs", []
    if all(s.beside is not None for s in signs):  # 1 epoch from another's signs: the guide's 2-4 were not better
        unsampled = [
            e for s in signs for e in away(s.beside, -1 if s.kind == OVER else 1) if e not in judge.rows and e in saved
        ]
        return (
            None,
            "stop",
            f"{judge.describe(chosen)}, and no sampled epoch {STEP}-{REACH} epochs from it stands better",
            unsampled,
        )
    kinds = {s.kind for s in signs if s.beside is None} - {""}
    standing = judge.standing(chosen)
    if len(kinds) == 1:  # the guide's step, onto a row that stands as well or better
        direction = -1 if kinds == {OVER} else 1
        action, what, side = ("roll back", OVER, "back") if direction < 0 else ("advance", UNDER, "ahead")
        near = away(chosen, direction, nearest=1)
        acceptable = [e for e in near if e in eligible and e not in visited and judge.standing(e) <= standing]
    else:  # signs that point no way (or both ways): a row that stands better on either side
        action, side = "move", "either way"
        what = (
            "overtraining and undertraining signs at once"
            if kinds
            else "signs that point neither to overtraining nor to undertraining"
        )
        near = [chosen + d for d in range(-REACH, REACH + 1) if d]
        acceptable = [e for e in near if e in eligible and e not in visited and judge.standing(e) < standing]
    unsampled = [e for e in near if e not in judge.rows and (e in saved or e > last)]
    if not acceptable:
        stands = "better" if action == "move" else "as well or better"
        return (
            None,
            "stop",
            f"{what} ({judge.describe(chosen)}), but no sampled epoch within {REACH} {side} stands {stands}",
            unsampled,
        )
    # a better standing first, then 2-4 epochs away before 1, then the rank
    landing = min(acceptable, key=lambda e: (judge.standing(e), abs(e - chosen) < STEP, judge.rank(e)))
    why = f"epoch {chosen}: {what} ({judge.describe(chosen)}); epoch {landing}: {judge.describe(landing)}"
    if abs(landing - chosen) >= STEP:
        return landing, action, why, []
    return (
        landing,
        action,
        why + f"; 1 epoch: no sampled epoch {STEP}-{REACH} away stands as well",
        [e for e in unsampled if abs(e - chosen) >= STEP],
    )


def settle_words(to_sample: list[int], last: int) -> list[str]:
    """What the user can do to settle the choice: sample saved epochs, or train longer."""
    unsampled, untrained = [e for e in to_sample if e <= last], [e for e in to_sample if e > last]
    words = []
    if unsampled:
        words.append(f"samples of epoch {epochs_words(unsampled)} would settle it: add them to validate.epochs")
    if untrained:
        words.append(f"epoch {epochs_words(untrained)} would settle it, once trained: train.epochs {max(untrained)}")
    return words


def write_selection(path: Path, selection: Selection) -> None:
    with atomic.atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(asdict(selection), indent=1) + "\n", encoding="utf-8")


def read_selection(path: Path) -> int | None:
    """The selected epoch (None: no epoch could be selected; selected.json's reasons say why)."""
    return json.loads(Path(path).read_text(encoding="utf-8"))["epoch"]


def read_reasons(path: Path) -> list[str]:
    return json.loads(Path(path).read_text(encoding="utf-8"))["reasons"]
