"""Group the near-duplicate photos (near_duplicates.py finds them) and keep the best of each group.

Every file of the dataset gets one row in dedup.tsv: kept (with the other kept shots of the same
scene in `similar_to`), a duplicate of the kept image of its group (why, and why that one was kept),
or rejected with the reason.
"""

from __future__ import annotations

import csv
import math
from dataclasses import astuple, dataclass, fields
from pathlib import Path

from charlora import atomic

HASH_METHODS = {"phash": "PHash", "dhash": "DHash", "whash": "WHash", "ahash": "AHash"}
KEPT, DUPLICATE, REJECTED = "kept", "duplicate", "rejected"
SIMILAR_SEPARATOR = " / "  # ids are file names without the extension: they cannot hold "/"
COPY, MIRROR, SIMILAR = "copy", "mirror", "similar"  # how two photos relate (near_duplicates.py)
TONE_STEP = 24  # tone levels are compared in steps of 24 of 768 (3 %): a recompression's noise adds a few
CLIP_STEP = 0.0005  # clipping is compared in steps of 0.05 % of the pixels
GAP_STEP = 0.03  # unused levels in steps of 3 % of the range: a 15 % brightening leaves about 13 %
DETAIL_STEP = 0.05  # sharpness for its contrast in steps of 5 %: closer is equal (resampling noise)


@dataclass
class DedupRow:
    file: str
    id: str
    status: str  # kept | duplicate | rejected
    duplicate_of: str = ""
    distance: str = ""  # Hamming distance between the hashes of the pair that made it a duplicate
    reason: str = ""
    similar_to: str = ""  # kept photos that are a second capture of the same scene, joined by " / "


MIN_ROTATION = 0.5  # degrees: a copy turned at least this much is resampled (the kept copy: rotation_fill)


@dataclass(frozen=True)
class Relation:
    """Two photos found related by near_duplicates.compare."""

    a: str
    b: str
    kind: str  # copy | mirror | similar
    hash_distance: int
    evidence: str  # what was measured, in words
    differing_region: float = 0.0  # the largest region where the aligned pictures differ (share of the overlap)
    rotation: float = 0.0  # degrees b is turned against a (the alignment's)
    fill_only: str = ""  # a or b when that photo is turned against the other and adds only flat fill (its
    # rotation's corner wedges, a box around it) beyond the other's frame, or has such a fill in its corners
    # and the other not: the rotated, processed copy
    same_view: bool = False  # upright copies of one view at one scale (near_duplicates.same_view): how much
    # their border trim left says nothing of which is the original, so content size does not decide


def hasher(method: str):
    """The imagededup hashing object for a config name (imports torch: call only where needed)."""
    from imagededup import methods

    if method not in HASH_METHODS:
        raise ValueError(f"dedup.method {method!r} is not one of {', '.join(HASH_METHODS)}")
    return getattr(methods, HASH_METHODS[method])(verbose=False)


def content_area(audit: dict) -> int:
    """The photo's real image content in pixels: inside its plain borders (audit's content_size)."""
    width, height = audit.get("content_size") or (audit["width"], audit["height"])
    return width * height


