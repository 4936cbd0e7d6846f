"""The guide's scoring matrix, measured: one row of four levels per sampled epoch. Light imports only.

Each sampled epoch gets the guide's four criteria, each a level derived from the sample measurements
(sample_metrics.py), compared with epoch 0 (the base model, same prompts and seeds):

| criterion | levels | from |
|---|---|---|
| prompt accuracy | high / moderate / low | adherence change and prompt sensitivity against epoch 0 |
| visual fidelity | excellent / good / poor / over-sharpened / burned | identity; sharpness and blown highlights against the training photos |
| generalisation | high / moderate / poor | adherence on unseen (intent) prompts against the validation captions; diversity across seeds |
| overfit signs | none / slight / present | copied compositions and their trend, diversity collapse, validation loss past its minimum |

The thresholds are the constants below (README, "Scorecard"). A user's review file
(`<dataset>/review/<run>/epoch-<eee>.yaml`) sets any of the four cells, adds a note, or rejects the
epoch; its word wins over the measurement.

The selection reads these rows: selection.py.
"""

from __future__ import annotations

import csv
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from charlora import atomic
from charlora.config import ConfigError
from charlora.loss_trend import Minimum

LEVELS = {
    "prompt_accuracy": ["high", "moderate", "low"],
    "visual_fidelity": ["excellent", "good", "poor", "over-sharpened", "burned"],
    "generalisation": ["high", "moderate", "poor"],
    "overfit_signs": ["none", "slight", "present"],
}
CRITERIA = list(LEVELS)
REVIEW_KEYS = CRITERIA + ["note", "reject"]

# Thresholds (each a share or a ratio against epoch 0)
ADHERENCE_HIGH, ADHERENCE_MODERATE = -0.05, -0.15     # relative change of the mean adherence
SENSITIVITY_HIGH, SENSITIVITY_MODERATE = 0.8, 0.6     # prompt sensitivity / epoch 0's
MATCH_EXCELLENT, MATCH_GOOD = 0.8, 0.5                # share of faces that match the training faces
FACES_EXCELLENT = 0.5                                 # share of samples with a face, for "excellent"
FLAGGED = 0.25                                        # share of samples sharper / more blown than training
GAP_HIGH, GAP_MODERATE = -0.05, -0.15                 # unseen minus validation-caption adherence change
DIVERSITY_HIGH, DIVERSITY_MODERATE = 0.8, 0.6         # diversity across seeds / epoch 0's
DIVERSITY_COLLAPSE = 0.5                              # below this: overfit sign "present"
COPIED_PRESENT = 0.25                                 # share of samples within copy_bits of a training photo
COPY_TREND = 0.75                                     # median copy distance / epoch 0's: below is a sign


@dataclass
class Evidence:
    """An epoch's figures behind its levels (None: not measurable, with the reason in the method)."""
    adherence: float | None = None
    adherence_unseen: float | None = None
    adherence_validation: float | None = None
    adherence_shuffled: float | None = None      # the same samples against other prompts: chance
    adherence_margin: float | None = None        # mean of (own - shuffled) over the samples
    adherence_margin_error: float | None = None  # its standard error
    face_share: float | None = None
    match_share: float | None = None
    face_distance: float | None = None
    sharper_share: float | None = None
    blown_share: float | None = None
    copied_share: float | None = None
    copy_median: float | None = None
    diversity_seeds: float | None = None
    diversity_prompts: float | None = None


def mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.fmean(values) if values else None


def evidence(scores, copy_bits: int) -> Evidence:
    """The epoch's figures from its sample_metrics.EpochScores."""
    samples = scores.samples
    with_face = [s for s in samples if s.face]
    copies = [s.copy_bits for s in samples if s.copy_bits is not None]
    differences = [s.adherence - s.adherence_shuffled for s in samples
                   if s.adherence is not None and s.adherence_shuffled is not None]
    return Evidence(
        adherence=mean(s.adherence for s in samples),
        adherence_unseen=mean(s.adherence for s in samples if s.unseen),
        adherence_validation=mean(s.adherence for s in samples if not s.unseen),
        adherence_shuffled=mean(s.adherence_shuffled for s in samples if s.adherence is not None),
        adherence_margin=mean(differences),
        adherence_margin_error=(statistics.stdev(differences) / len(differences) ** 0.5
                                if len(differences) > 1 else None),
        face_share=len(with_face) / len(samples) if samples else None,
        match_share=sum(bool(s.face_match) for s in with_face) / len(with_face) if with_face else None,
        face_distance=mean(s.face_distance for s in with_face),
        sharper_share=sum(s.sharper_than_training for s in samples) / len(samples) if samples else None,
        blown_share=sum(s.blown_beyond_training for s in samples) / len(samples) if samples else None,
        copied_share=sum(b <= copy_bits for b in copies) / len(copies) if copies else None,
        copy_median=statistics.median(copies) if copies else None,
        diversity_seeds=scores.diversity_seeds,
        diversity_prompts=scores.diversity_prompts,
    )


