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
   MIN_COVER_LARGER of the other. The mirror image is tried the same way. A pair SIFT cannot align
   (a smooth photo has a handful of points) within ECC_HASH_DISTANCE is aligned by intensity
   (`intensity_alignment`: OpenCV's ECC); failing that, a picture with too few features (a smooth
   drawing) is compared frame to frame when its hashes are within CLOSE_HASH_DISTANCE. Such a pair,
   aligned without matched points, must also share its fine detail (`detail_correlation`): two
   plain walls of one paint agree to a few levels once their colours are fitted, but their grain is
   unrelated. A low-contrast picture (grey std under LOW_CONTRAST_STD: a dark wallpaper)
   is stretched to its full range first (`stretched`), and a flat fill in a picture's corners
   (`corner_fill`: a rotation's wedges, a box) is painted in its mean colour before it is hashed.
3. Content. The aligned copy's colour channels are matched to the other's by a linear fit
   (brightness, contrast), both are blurred (sigma 1 px) and the pixels that still differ by more
   than DIFF_LEVEL of 255 in any channel are marked (where the copy is clipped, only a difference
   that clipping cannot explain); a 3x3 opening drops isolated pixels and resampled edges. When
   the largest connected marked region is under MAX_DIFFERING_REGION of the overlap, the pair is
   an edited copy (relation "copy" or "mirror"). A SIFT pair with a larger region is measured
   again once ECC has refined SIFT's transform (`refined`): RANSAC is good to a pixel or so, and a
   long edge of strong contrast misaligned by that much is a region. Otherwise, when the marked
   pixels are at most SIMILAR_MAX_DIFFERING of the overlap and the alignment has at least
   SIMILAR_MIN_INLIERS inliers, it is a second capture of one scene ("similar"): both stay, the
   report shows them side by side. Anything else is distinct. (The same check at half the resolution comes first and
   settles most pairs of distinct photos for a quarter of the work: coarse_difference.) For a
   low-contrast pair DIFF_LEVEL shrinks with its contrast (`difference_level`); the corner fill of
   both is left out of the overlap (`without_fill`); for a pair turned against each other
   the copy whose pixels beyond the other's frame are only fill is named (`rotation_fill`: the
   rotated copy, which dedup.group_duplicates does not keep while an upright one is there), as is
   one with a corner fill against one without (two copies turned alike).

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

from charlora.dedup import COPY, MIN_ROTATION, MIRROR, SIMILAR, Relation

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
ECC_HASH_DISTANCE = 16  # pairs SIFT cannot align are aligned by intensity (ECC) within this distance
ECC_SIDES = (64, 128, 256, 512)  # the sizes ECC fits at, coarse to fine (longer side, pixels)
ECC_ITERATIONS = 60
ECC_MIN_CORRELATION = 0.8  # a copy correlates 0.95 and more; the content check decides the rest
ECC_MAX_SHEAR = 0.03  # an edited copy is a similarity: equal scales along both axes, right angles
# Aligned without SIFT's points, a copy shares its fine detail: 0.1 and more, look-alikes 0.04 at most
DETAIL_MIN_CORRELATION = 0.06
DIFF_LEVEL = 30  # of 255, after the brightness/contrast match and a 1 px blur
LOW_CONTRAST_STD = 20.0  # grey std below which a picture is low-contrast (stretched, difference_level)
MIN_DIFF_LEVEL = 4.0  # of 255: the least difference that counts (JPEG noise on a stretched picture)
MAX_DIFFERING_REGION = 0.0002  # of the overlap: 0.02 %, about 40 pixels of a 512x384 copy
SIMILAR_MAX_DIFFERING = 0.05  # of the overlap: a blink, a head turn, a gesture; not another pose
COARSE_MAX_DIFFERING = 0.15  # at half resolution: three times the above (coarse_difference)
SAME_SCALE = 0.02  # two copies' content sizes within 2 % are one scale (same_view)
FILL_MIN_SHARE = 0.003  # of a picture: less beyond the other's frame is nothing (edges, rounding)
FILL_LEVELS = 12  # of 255: a fill's pixels lie this close to its median colour (JPEG noise included)
FILL_FLAT = 1.5  # of 255: a fill's grey std over 3x3 pixels at most (a photo's noise has more)
FILL_SHARE = 0.9  # of the pixels beyond the other's frame, for them to be a fill
FILL_SPREAD = 0.25  # of the picture's grey std: a fill's mean distance from its colour is less (only_fill)
# A rotation's wedges (at most MAX_ROTATION) are four separate corner triangles, a quarter of the frame
# at most (a square turned 10 degrees on a canvas grown to hold it); a plain backdrop is more, or one piece.
FILL_MAX_AREA = 0.3


