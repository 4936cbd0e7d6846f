"""The guide's scoring matrix, measured: one row of four levels per sampled epoch. Light imports only.

Each sampled epoch gets the guide's four criteria, each a level derived from the sample measurements
(sample_metrics.py), compared with epoch 0 (the base model, same prompts and seeds):

- prompt accuracy (high / moderate / low): adherence change and prompt sensitivity against epoch 0;
- visual fidelity (excellent / good / poor / over-sharpened / burned): identity (faces that match the
  training faces; in the demo on the miniature base, samples that show mira's trait); faces kept;
  sharpness (both ways) and blown highlights on the subject against the training photos;
- generalisation (high / moderate / poor): adherence on unseen (intent) prompts against the validation
  captions; phrasing variants against their originals; diversity across seeds;
- overfit signs (none / slight / present): copies (two measures) against epoch 0, their trend, training
  captions that bring back their own photo, diversity collapse, validation loss past its minimum.

The thresholds are the constants below (docs/validation.md, "Scorecard and selection"). A flag
(over-sharpened, softer, burned, faces lost, copies present) needs both a share of the samples (FLAGGED
of them beyond the training photos) and a change against epoch 0 that chance does not explain: each
sample is paired with its epoch-0 twin (same prompt and seed) and the pairs that moved the flag's way
must be significantly more than those that moved back (a one-sided sign test at SIGNIFICANCE: of 40
pairs, 26 or more). An epoch that changed nothing is flagged at most 4 % of the time. Without twins the
share must exceed epoch 0's (with no epoch 0 at all, the share alone decides). A user's review file
(`<dataset>/review/<run>/epoch-<eee>.yaml`) sets any of the four cells, adds a note, or rejects the
epoch; its word wins over the measurement.

The selection reads these rows: selection.py.
"""

from __future__ import annotations

import csv
import math
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from charlora import atomic, validate_prompts
from charlora.config import ConfigError
from charlora.loss_trend import Minimum

LEVELS = {
    "prompt_accuracy": ["high", "moderate", "low"],
    "visual_fidelity": ["excellent", "good", "poor", "over-sharpened", "burned"],
    "generalisation": ["high", "moderate", "poor"],
    "overfit_signs": ["none", "slight", "present"],
}
CRITERIA = list(LEVELS)
RESEMBLANCE_LEVELS = LEVELS["visual_fidelity"][:3]  # the identity's own level (resemblance), without the flags
REVIEW_KEYS = CRITERIA + ["note", "reject"]

# Thresholds (each a share or a ratio against epoch 0)
ADHERENCE_HIGH, ADHERENCE_MODERATE = -0.05, -0.15  # relative change of the mean adherence
SENSITIVITY_HIGH, SENSITIVITY_MODERATE = 0.8, 0.6  # prompt sensitivity / epoch 0's
MATCH_EXCELLENT, MATCH_GOOD = 0.8, 0.5  # share of faces that match the training faces
FACES_EXCELLENT = 0.5  # share of samples with a face, for "excellent"
FLAGGED = 0.25  # share of samples sharper / softer / more blown than training
SIGNIFICANCE = 0.05  # one-sided sign test against the epoch-0 twins
GAP_HIGH, GAP_MODERATE = -0.05, -0.15  # unseen minus validation-caption adherence change
DIVERSITY_HIGH, DIVERSITY_MODERATE = 0.8, 0.6  # diversity across seeds / epoch 0's
DIVERSITY_COLLAPSE = 0.5  # below this: overfit sign "present"
COPIED_PRESENT = 0.25  # share of samples that copy a training photo
COPY_SSIM = 0.6  # subject SSIM of a copy (copies 0.82+, unrelated 0.48-)
COPY_TREND = 0.75  # median copy distance / epoch 0's: below is a sign


def sign_test(more: int, fewer: int) -> float:
    """The chance of `more` or more of `more + fewer` pairs moving one way when either way is equally
    likely (one-sided; 1.0 for no pairs)."""
    n = more + fewer
    return sum(math.comb(n, k) for k in range(more, n + 1)) / 2**n