def change(value: float | None, reference: float | None) -> float | None:
    """(value - reference) / |reference|: 0 is as good as epoch 0, -0.1 is 10 % worse."""
    if value is None or reference is None or reference == 0:
        return None
    return (value - reference) / abs(reference)


def ratio(value: float | None, reference: float | None) -> float | None:
    return value / reference if value is not None and reference else None


def graded(value: float | None, high: float, moderate: float) -> int | None:
    """0, 1, 2 for the three levels (None: no value)."""
    if value is None:
        return None
    return 0 if value >= high else 1 if value >= moderate else 2


def worst_level(criterion: str, *grades: int | None) -> str:
    """The criterion's level of the worst of its graded figures ("n/a" when none could be measured)."""
    known = [g for g in grades if g is not None]
    return LEVELS[criterion][max(known)] if known else "n/a"


def at_chance(base: Evidence) -> str | None:
    """Words when epoch 0's adherence on its own prompts is not above its adherence on shuffled prompts
    (the mean paired difference within two standard errors of 0): the base model does not follow prompts
    here, so adherence cannot tell epochs apart (the demo's random model). None: above chance, or unknown."""
    if base.adherence_margin is None or base.adherence_margin_error is None:
        return None
    if base.adherence_margin > 2 * base.adherence_margin_error:
        return None
    return (f"n/a: the base model does not follow prompts here (epoch 0: {base.adherence:.4g} on its own prompts, "
            f"{base.adherence_shuffled:.4g} on shuffled ones)")


def prompt_accuracy(e: Evidence, base: Evidence) -> tuple[str, str]:
    chance = at_chance(base)
    adherence = change(e.adherence, base.adherence) if not chance else None
    sensitivity = ratio(e.diversity_prompts, base.diversity_prompts)
    words = [f"adherence {adherence:+.1%} vs epoch 0" if adherence is not None else
             f"adherence {chance or 'n/a'}",
             f"prompt sensitivity {sensitivity:.2f}x epoch 0's" if sensitivity is not None else "prompt sensitivity n/a"]
    return worst_level("prompt_accuracy", graded(adherence, ADHERENCE_HIGH, ADHERENCE_MODERATE),
                       graded(sensitivity, SENSITIVITY_HIGH, SENSITIVITY_MODERATE)), "; ".join(words)


def percent(share: float | None) -> str:
    return "n/a" if share is None else f"{share:.0%}"


def flagged(share: float | None, base: float | None) -> bool:
    """A flag: at least FLAGGED of the samples, and more than epoch 0 (n/a never flags)."""
    return share is not None and share >= FLAGGED and (base is None or share > base)


def visual_fidelity(e: Evidence, base: Evidence) -> tuple[str, str]:
    """Over-sharpened or burned where flagged; else the identity's level, "n/a" where no face was measured
    (sharpness and highlights in bounds say nothing of resemblance)."""
    words = [f"{percent(e.sharper_share)} sharper than the training photos (epoch 0: {percent(base.sharper_share)})",
             f"{percent(e.blown_share)} with more blown highlights (epoch 0: {percent(base.blown_share)})"]
    if e.match_share is not None:
        words.insert(0, f"faces in {e.face_share:.0%}, {e.match_share:.0%} of them match "
                        f"(mean distance {e.face_distance:.2f})")
    else:
        words.insert(0, "identity n/a (no face measured)")
    text = "; ".join(words)
    if flagged(e.sharper_share, base.sharper_share):
        return "over-sharpened", text
    if flagged(e.blown_share, base.blown_share):
        return "burned", text
    if e.match_share is None:
        return "n/a", text
    if e.match_share >= MATCH_EXCELLENT and e.face_share >= FACES_EXCELLENT:
        return "excellent", text
    return ("good" if e.match_share >= MATCH_GOOD else "poor"), text