@dataclass
class Photo:
    """One photo ready to compare: border-trimmed, longer side WORK_SIDE, and its four hashes."""

    id: str
    pixels: np.ndarray  # RGB uint8
    hashes: dict[str, str]  # photo | centre | mirror | mirror centre
    fill: np.ndarray | None = None  # corner_fill of the pixels (None: no fill)
    contrast: float = 255.0  # grey std of the picture, its fill left out (difference_level, stretched)
    side: int = WORK_SIDE  # the longer side of the photo's content in its own pixels (its scale: same_view)


def corner_fill(pixels: np.ndarray) -> np.ndarray | None:
    """The flat fill in a picture's corners (a rotation's wedges, the rest of a box around a turned
    picture): the flat pixels (no texture, not even noise: FILL_FLAT) within FILL_LEVELS of the
    corners' colour, joined to a corner, where all four corners have that colour, each its own
    piece, and they cover no more of the frame than wedges do (FILL_MAX_AREA); None otherwise (most
    photos, and a picture on a plain backdrop)."""
    corners = pixels[[0, 0, -1, -1], [0, -1, 0, -1]].astype(np.int16)
    colour = np.median(corners, axis=0)
    if np.abs(corners - colour).max() > FILL_LEVELS:
        return None
    grey = cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY).astype(np.float32)
    local_var = cv2.blur(grey * grey, (3, 3)) - cv2.blur(grey, (3, 3)) ** 2
    near = (np.abs(pixels.astype(np.int16) - colour).max(axis=2) <= FILL_LEVELS) & (local_var <= FILL_FLAT**2)
    near = near.astype(np.uint8)
    _, labels = cv2.connectedComponents(near, connectivity=4)
    touching = np.unique(labels[[0, 0, -1, -1], [0, -1, 0, -1]])
    fill = np.isin(labels, touching[touching > 0])
    if fill.any() and grey[fill].std() > 2 * FILL_FLAT:  # one colour throughout, not a smooth dim picture
        return None
    if np.count_nonzero(touching) < 4 or fill.mean() > FILL_MAX_AREA:  # a plain backdrop, not wedges
        return None
    return fill


def _centre(image: Image.Image) -> Image.Image:
    dx, dy = round(image.width * CENTRE_CROP), round(image.height * CENTRE_CROP)
    return image.crop((dx, dy, image.width - dx, image.height - dy))


def prepare(image_id: str, image: Image.Image, encoder) -> Photo:
    """`image`: the decoded RGB photo; `encoder`: an imagededup hash object (dedup.hasher)."""
    from charlora.audit import content_box

    content = image.crop(content_box(image))
    scale = WORK_SIDE / max(content.size)
    work = content.resize((max(1, round(content.width * scale)), max(1, round(content.height * scale))), Image.BILINEAR)
    pixels = np.asarray(work)
    fill = corner_fill(pixels)
    hashed = work
    if fill is not None and not fill.all():  # hashed with the fill in the picture's mean colour: the
        painted = pixels.copy()  # wedges' contrast would outweigh a dim picture's in the hash
        painted[fill] = pixels[~fill].mean(axis=0).astype(np.uint8)
        hashed = Image.fromarray(painted)
    variants = {
        "photo": hashed,
        "centre": _centre(hashed),
        "mirror": ImageOps.mirror(hashed),
        "mirror centre": ImageOps.mirror(_centre(hashed)),
    }
    hashes = {name: encoder.encode_image(image_array=np.asarray(v)) for name, v in variants.items()}
    grey = cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY)
    if fill is not None:  # the picture's own contrast: the fill and its resampled edge (2 px) left out
        grey = grey[cv2.dilate(fill.astype(np.uint8), np.ones((5, 5), np.uint8)) == 0]
    return Photo(image_id, pixels, hashes, fill, float(grey.std()) if grey.size else 0.0, max(content.size))