@dataclass
class Pairs:
    """An epoch's samples against their epoch-0 twins (same prompt, same seed): how many went up and how
    many went down in one measure (ties left out)."""

    up: int = 0
    down: int = 0

    def rose(self) -> bool:
        return sign_test(self.up, self.down) < SIGNIFICANCE

    def fell(self) -> bool:
        return sign_test(self.down, self.up) < SIGNIFICANCE


@dataclass
class Evidence:
    """An epoch's figures behind its levels (None: not measurable, with the reason in the method)."""

    adherence: float | None = None
    adherence_unseen: float | None = None
    adherence_validation: float | None = None
    adherence_by_prompt: dict[str, float] = field(default_factory=dict)  # mean over seeds, by prompt name
    variants: dict[str, str] = field(default_factory=dict)  # variant prompt -> its original
    adherence_shuffled: float | None = None  # the same samples against other prompts: chance
    adherence_margin: float | None = None  # mean of (own - shuffled) over the samples
    adherence_margin_error: float | None = None  # its standard error
    face_share: float | None = None
    training_face_share: float | None = None  # the training photos' share with a face
    match_share: float | None = None
    face_distance: float | None = None
    trait_share: float | None = None  # the demo's identity: the share of the samples of her that show her trait
    sharper_share: float | None = None
    softer_share: float | None = None
    blown_share: float | None = None
    copied_share: float | None = None  # of the samples of other prompts than training captions
    copy_median: float | None = None
    memorised_share: float | None = None  # of the training captions' samples: their own photo again
    diversity_seeds: float | None = None
    diversity_prompts: float | None = None
    # against the epoch-0 twins (None: no epoch 0 to pair with)
    face_pairs: Pairs | None = None  # up: a face found where the twin had none
    sharpness_pairs: Pairs | None = None  # up: more high-frequency energy than the twin
    blown_pairs: Pairs | None = None
    copy_pairs: Pairs | None = None  # up: a copy where the twin copied nothing
    memorised_pairs: Pairs | None = None  # up: the own photo again where the twin did not draw it


def mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.fmean(values) if values else None


def is_copy(sample, copy_bits: int) -> bool:
    """Both measures agree: the hash within `copy_bits` and the subject's SSIM at COPY_SSIM or more."""
    return (
        sample.copy_bits is not None
        and sample.copy_bits <= copy_bits
        and sample.copy_ssim is not None
        and sample.copy_ssim >= COPY_SSIM
    )


def memorised(sample, copy_bits: int) -> bool:
    """A training caption's sample that is a copy of that very photo."""
    photo = validate_prompts.training_photo(sample.origin)
    return photo is not None and is_copy(sample, copy_bits) and sample.nearest.startswith(f"{photo} (")


def share(samples, flag) -> float | None:
    return sum(bool(flag(s)) for s in samples) / len(samples) if samples else None


