"""Audit one photo: decode it the way ingest will, measure what a curator looks at, flag problems.

The audit is a measurement, not a judgement: only what makes an image unusable (it cannot be
decoded, it is below the minimum size) rejects it. Everything else is a flag in the report.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from charlora import framing
from charlora.images import ImageRejected, decode_rgb

SHARPNESS_SHORT_SIDE = 512  # sharpness is measured at this scale so that it compares across sizes


def sharpness(gray: np.ndarray) -> float:
    """Variance of the Laplacian: high for crisp edges, low for blur or soft focus."""
    return float(cv2.Laplacian(gray, cv2.CV_64F).var())


def content_box(image: Image.Image, tolerance: float = 3.0, max_share: float = 0.45) -> tuple[int, int, int, int]:
    """The picture inside plain borders (letterbox, pillarbox, a canvas it was pasted on), as
    (left, top, right, bottom). A border is a run of whole rows (or columns) along two opposite edges,
    each within `tolerance` of one colour that both edges share: the canvas's. A scene's own flat
    areas (a shirt along the bottom, a backdrop above the head) rarely span whole lines on both sides
    in one colour, and a photographed backdrop's noise breaks the tolerance. At most `max_share` of a
    side is cut."""
    rgb = np.asarray(image, dtype=np.int16)

    def plain_run(lines: np.ndarray, colour: np.ndarray) -> int:  # lines[i]: i-th row/column from the edge
        limit = int(len(lines) * max_share)
        for i in range(limit):
            if np.abs(lines[i] - colour).max() > tolerance:
                return i
        return limit

    def trim(lines: np.ndarray) -> tuple[int, int]:  # (from the start, from the end) of one axis
        first, last = np.median(lines[0], axis=0), np.median(lines[-1], axis=0)
        if np.abs(first - last).max() > tolerance:
            return 0, 0
        return plain_run(lines, first), plain_run(lines[::-1], first)

    top, bottom = trim(rgb)
    left, right = trim(rgb.transpose(1, 0, 2))
    return left, top, image.width - right, image.height - bottom


def tone_levels(image: Image.Image) -> int:
    """Distinct values used in the R, G and B channels together (at most 768). Brightening,
    darkening or a contrast change of an 8-bit photo clips or merges levels, or skips some: its
    edited copy uses fewer."""
    pixels = np.asarray(image).reshape(-1, 3)
    return int(sum(np.count_nonzero(np.bincount(pixels[:, c], minlength=256)) for c in range(3)))


def level_gaps(image: Image.Image) -> float:
    """The share of the levels between each channel's darkest and brightest value that no pixel
    uses. A photo's histogram is continuous; a brightening or a raised contrast of an 8-bit photo
    spreads its levels apart and leaves every few levels empty (the histogram's comb)."""
    pixels = np.asarray(image).reshape(-1, 3)
    unused = span = 0
    for c in range(3):
        used = np.flatnonzero(np.bincount(pixels[:, c], minlength=256))
        if len(used):
            span += int(used[-1] - used[0] + 1)
            unused += int(used[-1] - used[0] + 1 - len(used))
    return unused / span if span else 0.0


def measure(image: Image.Image) -> dict:
    """Size, content (inside plain borders), sharpness, contrast (grey std), tone levels, gaps between
    levels and exposure clipping of the content, and a pixel digest of an RGB image."""
    box = content_box(image)
    content = image.crop(box)
    scale = min(1.0, SHARPNESS_SHORT_SIDE / min(content.size))
    small = (
        content
        if scale == 1.0
        else content.resize((round(content.width * scale), round(content.height * scale)), Image.BILINEAR)
    )
    gray = np.asarray(small.convert("L"))
    luma = np.asarray(image.convert("L"))
    content_luma = np.asarray(content.convert("L"))  # clipping is the picture's, not its borders'
    return {
        "width": image.width,
        "height": image.height,
        "content_size": [box[2] - box[0], box[3] - box[1]],
        "sharpness": round(sharpness(gray), 2),
        "contrast": round(float(gray.std()), 2),  # of the same copy: sharpness rises with contrast squared
        "tone_levels": tone_levels(content),
        "level_gaps": round(level_gaps(content), 4),
        "mean_luma": round(float(luma.mean()), 2),
        "highlight_clip": round(float((content_luma >= 250).mean()), 5),
        "shadow_clip": round(float((content_luma <= 5).mean()), 5),
        "pixel_sha256": hashlib.sha256(image.tobytes()).hexdigest(),
    }


def lab(pixels: np.ndarray) -> np.ndarray:
    """CIELAB (L* 0-100, a*, b* around 0) of 8-bit sRGB pixels, shape (..., 3)."""
    scaled = (
        cv2.cvtColor(np.ascontiguousarray(pixels.reshape(-1, 1, 3)), cv2.COLOR_RGB2LAB)
        .reshape(-1, 3)
        .astype(np.float64)
    )
    return np.stack([scaled[:, 0] * 100 / 255, scaled[:, 1] - 128, scaled[:, 2] - 128], axis=1)


def colour(image: Image.Image, face_box: list[float] | None) -> dict:
    """The skin's colour (median CIELAB of the middle of the largest face: cheeks and nose, between
    the eyes and the chin, clear of hair and background) and the photo's grey-world cast (mean a*,
    b* of the whole picture: a cast, or simply a colourful backdrop)."""
    pixels = np.asarray(image)
    whole = lab(pixels[::4, ::4])
    result = {
        "skin_lab": None,
        "grey_world_ab": [round(float(whole[:, 1].mean()), 1), round(float(whole[:, 2].mean()), 1)],
    }
    if face_box:
        x, y, w, h = face_box
        width, height = image.size
        left, right = round((x + 0.3 * w) * width), round((x + 0.7 * w) * width)
        top, bottom = round((y + 0.45 * h) * height), round((y + 0.75 * h) * height)
        patch = pixels[top:bottom, left:right]
        if patch.size:
            skin = np.median(lab(patch), axis=0)
            result["skin_lab"] = [round(float(v), 1) for v in skin]
    return result


def flags_for(record: dict, settings: dict) -> list[str]:
    """Warnings a curator should see; none of these removes the image."""
    flags = []
    if record["sharpness"] < settings["min_sharpness"]:
        flags.append(f"soft or blurred (sharpness {record['sharpness']:.0f} < {settings['min_sharpness']})")
    if record["highlight_clip"] > settings["max_highlight_clip"]:
        flags.append(f"blown highlights ({record['highlight_clip']:.1%} of pixels clipped)")
    if record["shadow_clip"] > settings["max_shadow_clip"]:
        flags.append(f"crushed shadows ({record['shadow_clip']:.1%} of pixels clipped)")
    quality = record.get("jpeg_quality")
    if quality is not None and quality < settings["min_jpeg_quality"]:
        flags.append(f"JPEG compression (quality about {quality} < {settings['min_jpeg_quality']})")
    faces = record["framing"]["faces"]
    if faces == 0:
        flags.append("no face found: framing unknown")
    elif faces > 1:
        flags.append(f"{faces} faces found: is the character alone in the frame?")
    return flags


def audit_image(path: str | Path, image_id: str, settings: dict) -> dict:
    """The audit record of one photo. `settings` is the config's `ingest` section."""
    path = Path(path)
    record = {"id": image_id, "file": path.name}
    try:
        decoded = decode_rgb(path, settings["max_megapixels"], settings["alpha_background"])
    except ImageRejected as exc:
        return {**record, "status": "rejected", "reason": str(exc)}
    image = decoded.image
    short = min(image.size)
    if short < settings["min_side"]:
        return {
            **record,
            "status": "rejected",
            "width": image.width,
            "height": image.height,
            "reason": f"too small: {image.width}x{image.height}, shorter side {short} px "
            f"< ingest.min_side={settings['min_side']}",
        }
    record.update(measure(image))
    record.update(
        {
            "status": "ok",
            "source_format": decoded.source_format,
            "source_mode": decoded.source_mode,
            "exif_transposed": decoded.exif_transposed,
            "icc_converted": decoded.icc_converted,
            "had_alpha": decoded.had_alpha,
            "jpeg_quality": decoded.jpeg_quality,
            "captured": decoded.captured,
        }
    )
    rules = settings["framing"]
    record["framing"] = framing.classify(image, rules["close_up_min_face"], rules["full_body_max_face"]).as_dict()
    record["colour"] = colour(image, record["framing"]["face_box"])
    record["flags"] = flags_for(record, settings)
    return record


# --- dataset-wide -------------------------------------------------------------------------------


@dataclass
class CaptureDates:
    """When the kept photos were taken (EXIF): the guide warns against photos taken far apart in time,
    when the subject's looks change."""

    earliest: str | None = None
    latest: str | None = None
    median: str | None = None
    far: list[tuple[str, str, float]] = field(default_factory=list)  # (file, date, years from the median)
    undated: list[str] = field(default_factory=list)  # files


def capture_dates(audits: list[dict], max_years: float) -> CaptureDates:
    """The span and median of the photos' capture dates, and the photos further than `max_years` from
    the median (the lower middle date of an even count, so that the result is one of the dates)."""
    dated = sorted((date.fromisoformat(a["captured"]), a["file"]) for a in audits if a.get("captured"))
    result = CaptureDates(undated=sorted(a["file"] for a in audits if not a.get("captured")))
    if not dated:
        return result
    median = dated[(len(dated) - 1) // 2][0]
    result.earliest, result.latest, result.median = (
        dated[0][0].isoformat(),
        dated[-1][0].isoformat(),
        median.isoformat(),
    )
    for when, file in dated:
        years = abs((when - median).days) / 365.25
        if years > max_years:
            result.far.append((file, when.isoformat(), round(years, 1)))
    return result


@dataclass
class SkinTones:
    """How consistent the skin's colour is across the kept photos (the guide: consistent skin tone,
    no colour imbalance). Skin, not the whole picture: a grey-world mean follows the backdrop."""

    median_ab: tuple[float, float] | None = None
    typical: str | None = None  # the file whose skin is closest to the median
    measured: int = 0  # photos with a face to measure
    outliers: list[tuple[str, float, str]] = field(default_factory=list)  # (file, a*b* distance, which way)


def skin_tones(audits: list[dict], max_shift: float) -> SkinTones:
    """The photos whose skin colour lies further than `max_shift` (in the CIELAB a*b* plane) from the
    dataset's median skin colour, with the direction of the shift in words."""
    skins = sorted((a["file"], a["colour"]["skin_lab"]) for a in audits if (a.get("colour") or {}).get("skin_lab"))
    result = SkinTones(measured=len(skins))
    if len(skins) < 3:  # too few to tell an outlier from the rest
        return result
    ab = np.array([[s[1], s[2]] for _, s in skins])
    median = np.median(ab, axis=0)
    distances = np.hypot(*(ab - median).T)
    result.median_ab = (round(float(median[0]), 1), round(float(median[1]), 1))
    result.typical = skins[int(np.argmin(distances))][0]
    for (file, _), (da, db), distance in zip(skins, ab - median, distances):
        if distance > max_shift:
            ways = [("redder" if da > 0 else "greener", abs(da)), ("yellower" if db > 0 else "bluer", abs(db))]
            way = " and ".join(w for w, v in sorted(ways, key=lambda x: -x[1]) if v > max_shift / 2) or ways[0][0]
            result.outliers.append((file, round(float(distance), 1), way))
    return result