def _oriented_fill(photo: Photo, mirrored: bool) -> np.ndarray | None:
    if photo.fill is None:
        return None
    return np.ascontiguousarray(photo.fill[:, ::-1]) if mirrored else photo.fill


def without_fill(inside: np.ndarray, a: Photo, b: Photo, flipped: bool, matrix: np.ndarray) -> np.ndarray:
    """The overlap less either picture's corner fill (b's aligned onto a): a turned copy's wedges or
    box are not picture, so where they lie over the other's picture is no difference."""
    if a.fill is not None:
        inside = inside & ~a.fill
    b_fill = _oriented_fill(b, flipped)
    if b_fill is not None:
        height, width = a.pixels.shape[:2]
        warped = cv2.warpAffine(b_fill.astype(np.uint8) * 255, matrix, (width, height), flags=cv2.INTER_LINEAR)
        inside = inside & (cv2.dilate((warped > 0).astype(np.uint8), np.ones((5, 5), np.uint8)) == 0)
    return inside


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


def stretched(grey: np.ndarray, contrast: float, fill: np.ndarray | None) -> np.ndarray:
    """A low-contrast picture (`contrast`, its grey std without its fill, under LOW_CONTRAST_STD: a dark
    wallpaper, a dim room) with the 1st-99th percentiles of its picture stretched over 0-255 after a
    light blur (not its noise): SIFT finds no points in 6 levels of texture and plenty in the same
    texture stretched. Others are returned as they are."""
    if contrast >= LOW_CONTRAST_STD:
        return grey
    smooth = cv2.GaussianBlur(grey, (0, 0), 1.0).astype(np.float32)
    low, high = np.percentile(smooth if fill is None else smooth[~fill], (1, 99))
    return np.clip((smooth - low) * 255.0 / max(high - low, 1.0), 0, 255).astype(np.uint8)


def features(photo: Photo, mirrored: bool) -> Features:
    """SIFT points of a working copy (or of its mirror image): the MAX_FEATURES strongest."""
    grey = stretched(
        cv2.cvtColor(_oriented(photo, mirrored), cv2.COLOR_RGB2GRAY), photo.contrast, _oriented_fill(photo, mirrored)
    )
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


def at_scale(matrix: np.ndarray, factor: float) -> np.ndarray:
    """`matrix` (b's pixels onto a's) for both pictures resized by `factor`: pixel x of the resized
    picture is centred on (x + 0.5) / factor - 0.5 of the original, so the linear part stays and the
    shift becomes factor * shift + (1 - factor) / 2 * (linear (1, 1) - (1, 1))."""
    scaled = matrix.astype(np.float64).copy()
    scaled[:, 2] = factor * matrix[:, 2] + (1 - factor) / 2 * (matrix[:, :2].sum(axis=1) - 1)
    return scaled


def _ecc_grey(pixels: np.ndarray, fill: np.ndarray | None, side: int) -> np.ndarray:
    """A picture's grey levels for ECC at `side` pixels (longer side), its fill painted in the mean
    grey of its picture (wedges and boxes are no part of what is aligned)."""
    grey = cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY).astype(np.float32)
    if fill is not None and not fill.all():
        grey[fill] = grey[~fill].mean()
    factor = side / max(grey.shape)
    size = (max(1, round(grey.shape[1] * factor)), max(1, round(grey.shape[0] * factor)))
    return cv2.resize(grey, size, interpolation=cv2.INTER_AREA)