def generalisation(e: Evidence, base: Evidence) -> tuple[str, str]:
    chance = at_chance(base)
    unseen, seen = change(e.adherence_unseen, base.adherence_unseen), change(e.adherence_validation,
                                                                              base.adherence_validation)
    gap = unseen - seen if unseen is not None and seen is not None and not chance else None
    seeds = ratio(e.diversity_seeds, base.diversity_seeds)
    words = [f"unseen prompts {gap:+.1%} against the validation captions" if gap is not None else
             f"unseen prompts {chance or 'n/a'}",
             f"diversity across seeds {seeds:.2f}x epoch 0's" if seeds is not None else "diversity across seeds n/a"]
    return worst_level("generalisation", graded(gap, GAP_HIGH, GAP_MODERATE),
                       graded(seeds, DIVERSITY_HIGH, DIVERSITY_MODERATE)), "; ".join(words)


def overfit_signs(e: Evidence, base: Evidence, loss_past_minimum: str | None) -> tuple[str, str]:
    """Present: many copies, collapsed diversity or two slight signs; slight: one; none: measured and
    clean; "n/a" when neither copies nor diversity across seeds could be measured and the loss shows
    nothing."""
    strong, weak, unmeasured = [], [], []
    if e.copied_share is None:
        unmeasured.append("copies n/a (no copy distances)")
    elif e.copied_share >= COPIED_PRESENT:
        strong.append(f"{e.copied_share:.0%} of samples copy a training photo's composition")
    elif e.copied_share > 0:
        weak.append(f"{e.copied_share:.0%} of samples copy a training photo's composition")
    trend = ratio(e.copy_median, base.copy_median)
    if trend is not None and trend < COPY_TREND:
        weak.append(f"median distance to the nearest training photo {e.copy_median:g} bits "
                    f"(epoch 0: {base.copy_median:g})")
    seeds = ratio(e.diversity_seeds, base.diversity_seeds)
    if seeds is None:
        unmeasured.append("diversity across seeds n/a (one seed, or no epoch 0)")
    elif seeds < DIVERSITY_COLLAPSE:
        strong.append(f"diversity across seeds collapsed to {seeds:.2f}x epoch 0's")
    if loss_past_minimum:
        weak.append(loss_past_minimum)
    if strong or weak:
        return ("present" if strong or len(weak) >= 2 else "slight"), "; ".join(strong + weak + unmeasured)
    if e.copied_share is None and seeds is None:
        return "n/a", "; ".join(unmeasured) + "; the validation loss alone shows nothing"
    clean = ["no copies" if e.copied_share is not None else "", "diversity kept" if seeds is not None else "",
             "validation loss not past its minimum"]
    return "none", "; ".join([w for w in clean if w] + unmeasured)


# --- review files -------------------------------------------------------------------------------

@dataclass
class Review:
    levels: dict[str, str] = field(default_factory=dict)
    note: str = ""
    reject: bool = False


def review_files(folder: Path) -> dict[int, Path]:
    """The review files in `folder` (<dataset>/review/<run>/), by epoch; any other file is an error."""
    files = {}
    for path in sorted(folder.glob("*")) if folder.is_dir() else []:
        match = re.fullmatch(r"epoch-(\d+)\.yaml", path.name)
        if path.name.startswith(".") or path.is_dir():
            continue
        if not match:
            raise ConfigError(f"{path}: a review file is named epoch-<eee>.yaml after the epoch it reviews "
                              "(epoch-004.yaml)")
        files[int(match.group(1))] = path
    return files


