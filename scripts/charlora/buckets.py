"""Aspect-ratio buckets and SDXL's size conditioning.

Photos are not cropped to squares: each goes to the bucket (a width x height of about
resolution² pixels, both multiples of `step`) whose aspect ratio is nearest its own, is scaled to
cover the bucket and centre-cropped. SDXL was trained with "micro-conditioning" on three sizes,
passed to the UNet as `add_time_ids` = (original height, original width, crop top, crop left,
target height, target width); we pass the photo's true size and the crop we made, as SDXL's own
training did, so the model is not taught that every photo was small or cropped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Fit:
    bucket: tuple[int, int]  # (width, height) the image is trained at
    scaled: tuple[int, int]  # (width, height) after scaling to cover the bucket
    crop_top: int
    crop_left: int
    original: tuple[int, int]  # (width, height) of the photo

    def time_ids(self) -> list[int]:
        """SDXL add_time_ids: original (h, w), crop (top, left), target (h, w)."""
        (ow, oh), (bw, bh) = self.original, self.bucket
        return [oh, ow, self.crop_top, self.crop_left, bh, bw]


def bucket_sizes(resolution: int, step: int, max_ratio: float = 2.0) -> list[tuple[int, int]]:
    """Every (w, h), multiples of `step`, with w*h <= resolution² and 1/max_ratio <= w/h <= max_ratio,
    keeping for each width the tallest height that fits (the largest area at that shape).
    Landscape sizes mirror portrait ones."""
    sizes = set()
    for w in range(step, resolution + 1, step):  # portrait and square; landscape by mirroring
        h = (resolution * resolution // w) // step * step
        if h >= w and h / w <= max_ratio:
            sizes |= {(w, h), (h, w)}
    return sorted(sizes)


def choose_bucket(width: int, height: int, buckets: list[tuple[int, int]]) -> tuple[int, int]:
    """The bucket whose aspect ratio is nearest (in log scale) to width/height; larger area on ties."""
    ratio = math.log(width / height)
    return min(buckets, key=lambda b: (abs(math.log(b[0] / b[1]) - ratio), -b[0] * b[1]))


def fit(width: int, height: int, bucket: tuple[int, int]) -> Fit:
    """Scale (width, height) to cover `bucket`, centre-crop to it."""
    bw, bh = bucket
    scale = max(bw / width, bh / height)
    sw, sh = max(bw, round(width * scale)), max(bh, round(height * scale))
    return Fit(
        bucket=bucket, scaled=(sw, sh), crop_top=(sh - bh) // 2, crop_left=(sw - bw) // 2, original=(width, height)
    )
