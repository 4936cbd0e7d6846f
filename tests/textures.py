"""Generated pictures without a person, for the face detector's and dedup's tests and benchmarks
(face_eval.py, dedup_eval.py): foliage (where Haar cascades saw faces), clouds, bark, dark wallpapers,
plain walls, skies, night shots and families of look-alikes. Deterministic by seed."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFilter


def foliage(seed: int, size=(768, 1024)) -> Image.Image:
    """Overlapping leaves: ellipses with a midrib, many greens and shades, on dark gaps."""
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", size, (20, 35, 15))
    for _ in range(900):
        w, h = rng.uniform(20, 70), rng.uniform(8, 28)
        leaf = Image.new("RGBA", (int(w * 2.2), int(w * 2.2)), (0, 0, 0, 0))
        draw = ImageDraw.Draw(leaf)
        c = leaf.width / 2
        green = (int(rng.uniform(30, 120)), int(rng.uniform(80, 200)), int(rng.uniform(20, 90)))
        draw.ellipse((c - w, c - h, c + w, c + h), fill=(*green, 255))
        draw.line((c - w, c, c + w, c), fill=tuple(min(255, v + 40) for v in green) + (255,), width=2)
        leaf = leaf.rotate(rng.uniform(0, 360), resample=Image.BICUBIC)
        image.paste(leaf, (int(rng.uniform(-40, size[0])), int(rng.uniform(-40, size[1]))), leaf)
    light = np.asarray(Image.fromarray(rng.integers(60, 255, (6, 5), dtype=np.uint8)).resize(size, Image.BICUBIC))
    return Image.fromarray((np.asarray(image) * (light[..., None] / 255.0)).astype(np.uint8))


def clouds(seed: int, size=(1024, 768)) -> Image.Image:
    rng = np.random.default_rng(seed)
    field = sum(
        np.asarray(Image.fromarray(rng.integers(0, 255, (s, s), dtype=np.uint8)).resize(size, Image.BICUBIC), float)
        / 2**i
        for i, s in enumerate((4, 8, 16, 32, 64))
    )
    field = (field - field.min()) / np.ptp(field)
    sky = np.array([70, 130, 210], float)
    return Image.fromarray((sky * (1 - field[..., None]) + 245 * field[..., None]).astype(np.uint8))


def bark(seed: int, size=(768, 1024)) -> Image.Image:
    rng = np.random.default_rng(seed)
    noise = rng.normal(0, 1, (size[1] // 4, size[0] // 16))
    grain = np.asarray(
        Image.fromarray(((noise - noise.min()) / np.ptp(noise) * 255).astype(np.uint8)).resize(size, Image.BICUBIC),
        float,
    )
    brown = np.array([95, 65, 40], float)
    return Image.fromarray(np.clip(brown * (0.5 + grain[..., None] / 255), 0, 255).astype(np.uint8)).filter(
        ImageFilter.GaussianBlur(1)
    )


def wallpaper(seed: int, size=(768, 1024)) -> Image.Image:
    """A dark, low-contrast patterned wallpaper under uneven light, with sensor noise: few keypoints."""
    rng = np.random.default_rng(seed)
    base = np.array([38, 34, 52], float) + rng.uniform(-8, 8, 3)
    y, x = np.mgrid[0 : size[1], 0 : size[0]].astype(float)
    motif = np.zeros((size[1], size[0]))
    for _ in range(3):  # each seed its own design: three plane waves of its own period and direction
        angle, period = rng.uniform(0, np.pi), rng.uniform(30, 110)
        motif += np.cos(2 * np.pi * (np.cos(angle) * x + np.sin(angle) * y) / period + rng.uniform(0, 6))
    light = 0.7 + 0.5 * np.exp(
        -(((x - rng.uniform(0, size[0])) / size[0]) ** 2 + ((y - size[1] / 3) / size[1]) ** 2) * 3
    )
    pixels = (base + 7 * motif[..., None]) * light[..., None] + rng.normal(0, 2.0, (size[1], size[0], 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(0.6))


def plain_wall(seed: int, size=(1024, 768)) -> Image.Image:
    """A plain painted wall: one colour, a soft fall-off of light, fine noise."""
    rng = np.random.default_rng(seed)
    colour = rng.uniform(120, 230, 3)
    y, x = np.mgrid[0 : size[1], 0 : size[0]].astype(float)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = 0.85 + 0.15 * ((np.cos(angle) * x / size[0] + np.sin(angle) * y / size[1]) % 1.0)
    pixels = colour * ramp[..., None] + rng.normal(0, 2.5, (size[1], size[0], 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def sky(seed: int, size=(1024, 768)) -> Image.Image:
    """A clear sky: a vertical gradient from deep to pale blue with faint haze."""
    rng = np.random.default_rng(seed)
    top, bottom = np.array([40, 90, 170]) + rng.uniform(-20, 20, 3), np.array([150, 190, 230]) + rng.uniform(-15, 15, 3)
    t = np.linspace(0, 1, size[1])[:, None, None] ** rng.uniform(0.7, 1.4)
    haze = np.asarray(Image.fromarray(rng.integers(0, 255, (6, 8), dtype=np.uint8)).resize(size, Image.BICUBIC), float)
    pixels = top * (1 - t) + bottom * t + (haze[..., None] - 128) * 0.06 + rng.normal(0, 1.5, (size[1], size[0], 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def night(seed: int, size=(1024, 768)) -> Image.Image:
    """A night shot: near-black with noise, a faint glow and a few small lights."""
    rng = np.random.default_rng(seed)
    pixels = np.full((size[1], size[0], 3), 8.0) + rng.normal(0, 3, (size[1], size[0], 3))
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(3, 9))):
        cx, cy, r = rng.uniform(0, size[0]), rng.uniform(size[1] * 0.3, size[1]), rng.uniform(2, 6)
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=(255, int(rng.uniform(180, 240)), 150))
    return image.filter(ImageFilter.GaussianBlur(1.5))


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Random field blurred by `sigma` px, scaled to unit std."""
    import cv2

    field = cv2.GaussianBlur(rng.normal(size=shape).astype(np.float32), (0, 0), sigma)
    return (field - field.mean()) / field.std()


