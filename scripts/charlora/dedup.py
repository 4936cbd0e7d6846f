"""Find near-duplicate photos with imagededup's perceptual hashes and keep the best of each group.

Every file of the dataset gets one row in dedup.tsv: kept, a duplicate of the kept image of its
group (with the Hamming distance between their hashes), or rejected with the reason.
"""

from __future__ import annotations

import csv
import io
import warnings
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from charlora import atomic

HASH_METHODS = {"phash": "PHash", "dhash": "DHash", "whash": "WHash", "ahash": "AHash"}
KEPT, DUPLICATE, REJECTED = "kept", "duplicate", "rejected"


@dataclass
class DedupRow:
    file: str
    id: str
    status: str  # kept | duplicate | rejected
    duplicate_of: str = ""
    distance: str = ""
    reason: str = ""


def hasher(method: str):
    """The imagededup hashing object for a config name (imports torch: call only where needed)."""
    from imagededup import methods

    if method not in HASH_METHODS:
        raise ValueError(f"dedup.method {method!r} is not one of {', '.join(HASH_METHODS)}")
    return getattr(methods, HASH_METHODS[method])(verbose=False)


def hash_images(images: dict[str, "object"], method: str) -> dict[str, str]:
    """Hash decoded RGB images (id -> PIL image) with imagededup."""
    import numpy as np

    encoder = hasher(method)
    return {image_id: encoder.encode_image(image_array=np.asarray(image)) for image_id, image in images.items()}


def _criteria(audit: dict) -> list[tuple[str, float, str]]:
    """What makes the copy of a group worth keeping, in order, each as (what, value: higher is better,
    the value in words): the most real image content (plain borders cut away before counting pixels),
    then the least processed (lossless over JPEG, then the higher estimated JPEG quality), then the
    sharpest."""
    width, height = audit.get("content_size") or (audit["width"], audit["height"])
    quality = audit.get("jpeg_quality")
    return [
        ("more image content", width * height, f"{width}x{height} without borders"),
        ("lossless", 0 if quality is not None else 1, "JPEG" if quality is not None else audit.get("source_format", "lossless")),
        ("a higher JPEG quality", 101 if quality is None else quality, "lossless" if quality is None else f"quality {quality}"),
        ("sharper", audit["sharpness"], f"sharpness {audit['sharpness']:.0f}"),
    ]


def _quality_key(audit: dict):
    """Sort key: the best image of a group comes first (`_criteria`, then by id)."""
    return (*(-value for _, value, _ in _criteria(audit)), audit["id"])


def why_kept(kept: dict, other: dict) -> str:
    """Why `kept` (an audit record) was kept over `other`: the first criterion that tells them apart."""
    for (what, value, words), (_, other_value, other_words) in zip(_criteria(kept), _criteria(other)):
        if value != other_value:
            return f"{what} ({words} vs {other_words})"
    return "equal by every measure: the first name is kept"


def group_duplicates(hashes: dict[str, str], audits: dict[str, dict], method: str, max_distance: int) -> dict[str, tuple[str, int]]:
    """Map each duplicate id to (the id kept in its group, Hamming distance between the two hashes).

    Groups are the connected components of "within max_distance", so A~B and B~C put A, B and C
    in one group even when A and C are further apart; each group keeps its best image.
    """
    encoder = hasher(method)
    with warnings.catch_warnings():  # imagededup warns that encoding workers are unused: we pass hashes
        warnings.simplefilter("ignore", RuntimeWarning)
        matches = encoder.find_duplicates(encoding_map=hashes, max_distance_threshold=max_distance,
                                          scores=True, num_dist_workers=0)
    parent = {image_id: image_id for image_id in hashes}

    def root(a):
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for a, near in sorted(matches.items()):
        for b, _distance in near:
            ra, rb = root(a), root(b)
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
    groups: dict[str, list[str]] = {}
    for image_id in sorted(hashes):
        groups.setdefault(root(image_id), []).append(image_id)
    duplicates = {}
    for members in groups.values():
        if len(members) < 2:
            continue
        best, *rest = sorted(members, key=lambda i: _quality_key(audits[i]))
        for other in rest:
            duplicates[other] = (best, int(encoder.hamming_distance(hashes[best], hashes[other])))
    return duplicates


def build_table(audits: dict[str, dict], unlisted: dict[str, str], duplicates: dict[str, tuple[str, int]]) -> list[DedupRow]:
    """One row per dataset file, sorted by file name. `unlisted`: files that got no id (name -> reason)."""
    rows = [DedupRow(file=name, id="", status=REJECTED, reason=reason) for name, reason in unlisted.items()]
    for image_id, audit in audits.items():
        if audit["status"] != "ok":
            rows.append(DedupRow(audit["file"], image_id, REJECTED, reason=audit["reason"]))
        elif image_id in duplicates:
            kept, distance = duplicates[image_id]
            rows.append(DedupRow(audit["file"], image_id, DUPLICATE, kept, str(distance),
                                 f"near-duplicate of {audits[kept]['file']}, kept for {why_kept(audits[kept], audit)}"))
        else:
            rows.append(DedupRow(audit["file"], image_id, KEPT))
    return sorted(rows, key=lambda r: r.file)


def write_table(rows: list[DedupRow], path: str | Path) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=[f.name for f in fields(DedupRow)], delimiter="\t",
                            lineterminator="\n")
    writer.writeheader()
    writer.writerows(asdict(r) for r in rows)
    atomic.write_text(path, buffer.getvalue())


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
    return (f"{len(rejected)} dataset file(s) rejected and {len(strays)} caption/mask file(s) unused "
            "(strict: true turns these into errors):\n" + "\n".join(lines))