def _criteria(audit: dict, content: int | None = None) -> list[tuple[str, float, str]]:
    """What makes the copy of a group worth keeping, in order, each as (what, value: higher is better,
    the value in words): the most real image content (plain borders cut away before counting pixels),
    then the least processed (lossless over JPEG, then the higher estimated JPEG quality, then the
    most tone levels: a darkening or a lowered contrast merges levels; then the fewest unused levels
    within its range: a brightening or a raised contrast spreads levels apart; then the least
    clipping: they clip highlights and shadows too; then no added borders), then the sharpest for its
    contrast (the Laplacian's variance over the grey variance, in 5 % steps: a raised contrast alone
    does not make a copy sharper). `content`: the content to count instead of the photo's own (the
    largest of the copies it shows one view with: group_duplicates)."""
    width, height = audit.get("content_size") or (audit["width"], audit["height"])
    quality = audit.get("jpeg_quality")
    levels = audit.get("tone_levels", 0)
    clipped = audit.get("highlight_clip", 0.0) + audit.get("shadow_clip", 0.0)
    gaps = audit.get("level_gaps", 0.0)
    contrast = audit.get("contrast")
    detail = audit["sharpness"] / max(contrast, 1.0) ** 2 if contrast is not None else audit["sharpness"]
    return [
        ("more image content", content or content_area(audit), f"{width}x{height} without borders"),
        (
            "lossless",
            0 if quality is not None else 1,
            "JPEG" if quality is not None else audit.get("source_format", "lossless"),
        ),
        (
            "a higher JPEG quality",
            101 if quality is None else quality,
            "lossless" if quality is None else f"quality {quality}",
        ),
        ("more tone levels", levels // TONE_STEP, f"{levels} of 768 tone levels"),
        ("fewer gaps between tone levels", -round(gaps / GAP_STEP), f"{gaps:.0%} of its levels' range unused"),
        ("less clipping", -round(clipped / CLIP_STEP), f"{clipped:.2%} of pixels clipped"),
        (
            "no added borders",
            int([width, height] == [audit["width"], audit["height"]]),
            "no borders"
            if [width, height] == [audit["width"], audit["height"]]
            else f"borders around {width}x{height}",
        ),
        (
            "sharper for its contrast",
            round(math.log(max(detail, 1e-9)) / math.log(1 + DETAIL_STEP)),
            f"sharpness {audit['sharpness']:.0f} at contrast {contrast:.0f}"
            if contrast is not None
            else f"sharpness {audit['sharpness']:.0f}",
        ),
    ]


def _quality_key(audit: dict, content: int | None = None):
    """Sort key: the best image of a group comes first (`_criteria`, then by id)."""
    return (*(-value for _, value, _ in _criteria(audit, content)), audit["id"])


def why_kept(kept: dict, other: dict, same_view: bool = False) -> str | None:
    """Why `kept` (an audit record) was kept over `other`: the first criterion that tells them apart
    (None: none does, and the first name is kept); content size not, where they show one view."""
    for (what, value, words), (_, other_value, other_words) in zip(_criteria(kept), _criteria(other)):
        if value != other_value and not (same_view and what == "more image content"):
            return f"{what} ({words} vs {other_words})"
    return None


def turned_words(relation: Relation, file: str, other_file: str) -> str:
    """Why a turned copy with fill lost (`file`: it; `other_file`: the copy it was measured against)."""
    if abs(relation.rotation) < MIN_ROTATION:  # turned alike: only its corners tell
        return (
            f"no corner fill ({file} has a flat fill in its corners, a rotation's wedges or a box, "
            f"and {other_file} not)"
        )
    return (
        f"no rotation ({file} is turned {abs(relation.rotation):.1f} deg against {other_file} "
        "and adds only a flat fill beyond its frame)"
    )


def duplicate_reason(kind: str, kept_file: str, via: str, why: str | None) -> str:
    """What a duplicate's row says: what it is of the kept photo, and what decided which one stays."""
    what = "mirror image" if kind == MIRROR else "near-duplicate"
    if why is not None:
        return f"{what} of {kept_file}{via}, kept for {why}"
    if kind == MIRROR:
        return f"mirror image{via}, otherwise equal: kept {kept_file} (the first name)"
    return f"near-duplicate of {kept_file}{via}, equal by every measure: kept {kept_file} (the first name)"


def group_duplicates(
    relations: list[Relation], audits: dict[str, dict], mirrors: str
) -> dict[str, tuple[str, Relation]]:
    """Map each duplicate id to (the id kept in its group, the relation that put it there).

    Groups are joined by the copy relations (and the mirror relations unless `mirrors` is "keep"),
    the closest first, so A~B and B~C put A, B and C in one group even when A and C were not
    compared; but never two photos found to be second captures of one scene (a crop of one that
    leaves out where they differ is a copy of both: it joins the closer). Each group keeps its
    best image: first one that no relation in the group shows turned with only fill beyond another
    copy's frame (Relation.fill_only: a rotated copy's wedges or box are fill, not picture), then
    `_quality_key`, where copies that show one view (Relation.same_view: the original and its JPEG,
    or it with bars added) count the content of the largest among them, so that the format and
    the edits decide between them. A turned copy's row shows the relation that found it turned; a
    copy of the kept photo's view, a relation that shows it so.
    """
    joining = {COPY} | ({MIRROR} if mirrors == "duplicate" else set())
    apart = {frozenset((r.a, r.b)) for r in relations if r.kind == SIMILAR}
    group_of: dict[str, set[str]] = {}
    links: dict[str, list[Relation]] = {}
    for relation in sorted(
        (r for r in relations if r.kind in joining), key=lambda r: (r.differing_region, r.hash_distance, r.a, r.b)
    ):
        ga = group_of.setdefault(relation.a, {relation.a})
        gb = group_of.setdefault(relation.b, {relation.b})
        if ga is gb or any(frozenset((x, y)) in apart for x in ga for y in gb):
            continue
        ga |= gb
        for member in gb:
            group_of[member] = ga
        links.setdefault(relation.a, []).append(relation)
        links.setdefault(relation.b, []).append(relation)
    duplicates = {}
    for members in {id(g): g for g in group_of.values()}.values():
        inside = [r for r in relations if r.kind in joining and r.a in members and r.b in members]
        turned = {r.fill_only for r in inside if r.fill_only}
        view = views([r for r in inside if r.same_view])
        content = {i: max(content_area(audits[j]) for j in view.get(i, {i})) for i in members}
        best, *rest = sorted(members, key=lambda i: (i in turned, _quality_key(audits[i], content[i])))
        for other in rest:
            shown_turned = [r for r in inside if r.fill_only == other] if best not in turned else []
            direct = [r for r in links[other] if best in (r.a, r.b)]
            in_best_view = best in view.get(other, ())
            one_view = [r for r in direct + inside if r.same_view and other in (r.a, r.b)] if in_best_view else []
            duplicates[other] = (best, (shown_turned or one_view or direct or links[other])[0])
    return dict(sorted(duplicates.items()))


def views(relations: list[Relation]) -> dict[str, set[str]]:
    """Photo id -> the photos that show one view with it (joined by `relations`, itself included)."""
    view: dict[str, set[str]] = {}
    for relation in relations:
        joined = view.get(relation.a, {relation.a}) | view.get(relation.b, {relation.b})
        for member in joined:
            view[member] = joined
    return view


def similar_shots(relations: list[Relation], duplicates: dict[str, tuple[str, Relation]]) -> dict[str, list[str]]:
    """Kept id -> the other kept photos that are a second capture of its scene (relation "similar",
    each side replaced by the copy kept in its group)."""

    def kept(i):
        return duplicates[i][0] if i in duplicates else i

    similar: dict[str, set[str]] = {}
    for relation in relations:
        a, b = kept(relation.a), kept(relation.b)
        if relation.kind == SIMILAR and a != b:
            similar.setdefault(a, set()).add(b)
            similar.setdefault(b, set()).add(a)
    return {i: sorted(others) for i, others in similar.items()}


def build_table(
    audits: dict[str, dict],
    unlisted: dict[str, str],
    duplicates: dict[str, tuple[str, Relation]],
    similar: dict[str, list[str]] | None = None,
) -> list[DedupRow]:
    """One row per dataset file, sorted by file name. `unlisted`: files that got no id (name -> reason)."""
    similar = similar or {}
    rows = [DedupRow(file=name, id="", status=REJECTED, reason=reason) for name, reason in unlisted.items()]
    for image_id, audit in audits.items():
        if audit["status"] != "ok":
            rows.append(DedupRow(audit["file"], image_id, REJECTED, reason=audit["reason"]))
        elif image_id in duplicates:
            kept, relation = duplicates[image_id]
            partner = relation.b if relation.a == image_id else relation.a  # the photo it was measured against
            via = "" if kept in (relation.a, relation.b) else f" (through {partner})"
            if relation.fill_only == image_id:
                why = turned_words(relation, audit["file"], audits[partner]["file"])
            else:
                why = why_kept(audits[kept], audit, relation.same_view)
            rows.append(
                DedupRow(
                    audit["file"],
                    image_id,
                    DUPLICATE,
                    kept,
                    str(relation.hash_distance),
                    f"{duplicate_reason(relation.kind, audits[kept]['file'], via, why)}; {relation.evidence}",
                )
            )
        else:
            rows.append(
                DedupRow(audit["file"], image_id, KEPT, similar_to=SIMILAR_SEPARATOR.join(similar.get(image_id, [])))
            )
    return sorted(rows, key=lambda r: r.file)


def write_table(rows: list[DedupRow], path: str | Path) -> None:
    atomic.write_tsv(path, [f.name for f in fields(DedupRow)], (astuple(r) for r in rows))


def read_table(path: str | Path) -> list[DedupRow]:
    with open(path, newline="", encoding="utf-8") as fh:
        return [DedupRow(**row) for row in csv.DictReader(fh, delimiter="\t")]


def rejection_message(rows: list[DedupRow], strays: dict[str, str] | None = None) -> str | None:
    """The text `strict: true` fails with: every rejected file and every caption or mask no photo uses."""
    rejected = [r for r in rows if r.status == REJECTED]
    strays = strays or {}
    if not rejected and not strays:
        return None
    lines = [f"  {r.file}: {r.reason}" for r in rejected] + [f"  {where}: {reason}" for where, reason in strays.items()]
    return (
        f"{len(rejected)} dataset file(s) rejected and {len(strays)} caption/mask file(s) unused "
        "(strict: true turns these into errors):\n" + "\n".join(lines)
    )