def _picture(rgb: np.ndarray, rng: np.random.Generator, grain: float) -> Image.Image:
    """A picture from float RGB with a camera's fine grain (`grain` levels) added."""
    return Image.fromarray(np.clip(rgb + rng.normal(0, grain, rgb.shape), 0, 255).round().astype(np.uint8))


def look_alikes(size: tuple[int, int] = (640, 480)) -> dict[str, Image.Image]:
    """Smooth and dark photos on which SIFT finds a handful of points, in families of look-alikes that
    are distinct photos (benchmarks/dedup_eval.py's hard negatives): dark wallpapers of one design
    (the pattern warped another way), skies (one gradient, the clouds elsewhere), plain walls of one
    paint (their own plaster, the light falling off from one side), night shots (a dark street, the
    lights elsewhere)."""
    w, h = size
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    photos = {}
    for seed in (1, 2):
        rng = np.random.default_rng(seed)
        warp = _smooth_noise(rng, (h, w), 12)
        pattern = np.sin(x / w * 6 * np.pi + 2 * warp) * np.cos(y / h * 4 * np.pi + warp)
        grey = 42 + 9 * pattern + 3 * _smooth_noise(rng, (h, w), 3)
        photos[f"dark wallpaper {seed}"] = _picture(np.stack([grey * 1.1, grey, grey * 0.8], -1), rng, 1.0)
    for seed in (1, 2, 3):
        rng = np.random.default_rng(10 + seed)
        top, bottom = np.array([70, 120, 200], np.float32), np.array([175, 200, 235], np.float32)
        rgb = top + (bottom - top) * (y / h)[..., None]
        clouds = np.zeros((h, w), np.float32)
        for _ in range(4):
            cx, cy, r = rng.uniform(0, w), rng.uniform(0, h * 0.7), rng.uniform(40, 90)
            clouds += np.exp(-((x - cx) ** 2 + ((y - cy) * 1.8) ** 2) / (2 * r * r))
        clouds = np.clip(clouds * (1 + 0.3 * _smooth_noise(rng, (h, w), 8)), 0, 1)[..., None]
        photos[f"sky {seed}"] = _picture(rgb * (1 - 0.8 * clouds) + 240 * 0.8 * clouds, rng, 1.5)
    for seed in (1, 2, 3):
        rng = np.random.default_rng(20 + seed)
        falloff = 1 - 0.12 * np.hypot(x / w - rng.uniform(-0.1, 0.1), y / h - 0.3)
        plaster = 3 * _smooth_noise(rng, (h, w), 1.2) + 2 * _smooth_noise(rng, (h, w), 6)
        rgb = np.array([205, 192, 170], np.float32) * falloff[..., None] + plaster[..., None]
        photos[f"plain wall {seed}"] = _picture(rgb, rng, 1.0)
    for seed in (1, 2, 3):
        rng = np.random.default_rng(30 + seed)
        rgb = np.array([10, 12, 22], np.float32) + (18 * (1 - y / h))[..., None] * np.array([0.4, 0.5, 1.0], np.float32)
        for _ in range(6):
            cx, cy, r = rng.uniform(0, w), rng.uniform(h * 0.3, h * 0.9), rng.uniform(3, 9)
            glow = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * r * r))[..., None]
            rgb = rgb + glow * np.array([255, 200, 120], np.float32) * rng.uniform(0.5, 1.0)
        photos[f"night street {seed}"] = _picture(rgb, rng, 2.0)
    return photos
