"""Train/validation split: a stable hash of each <id>, not a shuffle.

An image's side depends on its name alone, so adding or removing photos never moves another photo
between train and val (a moved photo would make the validation curves of two runs incomparable).
The guide keeps 10-15 % for validation. With few photos the hash may pick none: then the photo
with the smallest hash is val, which is just as stable.
"""

from __future__ import annotations

import csv
import hashlib

TRAIN, VAL = "train", "val"


def position(image_id: str) -> float:
    """Where an <id> falls in [0, 1): the first 8 bytes of its SHA-256."""
    return int.from_bytes(hashlib.sha256(image_id.encode("utf-8")).digest()[:8], "big") / 2**64


def assign(ids: list[str], val_fraction: float) -> dict[str, str]:
    sides = {i: VAL if position(i) < val_fraction else TRAIN for i in sorted(ids)}
    if len(ids) >= 2 and val_fraction > 0 and VAL not in sides.values():
        sides[min(ids, key=position)] = VAL
    if len(ids) >= 2 and TRAIN not in sides.values():
        sides[max(ids, key=position)] = TRAIN
    return sides


def write_table(path, sides: dict[str, str]) -> None:
    """split.tsv: id and side, sorted by id."""
    from charlora import atomic

    atomic.write_tsv(path, ["id", "split"], sorted(sides.items()))


def read_table(path) -> dict[str, str]:
    with open(path, newline="", encoding="utf-8") as f:
        return {row["id"]: row["split"] for row in csv.DictReader(f, delimiter="\t")}