def _ecc(a_grey: np.ndarray, b_grey: np.ndarray, matrix: np.ndarray, iterations: int) -> tuple[np.ndarray, float]:
    """One ECC fit (affine) from `matrix` (b's pixels onto a's): the fitted matrix and its correlation,
    or the start and -1 where ECC does not converge (uncorrelated pictures)."""
    warp = cv2.invertAffineTransform(matrix).astype(np.float32)  # ECC's warp maps a's pixels into b
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, iterations, 1e-5)
    try:
        correlation, warp = cv2.findTransformECC(a_grey, b_grey, warp, cv2.MOTION_AFFINE, criteria, None, 5)
    except cv2.error:
        return matrix, -1.0
    return cv2.invertAffineTransform(warp).astype(np.float64), float(correlation)


def intensity_alignment(a: Photo, b_pixels: np.ndarray, b_fill: np.ndarray | None) -> tuple[Alignment, float] | None:
    """For a pair SIFT cannot align (a smooth or dark photo has a handful of points): the transform
    that maximises the enhanced correlation coefficient of the two grey pictures (cv2.findTransformECC,
    which a change of brightness and contrast does not alter), fitted coarse to fine (ECC_SIDES) from
    each of three starts: b's frame over a's, b as a's central part (a 10 % crop a side) and a as
    b's. The best start at the coarsest size is refined. Returns the alignment and its correlation
    when the fit is a similarity with at least ECC_MIN_CORRELATION (_similarity), else None. The
    content check (`difference`) decides as for SIFT's."""
    ha, wa = a.pixels.shape[:2]
    hb, wb = b_pixels.shape[:2]
    inner = 1 - 2 * CENTRE_CROP
    b_in_a = np.array([[inner * wa / wb, 0, CENTRE_CROP * wa], [0, inner * ha / hb, CENTRE_CROP * ha]])
    a_in_b = cv2.invertAffineTransform(
        np.array([[inner * wb / wa, 0, CENTRE_CROP * wb], [0, inner * hb / ha, CENTRE_CROP * hb]])
    )
    starts = [frame_to_frame(a.pixels, b_pixels).matrix, b_in_a, a_in_b]
    best, correlation = None, -1.0
    for level, side in enumerate(ECC_SIDES):
        factor = side / WORK_SIDE
        a_grey, b_grey = _ecc_grey(a.pixels, a.fill, side), _ecc_grey(b_pixels, b_fill, side)
        if level == 0:
            fits = [_ecc(a_grey, b_grey, at_scale(m, factor), ECC_ITERATIONS) for m in starts]
            matrix, correlation = max(fits, key=lambda fit: fit[1])
        else:
            matrix, correlation = _ecc(a_grey, b_grey, at_scale(best, factor), ECC_ITERATIONS)
        if correlation < 0:
            return None
        best = at_scale(matrix, 1 / factor)
    alignment = _similarity(best, correlation, inliers=0)
    return (alignment, correlation) if alignment else None


def _similarity(matrix: np.ndarray, correlation: float, inliers: int) -> Alignment | None:
    """An ECC fit as an Alignment, or None unless it is a similarity (equal scales, no shear:
    ECC_MAX_SHEAR) with a correlation of at least ECC_MIN_CORRELATION."""
    linear = matrix[:, :2]
    scale_x, scale_y = np.hypot(linear[0, 0], linear[1, 0]), np.hypot(linear[0, 1], linear[1, 1])
    shear = abs(linear[:, 0] @ linear[:, 1]) / (scale_x * scale_y)
    if correlation < ECC_MIN_CORRELATION or abs(scale_x / scale_y - 1) > ECC_MAX_SHEAR or shear > ECC_MAX_SHEAR:
        return None
    rotation = float(np.degrees(np.arctan2(linear[1, 0], linear[0, 0])))
    return Alignment(matrix, inliers, float((scale_x + scale_y) / 2), rotation)


