"""Crafted near-duplicates and hard negatives, for the dedup tests and benchmarks/dedup_eval.py.

Real photos that ship with scikit-image and matplotlib (offline), each edit a curator calls a copy
of the photo, and second captures of one scene (a burst) that must stay apart."""

from __future__ import annotations

import dataclasses

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from badfiles import cropped, reencoded

REAL_PHOTOS = [
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "camera",
    "coins",
    "moon",
    "immunohistochemistry",
    "horse",
    "brick",
    "grass",
    "gravel",
    "clock",
]


def real_photos() -> dict[str, Image.Image]:
    """scikit-image's bundled photos and matplotlib's grace_hopper.jpg, as RGB."""
    import os

    import matplotlib
    import skimage.data

    photos = {}
    for name in REAL_PHOTOS:
        pixels = getattr(skimage.data, name)()
        if pixels.dtype != np.uint8:
            pixels = (pixels.astype(np.float64) / pixels.max() * 255).astype(np.uint8)
        photos[name] = Image.fromarray(pixels).convert("RGB")
    hopper = os.path.join(matplotlib.get_data_path(), "sample_data", "grace_hopper.jpg")
    photos["grace_hopper"] = Image.open(hopper).convert("RGB")
    return photos


def rotated(image: Image.Image, degrees: float) -> Image.Image:
    """Rotated about the centre and cut to the largest frame of the same shape without empty corners."""
    turned = image.rotate(degrees, resample=Image.BICUBIC)
    t, (w, h) = abs(np.radians(degrees)), image.size
    keep = 1 / (np.cos(t) + np.sin(t) * max(w / h, h / w))
    cw, ch = w * keep, h * keep
    return turned.crop((round((w - cw) / 2), round((h - ch) / 2), round((w + cw) / 2), round((h + ch) / 2)))


def boxed(image: Image.Image, colour: tuple[int, int, int], wider: bool) -> Image.Image:
    """Pasted off-centre on a plain canvas: pillarboxed (wider) or letterboxed (taller)."""
    w, h = image.size
    size = (w * 3 // 2, h) if wider else (w, h * 7 // 5)
    canvas = Image.new("RGB", size, colour)
    canvas.paste(image, ((size[0] - w) // 3, (size[1] - h) // 2))
    return canvas


def wedged(image: Image.Image, degrees: float) -> Image.Image:
    """Rotated about the centre on the same canvas: black wedges fill the corners it leaves empty."""
    return image.rotate(degrees, resample=Image.BICUBIC)


def turned_and_boxed(image: Image.Image, degrees: float, colour: tuple[int, int, int]) -> Image.Image:
    """Rotated on a canvas grown to hold it all (wedges in `colour`), then boxed in `colour`."""
    turned = image.convert("RGB").rotate(degrees, resample=Image.BICUBIC, expand=True, fillcolor=colour)
    canvas = Image.new("RGB", (turned.width + 40, turned.height + 60), colour)
    canvas.paste(turned, (20, 30))
    return canvas


def half(image: Image.Image) -> Image.Image:
    return image.resize((image.width // 2, image.height // 2), Image.LANCZOS)


def brightness(image: Image.Image, factor: float) -> Image.Image:
    return ImageEnhance.Brightness(image).enhance(factor)


def contrast(image: Image.Image, factor: float) -> Image.Image:
    return ImageEnhance.Contrast(image).enhance(factor)


# Every edit of the issue (rescaled to 50 %, JPEG down to quality 30, crops up to 10 % a side,
# rotations up to 5 degrees, mirror images, plain borders, brightness/contrast 15 %) and pairs of them.
EDITS = {
    "half size": half,
    "JPEG q30": lambda im: reencoded(im, 30),
    "crop 10%": lambda im: cropped(im, 0.10),
    "crop 10% one side": lambda im: im.crop((0, 0, int(im.width * 0.9), im.height)),
    "rotate 3": lambda im: rotated(im, 3),
    "rotate -5": lambda im: rotated(im, -5),
    "mirror": ImageOps.mirror,
    "letterbox black": lambda im: boxed(im, (0, 0, 0), wider=False),
    "pillarbox white": lambda im: boxed(im, (250, 250, 250), wider=True),
    "brighter 15%": lambda im: brightness(im, 1.15),
    "darker 15%": lambda im: brightness(im, 0.85),
    "contrast -15%": lambda im: contrast(im, 0.85),
    "contrast +15%": lambda im: contrast(im, 1.15),
    "crop+rotate": lambda im: rotated(cropped(im, 0.08), 4),
    "rotate 3 wedges": lambda im: wedged(im, 3),
    "rotate 2 boxed white": lambda im: turned_and_boxed(im, 2, (255, 255, 255)),
    "mirror+JPEG q40": lambda im: reencoded(ImageOps.mirror(im), 40),
    "half+pillarbox": lambda im: boxed(half(im), (20, 20, 20), wider=True),
    "bright+crop": lambda im: cropped(brightness(im, 1.12), 0.07),
    "rotate+JPEG": lambda im: reencoded(rotated(im, -3), 35),
}
MIRRORED = {"mirror", "mirror+JPEG q40"}


def demo_bursts() -> dict[tuple[str, str], Image.Image]:
    """(demo shot, name) -> the same scene with another expression (a blink's worth of change) or,
    beyond close-ups, another arm pose: same background, same framing, the subject changed."""
    from charlora import demo, demo_render

    bursts = {}
    for shot in demo.SHOTS:
        base = shot.name.rsplit(".", 1)[0]
        other = "neutral" if shot.expression != "neutral" else "smiling"
        bursts[base, f"{base} [burst: {other}]"] = demo_render.render(dataclasses.replace(shot, expression=other))
        if shot.framing != "close_up":  # the arms are out of a close-up's frame
            pose = "waving" if shot.pose != "waving" else "standing"
            bursts[base, f"{base} [burst: {pose}]"] = demo_render.render(dataclasses.replace(shot, pose=pose))
    return bursts


def real_bursts(photos: dict[str, Image.Image]) -> dict[tuple[str, str], Image.Image]:
    """(photo, name) -> the photo with one region changed: twisted (a head turn) or a block of it
    moved 12 px sideways (a gesture), the rest untouched."""
    from skimage.transform import swirl

    bursts = {}
    for name in ["astronaut", "chelsea", "coffee", "grace_hopper", "rocket", "horse"]:
        pixels = np.asarray(photos[name])
        h, w = pixels.shape[:2]
        turned = swirl(pixels, center=(w * 0.5, h * 0.35), strength=4, radius=min(h, w) * 0.2)
        bursts[name, f"{name} [burst: turned]"] = Image.fromarray((turned * 255).round().astype(np.uint8))
        moved = pixels.copy()
        y0, y1, x0, x1 = int(h * 0.25), int(h * 0.55), int(w * 0.35), int(w * 0.65)
        moved[y0:y1, x0 + 12 : x1 + 12] = pixels[y0:y1, x0:x1]
        bursts[name, f"{name} [burst: moved]"] = Image.fromarray(moved)
    return bursts
