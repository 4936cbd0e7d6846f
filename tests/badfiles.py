"""Makers of the junk a real photo folder holds, and of awkward-but-valid images (deterministic)."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def photo(width=384, height=512, seed=0) -> Image.Image:
    """A smooth, structured RGB test picture (not noise: hashes and sharpness behave as on photos)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(width, height)
    channels = [np.sin((x * rng.uniform(3, 9) + y * rng.uniform(3, 9)) * np.pi + rng.uniform(0, 6)) for _ in range(3)]
    arr = (np.stack(channels, -1) * 100 + 128).clip(0, 255).astype(np.uint8)
    return Image.fromarray(arr, "RGB")


def zero_byte(path: Path) -> None:
    path.write_bytes(b"")


def text_as_image(path: Path) -> None:
    path.write_text("These are my notes about the shoot, not a photo.\n" * 20)


def truncated_jpeg(path: Path) -> None:
    photo(seed=3).save(path, "JPEG", quality=95)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def animated_gif(path: Path) -> None:
    frames = [photo(seed=s).convert("P") for s in range(3)]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def decompression_bomb_png(path: Path, side=60000) -> None:
    """A tiny PNG file that declares side x side pixels."""
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b""))


def cmyk_jpeg(path: Path) -> None:
    photo(seed=4).convert("CMYK").save(path, "JPEG", quality=95)


def palette_png(path: Path) -> None:
    photo(seed=5).quantize(64).save(path, "PNG")


def grey_alpha_png(path: Path) -> None:
    grey = photo(seed=6).convert("L")
    alpha = Image.new("L", grey.size, 255)
    alpha.paste(0, (0, 0, grey.width // 4, grey.height))  # left quarter transparent
    Image.merge("LA", (grey, alpha)).save(path, "PNG")


def sixteen_bit_png(path: Path) -> None:
    grey = np.asarray(photo(seed=7).convert("L"), dtype=np.uint16) * 257
    Image.fromarray(grey).save(path, "PNG")  # uint16 -> mode I;16


def exif_rotated_jpeg(path: Path, upright: Image.Image) -> None:
    """Stored sideways with EXIF orientation 6, as phones write portrait photos."""
    exif = Image.Exif()
    exif[0x0112] = 6
    upright.rotate(90, expand=True).save(path, "JPEG", quality=95, exif=exif)


def reencoded(image: Image.Image, quality: int) -> Image.Image:
    """The image after a round trip through JPEG at `quality` (a re-saved copy)."""
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def cropped(image: Image.Image, fraction: float) -> Image.Image:
    """The image with `fraction` of its width and height cut from each side."""
    dx, dy = round(image.width * fraction), round(image.height * fraction)
    return image.crop((dx, dy, image.width - dx, image.height - dy))
