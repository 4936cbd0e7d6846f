"""Decode photos safely to 8-bit sRGB RGB.

Everything that can go wrong with a real photo folder ends here as an `ImageRejected` with a
reason a person can act on; callers record the reason and carry on with the other images.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms, ImageFile, ImageOps

ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file is an error, never silently grey
# decode_rgb checks the declared size against ingest.max_megapixels before any pixel is decoded and
# names the limit; Pillow's own guard would stop at a fixed 89 MP with a message about Pillow.
Image.MAX_IMAGE_PIXELS = None


class ImageRejected(Exception):
    """The file cannot be used as a training image; str(exc) says why and what to do."""


@dataclass
class Decoded:
    image: Image.Image  # RGB, 8 bits per channel, sRGB, EXIF orientation applied
    source_format: str
    source_mode: str
    source_size: tuple[int, int]  # width, height as stored, before EXIF rotation
    exif_transposed: bool
    icc_converted: bool
    had_alpha: bool
    jpeg_quality: int | None  # estimated from the quantisation tables; None when not a JPEG
    captured: str | None = None  # the EXIF capture date, YYYY-MM-DD; None without one


def _looks_like_text(head: bytes) -> bool:
    if not head:
        return False
    printable = sum(32 <= b < 127 or b in (9, 10, 13) for b in head)
    return printable / len(head) > 0.95


def decode_rgb(path: str | Path, max_megapixels: float, alpha_background=(255, 255, 255)) -> Decoded:
    """Decode one photo to 8-bit sRGB RGB, or raise ImageRejected saying why it cannot be used."""
    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        raise ImageRejected("empty file (0 bytes): the copy probably failed; copy the photo again")
    with path.open("rb") as fh:
        head = fh.read(512)
    try:
        im = Image.open(path)  # reads the header only
    except Image.UnidentifiedImageError:
        if _looks_like_text(head):
            raise ImageRejected(
                f"not an image: the file holds text (starts {head[:30]!r}) under an image extension"
            ) from None
        raise ImageRejected("not an image: Pillow cannot identify the file's format") from None
    with im:
        width, height = im.size
        megapixels = width * height / 1e6
        if megapixels > max_megapixels:
            raise ImageRejected(
                f"declares {width}x{height} pixels ({megapixels:.0f} MP), over "
                f"ingest.max_megapixels={max_megapixels:g} (decompression-bomb guard); "
                "downscale it, or raise the limit if the photo is genuine"
            )
        frames = getattr(im, "n_frames", 1)
        if frames > 1 and im.format in ("GIF", "PNG", "WEBP"):
            raise ImageRejected(
                f"animated {im.format} with {frames} frames: charlora does not guess which frame "
                "you meant; export the frame you want as a PNG"
            )
        source_format, source_mode = im.format or "unknown", im.mode
        jpeg_quality = estimate_jpeg_quality(im) if im.format == "JPEG" else None
        try:
            im.load()
        except (OSError, SyntaxError, ValueError) as exc:
            raise ImageRejected(f"truncated or corrupt image data ({exc}); re-export or copy the photo again") from None
        icc = im.info.get("icc_profile")
        exif_transposed = _orientation(im) not in (None, 1)
        captured = capture_date(im)
        rgb, had_alpha = _to_rgb8(ImageOps.exif_transpose(im), alpha_background)
        icc_converted = False
        if icc:
            rgb, icc_converted = _to_srgb(rgb, icc, source_mode), True
    return Decoded(
        rgb,
        source_format,
        source_mode,
        (width, height),
        bool(exif_transposed),
        icc_converted,
        had_alpha,
        jpeg_quality,
        captured,
    )


def _orientation(im: Image.Image) -> int | None:
    try:
        return im.getexif().get(0x0112)
    except Exception:  # broken EXIF blocks are common; orientation is then unknown
        return None


EXIF_IFD, DATE_TIME_ORIGINAL, DATE_TIME_DIGITIZED, DATE_TIME = 0x8769, 0x9003, 0x9004, 0x0132


def capture_date(im: Image.Image) -> str | None:
    """When the photo was taken, from EXIF: DateTimeOriginal, else DateTimeDigitized, else the file's
    DateTime; as YYYY-MM-DD. None when there is no valid date (drawings, scans, stripped metadata)."""
    try:
        exif = im.getexif()
        sub = exif.get_ifd(EXIF_IFD)
        candidates = [sub.get(DATE_TIME_ORIGINAL), sub.get(DATE_TIME_DIGITIZED), exif.get(DATE_TIME)]
    except Exception:  # a broken EXIF block: no date
        return None
    for value in candidates:
        if isinstance(value, bytes):
            value = value.decode("ascii", "replace")
        if not isinstance(value, str):
            continue
        try:
            return datetime.strptime(value.strip("\x00 ")[:10], "%Y:%m:%d").date().isoformat()
        except ValueError:  # "0000:00:00 00:00:00" and other placeholders
            continue
    return None


def _to_rgb8(im: Image.Image, alpha_background) -> tuple[Image.Image, bool]:
    """Any Pillow mode -> 8-bit RGB. Alpha is composited onto `alpha_background`."""
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        values = np.asarray(im, dtype=np.float64)
        if mode == "F" and values.max(initial=0) <= 1.0:
            values = values * 255.0
        elif values.max(initial=0) > 255:
            values = values / 257.0  # 16-bit range -> 8-bit range
        gray = Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), "L")
        return gray.convert("RGB"), False
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        mode = im.mode
    has_alpha = mode in ("RGBA", "LA", "PA", "La", "RGBa")
    if has_alpha:
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, tuple(alpha_background) + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB"), True
    return im.convert("RGB"), False  # RGB, L, 1, CMYK, YCbCr, LAB, HSV


def _to_srgb(rgb: Image.Image, icc: bytes, source_mode: str) -> Image.Image:
    """Convert pixels tagged with an embedded colour profile to sRGB (CMYK keeps Pillow's conversion)."""
    if source_mode == "CMYK":
        return rgb  # the profile describes CMYK values; Pillow already produced RGB from them
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if ImageCms.getProfileInfo(profile).strip().lower().startswith("srgb"):
            return rgb
        return ImageCms.profileToProfile(rgb, profile, ImageCms.createProfile("sRGB"), outputMode="RGB")
    except (ImageCms.PyCMSError, OSError, ValueError):
        return rgb  # an unreadable profile: keep the pixels as they are


# Annex K of the JPEG standard: the base luminance quantisation table that libjpeg scales by quality.
_STD_LUMINANCE = np.array(
    [
        16,
        11,
        10,
        16,
        24,
        40,
        51,
        61,
        12,
        12,
        14,
        19,
        26,
        58,
        60,
        55,
        14,
        13,
        16,
        24,
        40,
        57,
        69,
        56,
        14,
        17,
        22,
        29,
        51,
        87,
        80,
        62,
        18,
        22,
        37,
        56,
        68,
        109,
        103,
        77,
        24,
        35,
        55,
        64,
        81,
        104,
        113,
        92,
        49,
        64,
        78,
        87,
        103,
        121,
        120,
        101,
        72,
        92,
        95,
        98,
        112,
        100,
        103,
        99,
    ],
    dtype=np.float64,
)


def estimate_jpeg_quality(im: Image.Image) -> int | None:
    """Estimate the libjpeg quality setting (1-100) that produced the luminance table.

    libjpeg builds each table as std * scale / 100 with scale = 5000/q (q < 50) or 200 - 2q;
    inverting the mean ratio gives q. Tables from other encoders give a comparable figure.
    """
    tables = getattr(im, "quantization", None)
    if not tables or 0 not in tables:
        return None
    # Pillow gives the table in natural (row-major) order, as _STD_LUMINANCE is written.
    table = np.asarray(tables[0], dtype=np.float64)[:64]
    if table.max() <= 1.0:
        return 100
    scale = float(np.mean(table * 100.0 / _STD_LUMINANCE))
    quality = (200.0 - scale) / 2.0 if scale <= 100.0 else 5000.0 / scale
    return int(np.clip(round(quality), 1, 100))