def refined(a: Photo, b_pixels: np.ndarray, b_fill: np.ndarray | None, alignment: Alignment) -> Alignment | None:
    """SIFT's alignment refined by ECC at full size (WORK_SIDE), or None where ECC does not converge or
    leaves a similarity (_similarity). RANSAC fits its points to within a pixel or so; along a long
    edge of strong contrast (a dark tree against the sky) that is a line of pixels 30 levels apart,
    one region larger than MAX_DIFFERING_REGION, where two copies of one photo agree to a tenth of a
    pixel once aligned by their intensities."""
    a_grey, b_grey = _ecc_grey(a.pixels, a.fill, WORK_SIDE), _ecc_grey(b_pixels, b_fill, WORK_SIDE)
    matrix, correlation = _ecc(a_grey, b_grey, alignment.matrix, ECC_ITERATIONS)
    return _similarity(matrix, correlation, alignment.inliers)


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


def difference_level(contrast: float) -> float:
    """The residual that counts as a difference: DIFF_LEVEL, scaled down for a low-contrast pair (the
    lower grey std of the two, fill left out, under LOW_CONTRAST_STD) in proportion to its contrast, to
    no less than MIN_DIFF_LEVEL: 30 levels is more than all of a dark wallpaper's texture, and any two
    such pictures would agree."""
    return max(MIN_DIFF_LEVEL, DIFF_LEVEL * min(1.0, contrast / LOW_CONTRAST_STD))