def read_review(path: Path) -> Review:
    """A user's review of one epoch; a wrong key or level is an error naming the file."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    return review_from(data, str(path))


def review_from(data, where: str) -> Review:
    """A review from its mapping (a review file's content); `where` names it in errors."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected keys such as 'visual_fidelity: good' or 'reject: true'")
    review = Review()
    for key, value in data.items():
        if key not in REVIEW_KEYS:
            raise ConfigError(f"{where}: unknown key {key!r}; the keys are {', '.join(REVIEW_KEYS)}")
        if key == "reject":
            if not isinstance(value, bool):
                raise ConfigError(f"{where}: reject must be true or false, not {value!r}")
            review.reject = value
        elif key == "note":
            review.note = str(value)
        elif value not in LEVELS[key]:
            raise ConfigError(f"{where}: {key}: {value!r} is not a level; use one of {', '.join(LEVELS[key])}")
        else:
            review.levels[key] = value
    return review


# --- the scorecard ------------------------------------------------------------------------------

@dataclass
class Row:
    epoch: int
    levels: dict[str, str]
    evidence: dict[str, str]
    reviewed: list[str] = field(default_factory=list)   # the criteria the user set
    note: str = ""
    reject: bool = False
    val_loss: float | None = None
    val_loss_smoothed: float | None = None
    val_per_timestep: dict[str, float] = field(default_factory=dict)
    train_loss_smoothed: float | None = None
    method: str = ""          # how adherence and identity were measured, or why they were not


def apply_review(row: Row, review: Review) -> None:
    """The user's word over the measured levels (the measurement stays in the evidence)."""
    row.note, row.reject = review.note, review.reject
    for key, level in review.levels.items():
        row.evidence[key] = f"set by the review (measured: {row.levels[key]}; {row.evidence[key]})"
        row.levels[key] = level
        row.reviewed.append(key)


def score_rows(scores: dict[int, object], copy_bits: int, val_per_epoch: dict[int, dict[str, float]],
               train_smoothed: dict[int, float], minimum: Minimum, reviews: dict[int, Review]) -> list[Row]:
    """One row per sampled epoch (epoch 0, the base model, is the reference and has no levels);
    `minimum`: the validation curve's (loss_trend.minimum), for the overfit sign of a loss past it."""
    val = {e: v["mean"] for e, v in val_per_epoch.items() if "mean" in v}
    base = evidence(scores[0], copy_bits) if 0 in scores else Evidence()
    rows = []
    for epoch in sorted(e for e in scores if e > 0):
        e = evidence(scores[epoch], copy_bits)
        cells = {"prompt_accuracy": prompt_accuracy(e, base), "visual_fidelity": visual_fidelity(e, base),
                 "generalisation": generalisation(e, base),
                 "overfit_signs": overfit_signs(e, base, minimum.past(epoch))}
        row = Row(epoch, {k: v[0] for k, v in cells.items()}, {k: v[1] for k, v in cells.items()},
                  val_loss=val.get(epoch), val_loss_smoothed=minimum.smoothed.get(epoch),
                  val_per_timestep={k: v for k, v in val_per_epoch.get(epoch, {}).items() if k != "mean"},
                  train_loss_smoothed=train_smoothed.get(epoch),
                  method=f"adherence: {scores[epoch].adherence_method}; identity: {scores[epoch].identity_method}")
        apply_review(row, reviews.get(epoch, Review()))
        rows.append(row)
    return rows


COLUMNS = (["epoch"] + [c for k in CRITERIA for c in (k, f"{k}_evidence")] +
           ["reviewed", "reject", "note", "val_loss", "val_loss_smoothed", "val_loss_per_timestep",
            "train_loss_smoothed", "method"])


def number(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"


def write_scorecard(path: Path, rows: list[Row]) -> None:
    atomic.write_tsv(path, COLUMNS, (
        [r.epoch] + [c for k in CRITERIA for c in (r.levels[k], r.evidence[k])] +
        [",".join(r.reviewed), "yes" if r.reject else "", r.note, number(r.val_loss), number(r.val_loss_smoothed),
         " ".join(f"{k}:{v:.4g}" for k, v in r.val_per_timestep.items()), number(r.train_loss_smoothed), r.method]
        for r in rows))


def read_scorecard(path: Path) -> list[Row]:
    rows = []
    with open(path, newline="", encoding="utf-8") as f:
        for d in csv.DictReader(f, delimiter="\t"):
            value = lambda k: float(d[k]) if d[k] else None  # noqa: E731
            rows.append(Row(int(d["epoch"]), {k: d[k] for k in CRITERIA}, {k: d[f"{k}_evidence"] for k in CRITERIA},
                            [k for k in d["reviewed"].split(",") if k], d["note"], d["reject"] == "yes",
                            value("val_loss"), value("val_loss_smoothed"),
                            {k: float(v) for k, v in (p.split(":") for p in d["val_loss_per_timestep"].split())},
                            value("train_loss_smoothed"), d.get("method", "")))
    return rows
