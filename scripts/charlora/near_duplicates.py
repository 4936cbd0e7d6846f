"""Which photos are edited copies of one another, which are mirror images, and which are a second
capture of one scene: perceptual hashes find the candidate pairs, a geometric check decides.

An edited copy is a photo that one similarity transform (scale, rotation, shift), optionally a
mirror, plus a change of brightness and contrast turns into the other, up to compression noise:
resized, re-encoded, cropped, slightly rotated, letterboxed, brightened copies. A second capture
(a burst: a blink, a head turn, a raised arm) aligns with the other photo just as well, but some
region of the picture differs. The rule, in measurable terms (docs/dataset.md, "Near-duplicates"):

1. Candidates. Each photo is cut out of plain borders (audit.content_box) and hashed with the
   configured imagededup hash four times: whole, its central 80 % (what a 10 % crop leaves), and
   the mirror image of both. A pair is a candidate when the smallest Hamming distance between a
   whole-picture hash of one and any hash of the other is at most `dedup.max_distance`.
2. Alignment. SIFT points of both 512 px copies are matched (Lowe's ratio test, 0.8) and a
   similarity transform is fitted by RANSAC (3 px). It explains the pair when it has at least
   MIN_INLIERS inliers, rotates by at most MAX_ROTATION degrees (two copies each turned 5 degrees
   from the photo), and the overlap covers at least MIN_COVER_SMALLER of one picture and
   MIN_COVER_LARGER of the other. The mirror image is tried the same way. A picture with too few
   features (a smooth drawing) is compared frame to frame when its hashes are within
   CLOSE_HASH_DISTANCE.
3. Content. The aligned copy's colour channels are matched to the other's by a linear fit
   (brightness, contrast), both are blurred (sigma 1 px) and the pixels that still differ by more
   than DIFF_LEVEL of 255 in any channel are marked (where the copy is clipped, only a difference
   that clipping cannot explain); a 3x3 opening drops isolated pixels and resampled edges. When
   the largest connected marked region is under MAX_DIFFERING_REGION of the overlap, the pair is
   an edited copy (relation "copy" or "mirror"). Otherwise, when the marked pixels are at most
   SIMILAR_MAX_DIFFERING of the overlap and the alignment has at least SIMILAR_MIN_INLIERS
   inliers, it is a second capture of one scene ("similar"): both stay, the report shows them
   side by side. Anything else is distinct. (The same check at half the resolution comes first and
   settles most pairs of distinct photos for a quarter of the work: coarse_difference.)

The thresholds were set on benchmarks/dedup_eval.py's crafted copies, bursts and distinct photos
(the figures are in its output and docs/dataset.md).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
from PIL import Image, ImageOps

from charlora.dedup import COPY, MIRROR, SIMILAR, Relation

WORK_SIDE = 512  # longer side of the working copy (pixels)
CENTRE_CROP = 0.10  # per side, for the central hash
MAX_FEATURES = 1000  # SIFT points per working copy (the strongest)
RATIO_TEST = 0.8
RANSAC_PIXELS = 3.0
MIN_INLIERS = 12
MAX_ROTATION = 10.0  # degrees: two copies each turned up to 5 degrees from the photo
SIMILAR_MIN_INLIERS = 24  # a second capture needs a well-supported alignment
MIN_COVER_SMALLER, MIN_COVER_LARGER = 0.85, 0.45
CLOSE_HASH_DISTANCE = 10  # featureless pictures are compared frame to frame within this distance
DIFF_LEVEL = 30  # of 255, after the brightness/contrast match and a 1 px blur
MAX_DIFFERING_REGION = 0.0002  # of the overlap: 0.02 %, about 40 pixels of a 512x384 copy
SIMILAR_MAX_DIFFERING = 0.05  # of the overlap: a blink, a head turn, a gesture; not another pose
COARSE_MAX_DIFFERING = 0.15  # at half resolution: three times the above (coarse_difference)


@dataclass
class Photo:
    """One photo ready to compare: border-trimmed, longer side WORK_SIDE, and its four hashes."""

    id: str
    pixels: np.ndarray  # RGB uint8
    hashes: dict[str, str]  # photo | centre | mirror | mirror centre


def _centre(image: Image.Image) -> Image.Image:
    dx, dy = round(image.width * CENTRE_CROP), round(image.height * CENTRE_CROP)
    return image.crop((dx, dy, image.width - dx, image.height - dy))


def prepare(image_id: str, image: Image.Image, encoder) -> Photo:
    """`image`: the decoded RGB photo; `encoder`: an imagededup hash object (dedup.hasher)."""
    from charlora.audit import content_box

    content = image.crop(content_box(image))
    scale = WORK_SIDE / max(content.size)
    work = content.resize((max(1, round(content.width * scale)), max(1, round(content.height * scale))), Image.BILINEAR)
    variants = {
        "photo": work,
        "centre": _centre(work),
        "mirror": ImageOps.mirror(work),
        "mirror centre": ImageOps.mirror(_centre(work)),
    }
    hashes = {name: encoder.encode_image(image_array=np.asarray(v)) for name, v in variants.items()}
    return Photo(image_id, np.asarray(work), hashes)


def prepare_files(
    files: dict[str, str | Path],
    decode: Callable[[str | Path], Image.Image],
    encoder,
    workers: int = 1,
    progress=lambda it, **kw: it,
) -> dict[str, Photo]:
    """`prepare` for every photo file (id -> path), `decode` reading each, in `workers` threads."""
    ids = sorted(files)
    with ThreadPoolExecutor(workers) as pool:
        prepared = pool.map(lambda i: prepare(i, decode(files[i]), encoder), ids)
        return dict(zip(ids, progress(prepared, total=len(ids), desc="hashing")))


def _hamming(a: str, b: str) -> int:
    return bin(int(a, 16) ^ int(b, 16)).count("1")


def hash_distances(a: Photo, b: Photo) -> tuple[int, int]:
    """(as is, mirrored): the smallest distance between a whole-picture hash of one and the
    matching hashes of the other (whole or central part)."""

    def closest(mine: tuple[str, str], theirs: tuple[str, str]) -> int:
        return min(
            _hamming(a.hashes[mine[0]], b.hashes[theirs[0]]),
            _hamming(a.hashes[mine[0]], b.hashes[theirs[1]]),
            _hamming(a.hashes[mine[1]], b.hashes[theirs[0]]),
        )

    return closest(("photo", "centre"), ("photo", "centre")), closest(("photo", "centre"), ("mirror", "mirror centre"))


def candidate_pairs(photos: dict[str, Photo], max_distance: int) -> list[tuple[str, str, int, int]]:
    """(a, b, distance as is, distance mirrored) of every pair within `max_distance` either way."""
    ids = sorted(photos)
    pairs = []
    for i, a in enumerate(ids):
        for b in ids[i + 1 :]:
            direct, mirrored = hash_distances(photos[a], photos[b])
            if min(direct, mirrored) <= max_distance:
                pairs.append((a, b, direct, mirrored))
    return pairs


Features = tuple[np.ndarray, np.ndarray | None]  # SIFT point positions (N x 2) and descriptors


def features(photo: Photo, mirrored: bool) -> Features:
    """SIFT points of a working copy (or of its mirror image): the MAX_FEATURES strongest."""
    grey = cv2.cvtColor(_oriented(photo, mirrored), cv2.COLOR_RGB2GRAY)
    keypoints, descriptors = cv2.SIFT_create(nfeatures=MAX_FEATURES).detectAndCompute(grey, None)
    return np.float32([k.pt for k in keypoints]).reshape(-1, 2), descriptors


def _oriented(photo: Photo, mirrored: bool) -> np.ndarray:
    return np.ascontiguousarray(photo.pixels[:, ::-1]) if mirrored else photo.pixels


@dataclass
class Alignment:
    matrix: np.ndarray  # 2x3, maps the second picture's pixels onto the first's
    inliers: int
    scale: float
    rotation: float  # degrees


def align(a_features, b_features) -> Alignment | None:
    """The similarity transform that maps b onto a, fitted by RANSAC to ratio-tested SIFT matches."""
    (a_points, a_desc), (b_points, b_desc) = a_features, b_features
    if a_desc is None or b_desc is None or len(a_desc) < 2 or len(b_desc) < 2:
        return None
    matches = cv2.BFMatcher(cv2.NORM_L2).knnMatch(a_desc, b_desc, k=2)
    good = [m[0] for m in matches if len(m) == 2 and m[0].distance < RATIO_TEST * m[1].distance]
    if len(good) < MIN_INLIERS:
        return None
    source = b_points[[m.trainIdx for m in good]]
    target = a_points[[m.queryIdx for m in good]]
    matrix, inliers = cv2.estimateAffinePartial2D(
        source,
        target,
        method=cv2.RANSAC,
        ransacReprojThreshold=RANSAC_PIXELS,
        maxIters=2000,
        confidence=0.999,
        refineIters=10,
    )
    if matrix is None or inliers.sum() < MIN_INLIERS:
        return None
    return Alignment(
        matrix,
        int(inliers.sum()),
        float(np.hypot(matrix[0, 0], matrix[1, 0])),
        float(np.degrees(np.arctan2(matrix[1, 0], matrix[0, 0]))),
    )


def frame_to_frame(a: np.ndarray, b: np.ndarray) -> Alignment:
    """The transform that stretches b's whole frame over a's (for pictures without features)."""
    sx, sy = a.shape[1] / b.shape[1], a.shape[0] / b.shape[0]
    return Alignment(np.array([[sx, 0, 0], [0, sy, 0]], np.float64), 0, (sx + sy) / 2, 0.0)


@dataclass
class Overlap:
    inside: np.ndarray  # a's pixels that b covers once aligned, 2 px in from b's edges
    cover_a: float  # share of a's picture that b covers
    cover_b: float  # share of b's picture that a covers

    def covers(self) -> bool:
        return (
            max(self.cover_a, self.cover_b) >= MIN_COVER_SMALLER and min(self.cover_a, self.cover_b) >= MIN_COVER_LARGER
        )


def overlap(a_shape: tuple[int, ...], b_shape: tuple[int, ...], matrix: np.ndarray) -> Overlap:
    """Where the pictures overlap once b is aligned onto a (`matrix` maps b's pixels onto a's)."""
    (height, width), (b_height, b_width) = a_shape[:2], b_shape[:2]
    inside = cv2.warpAffine(
        np.full((b_height, b_width), 255, np.uint8), matrix, (width, height), flags=cv2.INTER_NEAREST
    )
    inside = cv2.erode((inside > 128).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    back = cv2.warpAffine(
        np.full((height, width), 255, np.uint8),
        cv2.invertAffineTransform(matrix),
        (b_width, b_height),
        flags=cv2.INTER_NEAREST,
    )
    return Overlap(inside, float(inside.mean()), float((back > 128).mean()))


@dataclass
class Difference:
    largest_region: float  # the largest connected differing region, as a share of the overlap
    differing: float  # all differing pixels, as a share of the overlap


def difference(a: np.ndarray, b: np.ndarray, matrix: np.ndarray, inside: np.ndarray) -> Difference:
    """Step 3 of the rule: how much of the overlap (`inside`, from `overlap`) still differs once b
    is aligned onto a and its brightness and contrast matched."""
    height, width = a.shape[:2]
    if inside.sum() < 100:
        return Difference(1.0, 1.0)
    warped = cv2.warpAffine(b, matrix, (width, height), flags=cv2.INTER_LINEAR)
    unclipped = inside & np.all((a > 3) & (a < 252) & (warped > 3) & (warped < 252), axis=2)
    fit_on = unclipped if unclipped.sum() >= 1000 else inside
    a_blur = cv2.GaussianBlur(a.astype(np.float32), (0, 0), 1.0)
    b_blur = cv2.GaussianBlur(warped.astype(np.float32), (0, 0), 1.0)
    residual = np.zeros((height, width), np.float32)
    near = np.ones((5, 5), np.uint8)  # a clipped pixel's blur reaches 2 px
    for c in range(3):
        x, y = b_blur[..., c][fit_on], a_blur[..., c][fit_on]
        x_mean, y_mean = float(x.mean()), float(y.mean())
        x_var = float(np.square(x - x_mean).mean())
        gain = float(((x - x_mean) * (y - y_mean)).mean()) / x_var if x_var > 1 else 1.0  # least squares
        offset = y_mean - gain * x_mean
        matched = np.clip(gain * b_blur[..., c] + offset, 0, 255)
        gap = a_blur[..., c] - matched
        # where b is clipped its true value lies beyond, so only a difference on the other side counts
        high = cv2.dilate((warped[..., c] >= 252).astype(np.uint8), near) > 0
        low = cv2.dilate((warped[..., c] <= 3).astype(np.uint8), near) > 0
        gap = np.where(high, np.minimum(gap, 0), np.where(low, np.maximum(gap, 0), gap)) if gain > 0 else gap
        residual = np.maximum(residual, np.abs(gap))
    differs = ((residual > DIFF_LEVEL) & inside).astype(np.uint8)
    differs = cv2.morphologyEx(differs, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    count, _, stats, _ = cv2.connectedComponentsWithStats(differs, connectivity=8)
    largest = int(stats[1:, cv2.CC_STAT_AREA].max()) if count > 1 else 0
    area = float(inside.sum())
    return Difference(largest / area, float(differs.sum()) / area)


def coarse_difference(a: np.ndarray, b: np.ndarray, matrix: np.ndarray, inside: np.ndarray) -> Difference:
    """`difference` at half the resolution: a quarter of the work. Halving blurs fine detail and
    halves any misalignment, so it marks fewer pixels than the full check, never many more; a pair
    that differs in over COARSE_MAX_DIFFERING of it (most candidate pairs: distinct photos of one
    scene) is distinct without the full check. Measured: benchmarks/dedup_eval.py and the 200 photos
    of benchmarks/dataset_stage.py give the same relations with and without this pass."""

    def half(pixels: np.ndarray, interpolation=cv2.INTER_AREA) -> np.ndarray:
        return cv2.resize(pixels, ((pixels.shape[1] + 1) // 2, (pixels.shape[0] + 1) // 2), interpolation=interpolation)

    # half-size pixel x covers full-size pixels 2x and 2x + 1, centred on 2x + 0.5: in half-size
    # pixels the linear part is the same and the shift is (shift + linear (0.5, 0.5) - 0.5) / 2
    halved = matrix.copy()
    halved[:, 2] = (matrix[:, 2] + matrix[:, :2].sum(axis=1) * 0.5 - 0.5) / 2
    small_inside = half(inside.astype(np.uint8), cv2.INTER_NEAREST) > 0
    return difference(half(a), half(b), halved, small_inside)


def compare(
    a: Photo, b: Photo, direct: int, mirrored: int, features_of: dict, max_distance: int = 64
) -> Relation | None:
    """The relation of a candidate pair (`direct`, `mirrored`: its hash distances), or None. Each
    orientation whose hashes are within `max_distance` is tried, the closer one first.
    `features_of[(photo id, mirrored)]`: the SIFT features of every photo and orientation tried."""
    found = []
    for distance, flipped in _orientations(direct, mirrored, max_distance):
        b_pixels = _oriented(b, flipped)
        alignment = align(features_of[(a.id, False)], features_of[(b.id, flipped)])
        how = "SIFT"
        if alignment is None and distance <= CLOSE_HASH_DISTANCE:
            alignment, how = frame_to_frame(a.pixels, b_pixels), "frame to frame"
        if alignment is None or abs(alignment.rotation) > MAX_ROTATION:
            continue
        shared = overlap(a.pixels.shape, b_pixels.shape, alignment.matrix)
        if not shared.covers():
            continue
        if coarse_difference(a.pixels, b_pixels, alignment.matrix, shared.inside).differing > COARSE_MAX_DIFFERING:
            continue
        diff = difference(a.pixels, b_pixels, alignment.matrix, shared.inside)
        found.append((diff, flipped, distance, alignment, how))
        if diff.largest_region < MAX_DIFFERING_REGION:
            break
    if not found:
        return None
    diff, flipped, distance, alignment, how = min(found, key=lambda f: (f[0].largest_region, f[1]))
    aligned = (
        f"aligned {how}"
        + (
            f" ({alignment.inliers} matched points, scale {alignment.scale:.2f}, rotation {alignment.rotation:.1f} deg)"
            if how == "SIFT"
            else ""
        )
        + (", mirrored" if flipped else "")
    )
    measured = (
        f"largest differing region {diff.largest_region:.3%} of the overlap, {diff.differing:.2%} differing in all"
    )
    if diff.largest_region < MAX_DIFFERING_REGION:
        return Relation(
            a.id, b.id, MIRROR if flipped else COPY, distance, f"{aligned}; {measured}", diff.largest_region
        )
    if diff.differing <= SIMILAR_MAX_DIFFERING and alignment.inliers >= SIMILAR_MIN_INLIERS:
        return Relation(a.id, b.id, SIMILAR, distance, f"{aligned}; {measured}", diff.largest_region)
    return None


def _orientations(direct: int, mirrored: int, max_distance: int) -> list[tuple[int, bool]]:
    """(hash distance, mirrored) of each orientation of a pair to try, the closer first."""
    return sorted(t for t in [(direct, False), (mirrored, True)] if t[0] <= max_distance)


def find_relations(
    photos: dict[str, Photo], max_distance: int, workers: int = 1, progress=lambda it, **kw: it
) -> list[Relation]:
    """Every copy, mirror and similar relation among the candidate pairs of `photos`, in a fixed
    order. Every candidate pair is checked, also within a group of copies: a 10 % crop is a copy of
    a photo and of its burst twin alike, and only the burst pair's own check says they differ.
    `workers` threads share the work (OpenCV and NumPy release the GIL); the result is the same."""
    pairs = candidate_pairs(photos, max_distance)
    needed = sorted(
        {(a, False) for a, _, _, _ in pairs}
        | {
            (b, flipped)
            for _, b, direct, mirrored in pairs
            for _, flipped in _orientations(direct, mirrored, max_distance)
        }
    )
    with ThreadPoolExecutor(workers) as pool:
        computed = pool.map(lambda key: features(photos[key[0]], key[1]), needed)
        features_of = dict(zip(needed, progress(computed, total=len(needed), desc="SIFT points")))
        checked = pool.map(
            lambda pair: compare(photos[pair[0]], photos[pair[1]], pair[2], pair[3], features_of, max_distance), pairs
        )
        return [r for r in progress(checked, total=len(pairs), desc="geometric check") if r is not None]