def difference(
    a: np.ndarray, b: np.ndarray, matrix: np.ndarray, inside: np.ndarray, level: float = DIFF_LEVEL
) -> Difference:
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
    differs = ((residual > level) & inside).astype(np.uint8)
    differs = cv2.morphologyEx(differs, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    count, _, stats, _ = cv2.connectedComponentsWithStats(differs, connectivity=8)
    largest = int(stats[1:, cv2.CC_STAT_AREA].max()) if count > 1 else 0
    area = float(inside.sum())
    return Difference(largest / area, float(differs.sum()) / area)


def coarse_difference(
    a: np.ndarray, b: np.ndarray, matrix: np.ndarray, inside: np.ndarray, level: float = DIFF_LEVEL
) -> Difference:
    """`difference` at half the resolution: a quarter of the work. Halving blurs fine detail and
    halves any misalignment, so it marks fewer pixels than the full check, never many more; a pair
    that differs in over COARSE_MAX_DIFFERING of it (most candidate pairs: distinct photos of one
    scene) is distinct without the full check. Measured: benchmarks/dedup_eval.py and the 200 photos
    of benchmarks/dataset_stage.py give the same relations with and without this pass."""

    def half(pixels: np.ndarray, interpolation=cv2.INTER_AREA) -> np.ndarray:
        return cv2.resize(pixels, ((pixels.shape[1] + 1) // 2, (pixels.shape[0] + 1) // 2), interpolation=interpolation)

    halved = at_scale(matrix, 0.5)
    small_inside = half(inside.astype(np.uint8), cv2.INTER_NEAREST) > 0
    return difference(half(a), half(b), halved, small_inside, level)


def detail_correlation(
    a: Photo, b_pixels: np.ndarray, b_fill: np.ndarray | None, matrix: np.ndarray, inside: np.ndarray
) -> float:
    """The correlation of the two pictures' fine detail (grey, a band of 1 to 4 px: texture, grain of
    the scene, edges) over the overlap once b is aligned onto a. An edited copy shares its detail
    (0.1 and more on tests/textures.py's look-alikes and the clock, most copies 0.6 and more); two
    plain walls or skies share only their smooth light, which the colour match in `difference` fits
    to within the texture's few levels, so their detail decides: it is unrelated (0.04 at most). A
    corner fill's step would be detail both share, so each picture's fill is painted over first."""

    def grey(pixels: np.ndarray, fill: np.ndarray | None) -> np.ndarray:
        grey = cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY)
        if fill is not None and fill.any():
            grown = cv2.dilate(fill.astype(np.uint8), np.ones((7, 7), np.uint8))
            grey = cv2.inpaint(grey, grown, 3, cv2.INPAINT_TELEA)
        return grey.astype(np.float32)

    height, width = a.pixels.shape[:2]
    warped = cv2.warpAffine(grey(b_pixels, b_fill), matrix, (width, height), flags=cv2.INTER_LINEAR)
    clear = cv2.erode(inside.astype(np.uint8), np.ones((25, 25), np.uint8)) > 0  # 3 sigma clear of the frame
    x, y = (
        (cv2.GaussianBlur(g, (0, 0), 1.0) - cv2.GaussianBlur(g, (0, 0), 4.0))[clear]
        for g in (grey(a.pixels, a.fill), warped)
    )
    if x.size < 100:
        return 0.0
    x, y = (np.clip(v, -3 * spread, 3 * spread) for v, spread in ((x, _spread(x)), (y, _spread(y))))
    x, y = x - x.mean(), y - y.mean()
    norm = float(np.sqrt((x * x).sum() * (y * y).sum()))
    return float((x * y).sum()) / norm if norm > 0 else 0.0


def _spread(values: np.ndarray) -> float:
    """A robust standard deviation (1.4826 median absolute deviations): a few strong steps, such as a
    wedge's thin end that corner_fill leaves, do not count for more than texture does once clipped to 3 of it."""
    return 1.4826 * float(np.median(np.abs(values - np.median(values)))) + 1e-6


def beyond_frame(shape: tuple[int, ...], other_shape: tuple[int, ...], matrix: np.ndarray) -> np.ndarray:
    """The pixels of a picture of `shape` that the other picture's frame does not cover once aligned
    (`matrix` maps the other's pixels onto this one's), 3 px clear of the frame's resampled edge."""
    covered = cv2.warpAffine(
        np.full(other_shape[:2], 255, np.uint8), matrix, (shape[1], shape[0]), flags=cv2.INTER_NEAREST
    )
    return cv2.dilate((covered > 128).astype(np.uint8), np.ones((7, 7), np.uint8)) == 0


def only_fill(pixels: np.ndarray, region: np.ndarray, contrast: float) -> bool | None:
    """Whether `region` of `pixels` is a flat fill: FILL_SHARE of it within FILL_LEVELS of its median
    colour, and flatter than the picture is (its mean distance from that colour under FILL_SPREAD of
    the picture's `contrast`, its grey std: a dark wall's corners are within FILL_LEVELS of one colour
    too, but no flatter than the rest of it); None when the region is too small to say (FILL_MIN_SHARE)."""
    if region.mean() < FILL_MIN_SHARE:
        return None
    distance = np.abs(pixels[region].astype(np.int16) - np.median(pixels[region], axis=0)).max(axis=1)
    return bool(np.mean(distance <= FILL_LEVELS) >= FILL_SHARE and distance.mean() < FILL_SPREAD * contrast)


def rotation_fill(a: Photo, b_pixels: np.ndarray, b_contrast: float, matrix: np.ndarray) -> str:
    """Of two copies turned against each other ("a" or "b", else ""), the one whose pixels beyond the
    other's frame are only a flat fill: the corner wedges a rotation leaves, a box added around it.
    The other one shows real picture there (the corners the rotation cut off) or nothing at all."""
    a_fill = only_fill(a.pixels, beyond_frame(a.pixels.shape, b_pixels.shape, matrix), a.contrast)
    b_region = beyond_frame(b_pixels.shape, a.pixels.shape, cv2.invertAffineTransform(matrix))
    b_fill = only_fill(b_pixels, b_region, b_contrast)
    if b_fill and not a_fill:
        return "b"
    if a_fill and not b_fill:
        return "a"
    return ""


def same_view(a: Photo, b_pixels: np.ndarray, b_contrast: float, b_side: int, alignment: Alignment) -> bool:
    """Whether two upright copies show one view of the scene at one scale: neither shows picture
    beyond the other's frame (nothing, or only a flat fill: a plain canvas that one copy's border
    trim cut and the other's did not, bars added around it) and their contents are within SAME_SCALE
    of one size in their own pixels (the working copies are all WORK_SIDE long). Their content sizes
    then differ only by what the border trim took, which says nothing about which is the original."""
    if abs(alignment.scale * a.side / b_side - 1) > SAME_SCALE:
        return False
    inverse = cv2.invertAffineTransform(alignment.matrix)
    a_beyond = only_fill(a.pixels, beyond_frame(a.pixels.shape, b_pixels.shape, alignment.matrix), a.contrast)
    b_beyond = only_fill(b_pixels, beyond_frame(b_pixels.shape, a.pixels.shape, inverse), b_contrast)
    return a_beyond is not False and b_beyond is not False


def _turned(alignment: Alignment, how: str) -> bool:
    """The alignment turns one picture against the other by MIN_ROTATION or more (frame to frame never does)."""
    return how != "frame to frame" and abs(alignment.rotation) >= MIN_ROTATION


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
        how = f"SIFT ({alignment.inliers} matched points" if alignment else ""
        if alignment is None and distance <= ECC_HASH_DISTANCE:
            fitted = intensity_alignment(a, b_pixels, _oriented_fill(b, flipped))
            if fitted:
                alignment, how = fitted[0], f"by intensity (ECC, correlation {fitted[1]:.3f}"
        if alignment is None and distance <= CLOSE_HASH_DISTANCE:
            alignment, how = frame_to_frame(a.pixels, b_pixels), "frame to frame"
        if alignment is None or abs(alignment.rotation) > MAX_ROTATION:
            continue
        shared = overlap(a.pixels.shape, b_pixels.shape, alignment.matrix)
        if not shared.covers():
            continue
        # a corner fill (wedges, a box: corner_fill) is no picture, also where two copies turned alike share it
        shared.inside = without_fill(shared.inside, a, b, flipped, alignment.matrix)
        if not how.startswith("SIFT") and (
            detail_correlation(a, b_pixels, _oriented_fill(b, flipped), alignment.matrix, shared.inside)
            < DETAIL_MIN_CORRELATION
        ):
            continue  # no shared detail: two plain walls, two skies under one light
        level = difference_level(min(a.contrast, b.contrast))
        coarse = coarse_difference(a.pixels, b_pixels, alignment.matrix, shared.inside, level)
        if coarse.differing > COARSE_MAX_DIFFERING:
            continue
        diff = difference(a.pixels, b_pixels, alignment.matrix, shared.inside, level)
        if diff.largest_region >= MAX_DIFFERING_REGION and how.startswith("SIFT"):
            closer = refined(a, b_pixels, _oriented_fill(b, flipped), alignment)
            closer_diff = closer and difference(a.pixels, b_pixels, closer.matrix, shared.inside, level)
            if closer_diff and closer_diff.largest_region < diff.largest_region:
                diff, alignment, how = closer_diff, closer, how + ", refined by ECC"
        found.append((diff, flipped, distance, alignment, how))
        if diff.largest_region < MAX_DIFFERING_REGION:
            break
    if not found:
        return None
    diff, flipped, distance, alignment, how = min(found, key=lambda f: (f[0].largest_region, f[1]))
    aligned = (
        f"aligned {how}"
        + (f", scale {alignment.scale:.2f}, rotation {alignment.rotation:.1f} deg)" if how != "frame to frame" else "")
        + (", mirrored" if flipped else "")
    )
    measured = (
        f"largest differing region {diff.largest_region:.3%} of the overlap, {diff.differing:.2%} differing in all"
    )
    if diff.largest_region < MAX_DIFFERING_REGION:
        turned, b_pixels = _turned(alignment, how), _oriented(b, flipped)
        fill = rotation_fill(a, b_pixels, b.contrast, alignment.matrix) if turned else ""
        if not fill and (a.fill is None) != (b.fill is None):  # one has wedges or a box in its corners
            fill = "a" if a.fill is not None else "b"
        one_view = not turned and same_view(a, b_pixels, b.contrast, b.side, alignment)
        return Relation(
            a.id,
            b.id,
            MIRROR if flipped else COPY,
            distance,
            f"{aligned}; {measured}",
            diff.largest_region,
            round(alignment.rotation, 2),
            {"a": a.id, "b": b.id}.get(fill, ""),
            one_view,
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