def evidence(scores, copy_bits: int, base_scores=None) -> Evidence:
    """The epoch's figures from its sample_metrics.EpochScores; `base_scores`, epoch 0's, pairs each sample
    with its twin."""
    samples = scores.samples
    with_face = [s for s in samples if s.face]
    probe = [s for s in samples if validate_prompts.training_photo(s.origin) is not None]
    others = [s for s in samples if validate_prompts.training_photo(s.origin) is None]
    copies = [s.copy_bits for s in others if s.copy_bits is not None]
    twins = {(s.prompt, s.seed): s for s in base_scores.samples} if base_scores is not None else {}

    def paired(value, among=samples) -> Pairs | None:
        pairs = [(s, twins[s.prompt, s.seed]) for s in among if (s.prompt, s.seed) in twins]
        if not pairs:
            return None
        return Pairs(sum(value(s) > value(t) for s, t in pairs), sum(value(s) < value(t) for s, t in pairs))

    by_prompt = {}
    for s in samples:
        by_prompt.setdefault(s.prompt, []).append(s.adherence)

    differences = [
        s.adherence - s.adherence_shuffled
        for s in samples
        if s.adherence is not None and s.adherence_shuffled is not None
    ]
    return Evidence(
        adherence=mean(s.adherence for s in samples),
        adherence_unseen=mean(s.adherence for s in samples if s.unseen),
        adherence_validation=mean(
            s.adherence for s in samples if s.origin.startswith(validate_prompts.VALIDATION_PHOTO)
        ),
        adherence_by_prompt={p: m for p, values in by_prompt.items() if (m := mean(values)) is not None},
        variants={
            s.prompt: validate_prompts.original(s.origin) for s in samples if validate_prompts.original(s.origin)
        },
        adherence_shuffled=mean(s.adherence_shuffled for s in samples if s.adherence is not None),
        adherence_margin=mean(differences),
        adherence_margin_error=(
            statistics.stdev(differences) / len(differences) ** 0.5 if len(differences) > 1 else None
        ),
        face_share=len(with_face) / len(samples) if samples else None,
        training_face_share=scores.training_face_share,
        match_share=sum(bool(s.face_match) for s in with_face) / len(with_face) if with_face else None,
        face_distance=mean(s.face_distance for s in with_face),
        trait_share=share([s for s in samples if s.trait_shown is not None], lambda s: s.trait_shown),
        sharper_share=share(samples, lambda s: s.sharper_than_training),
        softer_share=share(samples, lambda s: s.softer_than_training),
        blown_share=share(samples, lambda s: s.blown_beyond_training),
        copied_share=share([s for s in others if s.copy_bits is not None], lambda s: is_copy(s, copy_bits)),
        memorised_share=share(probe, lambda s: memorised(s, copy_bits)),
        copy_median=statistics.median(copies) if copies else None,
        diversity_seeds=scores.diversity_seeds,
        diversity_prompts=scores.diversity_prompts,
        face_pairs=paired(lambda s: int(s.face)),
        sharpness_pairs=paired(lambda s: s.high_frequency),
        blown_pairs=paired(lambda s: s.blown),
        copy_pairs=paired(lambda s: int(is_copy(s, copy_bits)), others),
        memorised_pairs=paired(lambda s: int(memorised(s, copy_bits)), probe),
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
    return (
        f"n/a: the base model does not follow prompts here (epoch 0: {base.adherence:.4g} on its own prompts, "
        f"{base.adherence_shuffled:.4g} on shuffled ones)"
    )


def prompt_accuracy(e: Evidence, base: Evidence) -> tuple[str, str]:
    chance = at_chance(base)
    adherence = change(e.adherence, base.adherence) if not chance else None
    sensitivity = ratio(e.diversity_prompts, base.diversity_prompts)
    words = [
        f"adherence {adherence:+.1%} vs epoch 0" if adherence is not None else f"adherence {chance or 'n/a'}",
        f"prompt sensitivity {sensitivity:.2f}x epoch 0's" if sensitivity is not None else "prompt sensitivity n/a",
    ]
    return worst_level(
        "prompt_accuracy",
        graded(adherence, ADHERENCE_HIGH, ADHERENCE_MODERATE),
        graded(sensitivity, SENSITIVITY_HIGH, SENSITIVITY_MODERATE),
    ), "; ".join(words)


def percent(share: float | None) -> str:
    return "n/a" if share is None else f"{share:.0%}"


def flagged(
    share: float | None, base: float | None, pairs: Pairs | None, rising: bool = True, least: float = FLAGGED
) -> bool:
    """A flag: at least `least` of the samples, and the pairs with epoch 0 moved that way more than chance
    explains (`rising`: up; else down); without pairs, more than epoch 0's share. n/a never flags."""
    if share is None or share < least:
        return False
    if pairs is not None:
        return pairs.rose() if rising else pairs.fell()
    return base is None or share > base


def faces_lost(e: Evidence, base: Evidence) -> bool:
    """Fewer faces than the training photos show and significantly fewer than epoch 0 drew for the same
    prompts and seeds: the character's face is not being learnt (or is being lost)."""
    if e.face_share is None or not e.training_face_share or e.face_share >= e.training_face_share:
        return False
    if e.face_pairs is not None:
        return e.face_pairs.fell()
    return base.face_share is not None and e.face_share < base.face_share


def resemblance_grade(e: Evidence) -> int | None:
    """The identity's own grade, 0 (excellent), 1 (good) or 2 (poor), None where it was not measured: the
    share of faces that match the training faces (excellent only where faces were found in half the
    samples or more), or on the demo's miniature base the share of her samples that show her trait (her
    trait shown is the demo's match: the same shares make the levels)."""
    if e.trait_share is not None:
        return graded(e.trait_share, MATCH_EXCELLENT, MATCH_GOOD)
    if e.match_share is None:
        return None
    if e.match_share >= MATCH_EXCELLENT and e.face_share >= FACES_EXCELLENT:
        return 0
    return 1 if e.match_share >= MATCH_GOOD else 2


def resemblance(e: Evidence) -> str:
    """The identity's own level (visual fidelity's excellent, good or poor; "n/a" where not measured). Visual
    fidelity is the worst of it and the softness and faces-lost flags, so a flag can hide it: the selection
    reads it to tell apart rows whose levels are the same (selection.Judge.standing)."""
    return worst_level("visual_fidelity", resemblance_grade(e))


def visual_fidelity(e: Evidence, base: Evidence) -> tuple[str, str]:
    """Over-sharpened or burned where flagged; else the worst of the identity's level and "poor" for samples
    softer than the training photos or for faces lost; "n/a" where none of these was measured or found
    (sharpness and highlights in bounds say nothing of resemblance)."""
    if e.trait_share is not None:
        identity = f"her trait in {e.trait_share:.0%} of the samples of her (epoch 0: {percent(base.trait_share)})"
    elif e.match_share is not None:
        identity = (
            f"faces in {e.face_share:.0%}, {e.match_share:.0%} of them match (mean distance {e.face_distance:.2f})"
        )
    else:
        identity = "identity n/a (no face measured)"
    words = [identity]
    if e.training_face_share:
        words.append(
            f"faces in {percent(e.face_share)} of samples (training photos: {e.training_face_share:.0%}, "
            f"epoch 0: {percent(base.face_share)})"
        )
    words += [
        f"{percent(e.sharper_share)} sharper than the training photos (epoch 0: {percent(base.sharper_share)})",
        f"{percent(e.softer_share)} softer (epoch 0: {percent(base.softer_share)})",
        f"{percent(e.blown_share)} with more blown highlights on the subject (epoch 0: {percent(base.blown_share)})",
    ]
    text = "; ".join(words)
    if flagged(e.sharper_share, base.sharper_share, e.sharpness_pairs):
        return "over-sharpened", text
    if flagged(e.blown_share, base.blown_share, e.blown_pairs):
        return "burned", text
    grades = [resemblance_grade(e)]
    if flagged(e.softer_share, base.softer_share, e.sharpness_pairs, rising=False):
        grades.append(2)
        text += "; softer than the training photos" + (
            f", and than epoch 0 in {e.sharpness_pairs.down} of {e.sharpness_pairs.up + e.sharpness_pairs.down} "
            "pairs (same prompt and seed)"
            if e.sharpness_pairs is not None
            else ""
        )
    if faces_lost(e, base):
        grades.append(2)
        text += "; faces lost"
    return worst_level("visual_fidelity", *grades), text


def variant_gap(e: Evidence, base: Evidence) -> float | None:
    """The mean, over the phrasing variants, of the variant's adherence change against epoch 0 minus its
    original's: below 0 when the model follows the training words but not their synonyms (the guide's
    rigid understanding)."""
    gaps = []
    for variant, original in e.variants.items():
        moved = change(e.adherence_by_prompt.get(variant), base.adherence_by_prompt.get(variant))
        reference = change(e.adherence_by_prompt.get(original), base.adherence_by_prompt.get(original))
        if moved is not None and reference is not None:
            gaps.append(moved - reference)
    return mean(gaps)


def generalisation(e: Evidence, base: Evidence) -> tuple[str, str]:
    chance = at_chance(base)
    unseen, seen = (
        change(e.adherence_unseen, base.adherence_unseen),
        change(e.adherence_validation, base.adherence_validation),
    )
    gap = unseen - seen if unseen is not None and seen is not None and not chance else None
    rigid = variant_gap(e, base) if not chance else None
    seeds = ratio(e.diversity_seeds, base.diversity_seeds)
    if chance:
        words = [f"unseen prompts and phrasing variants {chance}"]
    else:
        words = [
            f"unseen prompts {gap:+.1%} against the validation captions" if gap is not None else "unseen prompts n/a",
            f"phrasing variants {rigid:+.1%} against their originals"
            if rigid is not None
            else "phrasing variants n/a"
            if e.variants
            else "phrasing variants n/a (none composed)",
        ]
    words.append(
        f"diversity across seeds {seeds:.2f}x epoch 0's" if seeds is not None else "diversity across seeds n/a"
    )
    return worst_level(
        "generalisation",
        graded(gap, GAP_HIGH, GAP_MODERATE),
        graded(rigid, GAP_HIGH, GAP_MODERATE),
        graded(seeds, DIVERSITY_HIGH, DIVERSITY_MODERATE),
    ), "; ".join(words)


def overfit_signs(e: Evidence, base: Evidence, loss_past_minimum: str | None) -> tuple[str, str]:
    """Present: many copies or memorised training captions (with the margin over epoch 0), collapsed
    diversity, or two slight signs; slight: one; none: measured and clean; "n/a" when neither copies nor
    diversity across seeds could be measured and the loss shows nothing."""
    strong, weak, unmeasured = [], [], []
    if e.copied_share is None:
        unmeasured.append("copies n/a (no copy distances)")
    for share, base_share, pairs, what in (
        (e.copied_share, base.copied_share, e.copy_pairs, "of samples copy a training photo"),
        (
            e.memorised_share,
            base.memorised_share,
            e.memorised_pairs,
            "of the training captions' samples repeat their own photo",
        ),
    ):
        words = f"{percent(share)} {what} (epoch 0: {percent(base_share)})"
        if share is None:
            continue
        if flagged(share, base_share, pairs, least=COPIED_PRESENT):
            strong.append(words)  # a quarter of the samples, and more than epoch 0 beyond chance
        elif share > (base_share or 0):
            weak.append(words)  # more than epoch 0
    trend = ratio(e.copy_median, base.copy_median)
    if trend is not None and trend < COPY_TREND:
        weak.append(
            f"median distance to the nearest training photo {e.copy_median:g} bits (epoch 0: {base.copy_median:g})"
        )
    seeds = ratio(e.diversity_seeds, base.diversity_seeds)
    if seeds is None:
        unmeasured.append("diversity across seeds n/a (one seed, or no epoch 0)")
    elif seeds < DIVERSITY_COLLAPSE:
        strong.append(f"diversity across seeds collapsed to {seeds:.2f}x epoch 0's")
    if loss_past_minimum:
        weak.append(loss_past_minimum)
    if strong or weak:
        return ("present" if strong or len(weak) >= 2 else "slight"), "; ".join(strong + weak + unmeasured)
    if e.copied_share is None and e.memorised_share is None and seeds is None:
        return "n/a", "; ".join(unmeasured) + "; the validation loss alone shows nothing"
    clean = [
        "no more copies than epoch 0" if e.copied_share is not None else "",
        "training captions not memorised" if e.memorised_share is not None else "",
        "diversity kept" if seeds is not None else "",
        "validation loss not past its minimum",
    ]
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
            raise ConfigError(
                f"{path}: a review file is named epoch-<eee>.yaml after the epoch it reviews (epoch-004.yaml)"
            )
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
    reviewed: list[str] = field(default_factory=list)  # the criteria the user set
    note: str = ""
    reject: bool = False
    val_loss: float | None = None
    val_loss_smoothed: float | None = None
    val_per_timestep: dict[str, float] = field(default_factory=dict)
    train_loss_smoothed: float | None = None
    method: str = ""  # how adherence and identity were measured, or why they were not
    resemblance: str = "n/a"  # the identity's own level (scorecard.resemblance), which a fidelity flag can hide


def apply_review(row: Row, review: Review) -> None:
    """The user's word over the measured levels (the measurement stays in the evidence)."""
    row.note, row.reject = review.note, review.reject
    for key, level in review.levels.items():
        row.evidence[key] = f"set by the review (measured: {row.levels[key]}; {row.evidence[key]})"
        row.levels[key] = level
        row.reviewed.append(key)


def score_rows(
    scores: dict[int, object],
    copy_bits: int,
    val_per_epoch: dict[int, dict[str, float]],
    train_smoothed: dict[int, float],
    minimum: Minimum,
    reviews: dict[int, Review],
) -> list[Row]:
    """One row per sampled epoch (epoch 0, the base model, is the reference and has no levels);
    `minimum`: the validation curve's (loss_trend.minimum), for the overfit sign of a loss past it."""
    val = {e: v["mean"] for e, v in val_per_epoch.items() if "mean" in v}
    base = evidence(scores[0], copy_bits) if 0 in scores else Evidence()
    rows = []
    for epoch in sorted(e for e in scores if e > 0):
        e = evidence(scores[epoch], copy_bits, scores.get(0))
        cells = {
            "prompt_accuracy": prompt_accuracy(e, base),
            "visual_fidelity": visual_fidelity(e, base),
            "generalisation": generalisation(e, base),
            "overfit_signs": overfit_signs(e, base, minimum.past(epoch)),
        }
        row = Row(
            epoch,
            {k: v[0] for k, v in cells.items()},
            {k: v[1] for k, v in cells.items()},
            val_loss=val.get(epoch),
            val_loss_smoothed=minimum.smoothed.get(epoch),
            val_per_timestep={k: v for k, v in val_per_epoch.get(epoch, {}).items() if k != "mean"},
            train_loss_smoothed=train_smoothed.get(epoch),
            method=f"adherence: {scores[epoch].adherence_method}; identity: {scores[epoch].identity_method}",
            resemblance=resemblance(e),
        )
        apply_review(row, reviews.get(epoch, Review()))
        rows.append(row)
    return rows


COLUMNS = (
    ["epoch"]
    + [c for k in CRITERIA for c in (k, f"{k}_evidence")]
    + [
        "reviewed",
        "reject",
        "note",
        "val_loss",
        "val_loss_smoothed",
        "val_loss_per_timestep",
        "train_loss_smoothed",
        "method",
        "resemblance",
    ]
)


def number(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"


def write_scorecard(path: Path, rows: list[Row]) -> None:
    atomic.write_tsv(
        path,
        COLUMNS,
        (
            [r.epoch]
            + [c for k in CRITERIA for c in (r.levels[k], r.evidence[k])]
            + [
                ",".join(r.reviewed),
                "yes" if r.reject else "",
                r.note,
                number(r.val_loss),
                number(r.val_loss_smoothed),
                " ".join(f"{k}:{v:.4g}" for k, v in r.val_per_timestep.items()),
                number(r.train_loss_smoothed),
                r.method,
                r.resemblance,
            ]
            for r in rows
        ),
    )


def read_scorecard(path: Path) -> list[Row]:
    rows = []
    with open(path, newline="", encoding="utf-8") as f:
        for d in csv.DictReader(f, delimiter="\t"):
            value = lambda k: float(d[k]) if d[k] else None  # noqa: E731
            rows.append(
                Row(
                    int(d["epoch"]),
                    {k: d[k] for k in CRITERIA},
                    {k: d[f"{k}_evidence"] for k in CRITERIA},
                    [k for k in d["reviewed"].split(",") if k],
                    d["note"],
                    d["reject"] == "yes",
                    value("val_loss"),
                    value("val_loss_smoothed"),
                    {k: float(v) for k, v in (p.split(":") for p in d["val_loss_per_timestep"].split())},
                    value("train_loss_smoothed"),
                    d.get("method", ""),
                    d.get("resemblance", "n/a"),
                )
            )
    return rows
