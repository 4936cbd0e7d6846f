"""Drawing the demo photo set of demo.py: a figure on a large canvas, cropped to the framing."""

from __future__ import annotations

import io
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageOps

from charlora import atomic
from charlora.demo import (
    HAND_MASKED_BACKGROUNDS,
    OUTFITS,
    SHOTS,
    TOO_SMALL,
    TRUNCATED,
    WINDOW_HEADS,
    Shot,
)

# --- drawing --------------------------------------------------------------------------------

HEAD = 200  # head height in canvas pixels; the figure is 7.5 heads tall
CANVAS = (2200, 2000)  # wide enough that a shifted full-body crop stays on the canvas


def _background(kind: str, rng: np.random.Generator) -> Image.Image:
    w, h = CANVAS
    y = np.linspace(0, 1, h)[:, None, None]
    if kind == "grey studio":
        arr = np.broadcast_to(np.array([150, 150, 152]) - 30 * y, (h, w, 3))
    elif kind == "beige gradient":
        arr = np.broadcast_to(np.array([228, 212, 186]) - 70 * y, (h, w, 3))
    elif kind == "blue wall":
        arr = np.broadcast_to(np.array([96, 128, 170]) - 20 * y, (h, w, 3))
    elif kind == "sky":
        arr = np.broadcast_to(np.array([120, 170, 230]) + 60 * y, (h, w, 3))
    elif kind in ("park", "beach"):
        ground = (90, 150, 70) if kind == "park" else (220, 200, 150)
        arr = np.where(y < 0.55, np.array([130, 180, 235]) + 50 * y, np.array(ground) - 40 * (y - 0.55))
        arr = np.broadcast_to(arr, (h, w, 3))
    elif kind == "brick wall":
        arr = np.full((h, w, 3), (150, 70, 55), dtype=np.float64)
        rows = (np.arange(h) // 60)[:, None]
        cols = (np.arange(w)[None, :] + (rows % 2) * 60) // 120
        mortar = (np.arange(h)[:, None] % 60 < 6) | ((np.arange(w)[None, :] + (rows % 2) * 60) % 120 < 6)
        arr = arr + ((rows * 7 + cols * 13) % 5)[..., None] * 6
        arr[mortar] = (200, 195, 185)
    else:
        raise ValueError(f"unknown demo background {kind!r}")
    image = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
    if kind == "park":
        draw = ImageDraw.Draw(image)
        for i in range(6):
            x = int(rng.integers(0, w))
            draw.rectangle([x - 18, 700, x + 18, 1150], fill=(90, 64, 40))
            draw.ellipse([x - 170, 420, x + 170, 800], fill=(50 + 10 * i, 110 + 5 * i, 50))
    return image


def _limb(draw, a, b, width, fill):
    draw.line([a, b], fill=fill, width=width)
    r = width // 2
    for x, y in (a, b):
        draw.ellipse([x - r, y - r, x + r, y + r], fill=fill)


def _draw_figure(image: Image.Image, shot: Shot, cx: float, top: float) -> None:
    d = ImageDraw.Draw(image)
    u = HEAD
    skin = shot.look.skin
    top_colour, bottom_colour = OUTFITS[shot.outfit]
    sitting = shot.pose == "sitting"
    shoulder_y, hip_y = top + 1.35 * u, top + 3.7 * u
    knee_y, foot_y = top + 5.6 * u, top + 7.5 * u
    sw = 0.95 * u  # half shoulder width
    # legs
    if sitting:
        d.rectangle([cx - 0.9 * u, hip_y + 0.3 * u, cx + 1.9 * u, foot_y], fill=(110, 84, 60))  # a box to sit on
        for dx in (-0.3 * u, 0.3 * u):
            knee = (cx + dx + 1.6 * u, hip_y + 0.1 * u)
            _limb(d, (cx + dx, hip_y), knee, int(0.42 * u), bottom_colour)
            _limb(d, knee, (knee[0] + 0.1 * u, foot_y - 0.9 * u), int(0.36 * u), bottom_colour)
    else:
        spread = 0.55 * u if shot.pose == "walking" else 0.2 * u
        for side in (-1, 1):
            hip = (cx + side * 0.32 * u, hip_y)
            knee = (cx + side * (0.3 * u + spread * 0.5), knee_y)
            foot = (cx + side * (0.3 * u + spread), foot_y)
            _limb(d, hip, knee, int(0.42 * u), bottom_colour)
            _limb(d, knee, foot, int(0.36 * u), bottom_colour)
            d.ellipse([foot[0] - 0.3 * u, foot[1] - 0.12 * u, foot[0] + 0.3 * u, foot[1] + 0.12 * u], fill=(40, 30, 28))
    # torso (a dress flares to the knees)
    if shot.outfit == "red dress":
        d.polygon(
            [(cx - sw, shoulder_y), (cx + sw, shoulder_y), (cx + 1.3 * u, knee_y), (cx - 1.3 * u, knee_y)],
            fill=top_colour,
        )
    else:
        d.polygon(
            [
                (cx - sw, shoulder_y),
                (cx + sw, shoulder_y),
                (cx + 0.75 * u, hip_y + 0.2 * u),
                (cx - 0.75 * u, hip_y + 0.2 * u),
            ],
            fill=top_colour,
        )
    d.rectangle([cx - 0.16 * u, top + 0.9 * u, cx + 0.16 * u, shoulder_y + 0.1 * u], fill=skin)  # neck
    # arms
    arm_w, sleeve = int(0.3 * u), top_colour
    for side in (-1, 1):
        shoulder = (cx + side * 0.85 * u, shoulder_y + 0.15 * u)
        if shot.pose == "arms up" or (shot.pose == "waving" and side == 1):
            elbow = (shoulder[0] + side * 0.7 * u, shoulder[1] - 0.9 * u)
            hand = (elbow[0] + side * 0.1 * u, elbow[1] - 1.0 * u)
        elif shot.pose == "hands on hips":
            elbow = (shoulder[0] + side * 0.8 * u, shoulder[1] + 0.9 * u)
            hand = (cx + side * 0.7 * u, hip_y - 0.1 * u)
        elif shot.pose == "arms crossed":
            elbow = (shoulder[0] + side * 0.15 * u, shoulder[1] + 1.3 * u)
            hand = (cx - side * 0.6 * u, shoulder[1] + 1.0 * u)
        elif sitting:
            elbow = (shoulder[0] + side * 0.1 * u, shoulder[1] + 1.2 * u)
            hand = (cx + side * 0.4 * u + 0.8 * u, hip_y)
        else:
            elbow = (shoulder[0] + side * 0.2 * u, shoulder[1] + 1.3 * u)
            hand = (elbow[0] + side * 0.05 * u, elbow[1] + 1.2 * u)
        _limb(d, shoulder, elbow, arm_w, sleeve)
        _limb(d, elbow, hand, int(0.24 * u), skin)
    _draw_face(d, shot, cx, top)


def _draw_face(d: ImageDraw.ImageDraw, shot: Shot, cx: float, top: float) -> None:
    u = HEAD
    look = shot.look
    fw, fh = 0.72 * u, 0.95 * u
    fy = top + 0.05 * u
    d.ellipse([cx - fw / 2 - 0.1 * u, fy - 0.12 * u, cx + fw / 2 + 0.1 * u, fy + 0.75 * fh], fill=look.hair)
    d.ellipse([cx - fw / 2, fy, cx + fw / 2, fy + fh], fill=look.skin)
    d.chord(
        [cx - fw / 2 - 0.02 * u, fy - 0.1 * u, cx + fw / 2 + 0.02 * u, fy + 0.45 * fh], 180, 360, fill=look.hair
    )  # fringe
    eye_y = fy + 0.42 * fh
    brow_lift = {"surprised": 0.05, "serious": -0.02}.get(shot.expression, 0.0) * u
    for side in (-1, 1):
        ex = cx + side * 0.16 * u
        d.rectangle(
            [ex - 0.1 * u, eye_y - 0.12 * u - brow_lift, ex + 0.1 * u, eye_y - 0.09 * u - brow_lift], fill=(60, 40, 32)
        )
        d.ellipse([ex - 0.08 * u, eye_y - 0.04 * u, ex + 0.08 * u, eye_y + 0.04 * u], fill=(245, 245, 245))
        d.ellipse([ex - 0.04 * u, eye_y - 0.04 * u, ex + 0.04 * u, eye_y + 0.04 * u], fill=look.eye)
    d.polygon([(cx, eye_y), (cx - 0.05 * u, eye_y + 0.2 * u), (cx + 0.05 * u, eye_y + 0.2 * u)], fill=(200, 150, 124))
    my = eye_y + 0.31 * u
    lips = (160, 70, 70)
    if shot.expression == "smiling":
        d.chord([cx - 0.15 * u, my - 0.07 * u, cx + 0.15 * u, my + 0.07 * u], 0, 180, fill=lips)
    elif shot.expression == "surprised":
        d.ellipse([cx - 0.06 * u, my - 0.05 * u, cx + 0.06 * u, my + 0.07 * u], fill=(90, 30, 30))
    else:
        d.rectangle([cx - 0.11 * u, my, cx + 0.11 * u, my + 0.025 * u], fill=lips)


def _apply_light(image: Image.Image, light: str, left: int) -> Image.Image:
    """The light on a crop of the canvas whose left edge is at canvas column `left` (side light
    falls off across the whole canvas)."""
    arr = np.asarray(image, dtype=np.float64)
    w = arr.shape[1]
    if light == "side light":
        arr = arr * np.linspace(1.15, 0.6, CANVAS[0])[left : left + w][None, :, None]
    elif light == "backlight":
        arr = arr * 0.75 + 30
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def _crop_box(framing: str, size: tuple[int, int], cx: float, top: float, shift: float) -> tuple[int, ...]:
    """The canvas box of a `framing` shot of `size`, for a figure centred at `cx` whose head starts at
    `top`, moved sideways by `shift` of the box's width."""
    out_w, out_h = size
    crop_h = WINDOW_HEADS[framing] * HEAD
    crop_w = crop_h * out_w / out_h
    head_mid = top + 0.5 * HEAD
    y0 = {"close_up": head_mid - 0.45 * crop_h, "mid_shot": top - 0.35 * HEAD, "full_body": top - 0.6 * HEAD}[framing]
    x0 = cx - crop_w / 2 - shift * crop_w
    return round(x0), round(y0), round(x0 + crop_w), round(y0 + crop_h)


def head_box(framing: str, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """Where the head, hair included, of a figure standing centred lies in a `framing` shot of `size`:
    (left, top, right, bottom) in the shot's pixels. The hair is drawn 0.46 heads either side of the
    figure's centre and from 0.07 heads above the head's top to 0.76 below it (_draw_face); the box
    keeps a tenth of a head more on each side, for the figure's sway on the canvas and a sample's."""
    cx, top = CANVAS[0] / 2, 180.0
    x0, y0, x1, y1 = _crop_box(framing, size, cx, top, 0.0)
    scale = size[0] / (x1 - x0)
    left, right = cx - 0.56 * HEAD, cx + 0.56 * HEAD
    upper, lower = top - 0.17 * HEAD, top + 0.86 * HEAD
    return (
        max(0, round((left - x0) * scale)),
        max(0, round((upper - y0) * scale)),
        min(size[0], round((right - x0) * scale)),
        min(size[1], round((lower - y0) * scale)),
    )


def max_shift(framing: str, size: tuple[int, int]) -> float:
    """The largest sideways shift (share of the crop's width) at which a `framing` shot of `size` stays
    on the canvas wherever the figure stands; negative where it cannot fit at all."""
    crop_w = WINDOW_HEADS[framing] * HEAD * size[0] / size[1]
    return (CANVAS[0] / 2 - 40 - crop_w / 2) / crop_w - 0.04


def render(shot: Shot, mask: bool = False) -> Image.Image:
    """Draw the shot at its output size: figure on a large canvas, cropped to the framing, downscaled.

    With `mask=True`, the same crop of the figure alone: an exact subject mask (mode L).
    """
    rng = np.random.default_rng(shot.seed)
    canvas = _background(shot.background, rng)
    cx, top = CANVAS[0] / 2 + rng.uniform(-40, 40), 180.0
    if mask:
        canvas = Image.new("RGB", CANVAS, (0, 0, 0))  # every figure colour is brighter than black
    _draw_figure(canvas, shot, cx, top)
    box = _crop_box(shot.framing, shot.size, cx, top, shot.shift + rng.uniform(-0.04, 0.04))
    image = canvas.crop(box)
    if mask:
        return image.convert("L").point(lambda v: 255 if v > 0 else 0).resize(shot.size, Image.LANCZOS)
    image = _apply_light(image, shot.light, box[0])
    image = image.resize(shot.size, Image.LANCZOS).filter(ImageFilter.GaussianBlur(0.6))
    noise = rng.normal(0, 3.0, (shot.size[1], shot.size[0], 3))
    return Image.fromarray(np.clip(np.asarray(image, dtype=np.float64) + noise, 0, 255).astype(np.uint8), "RGB")


def backdrop_crop(
    background: str, framing: str, light: str, shift: float, seed: int, size: tuple[int, int]
) -> Image.Image:
    """The backdrop alone as `render` frames and lights it (no figure, no blur or noise), at `size`:
    what pixel_probe holds a sample's backdrop against."""
    canvas, cx = _backdrop_canvas(background, seed)
    box = _crop_box(framing, size, cx, 180.0, shift)
    return _apply_light(canvas.crop(box), light, box[0]).resize(size, Image.BOX)


@lru_cache(maxsize=2)  # pixel_probe asks for both seeds of one backdrop in turn, every light and shift
def _backdrop_canvas(background: str, seed: int) -> tuple[Image.Image, float]:
    """The whole canvas of `background` at `seed`, and the centre of the figure it would hold."""
    rng = np.random.default_rng(seed)
    canvas = _background(background, rng)
    return canvas, CANVAS[0] / 2 + rng.uniform(-40, 40)


# --- writing the dataset ------------------------------------------------------------------------


def _encode(image: Image.Image, name: str, special: str = "", quality: int = 96) -> bytes:
    buffer = io.BytesIO()
    suffix = Path(name).suffix.lower()
    if special == "exif-rotated":
        # stored sideways, as a phone writes it; EXIF orientation 6 says "rotate 90 deg clockwise to view"
        exif = Image.Exif()
        exif[0x0112] = 6
        image.rotate(90, expand=True).save(buffer, "JPEG", quality=quality, exif=exif)
    elif special == "cmyk":
        image.convert("CMYK").save(buffer, "JPEG", quality=quality)
    elif special == "palette":
        image.quantize(256, dither=Image.Dither.FLOYDSTEINBERG).save(buffer, "PNG")
    elif suffix in (".jpg", ".jpeg"):
        image.save(buffer, "JPEG", quality=quality)
    elif suffix == ".webp":
        image.save(buffer, "WEBP", lossless=True)
    else:
        image.save(buffer, "PNG")
    return buffer.getvalue()


def build_demo(out_dir: str | Path, progress=lambda it, **kw: it) -> None:
    """Write images/ and captions/ of the demo dataset under `out_dir` (atomically, file by file)."""
    out_dir = Path(out_dir)
    rendered = {}
    for shot in progress(SHOTS, desc="drawing demo photos"):
        rendered[shot.name] = render(shot)
        atomic.write_bytes(out_dir / "images" / shot.name, _encode(rendered[shot.name], shot.name, shot.special))
        if shot.caption:
            atomic.write_text(out_dir / "captions" / (Path(shot.name).stem + ".txt"), shot.caption + "\n")
        if shot.background in HAND_MASKED_BACKGROUNDS:
            atomic.save_image(render(shot, mask=True), out_dir / "masks" / (Path(shot.name).stem + ".png"))
    small = rendered["studio_smile_closeup.png"]
    small = small.resize((small.width * 3 // 4, small.height * 3 // 4), Image.LANCZOS)
    atomic.write_bytes(out_dir / "images" / "studio_smile_closeup_small.jpg", _encode(small, "x.jpg", quality=80))
    walk = rendered["park_walk.jpg"]
    dx, dy = round(walk.width * 0.04), round(walk.height * 0.04)
    bright = ImageEnhance.Brightness(walk.crop((dx, dy, walk.width - dx, walk.height - dy))).enhance(1.12)
    atomic.write_bytes(out_dir / "images" / "park_walk_bright.jpg", _encode(bright, "x.jpg"))
    copy = Image.open(io.BytesIO(_encode(rendered["portrait_neutral.png"], "x.jpg", quality=92))).convert("RGB")
    atomic.write_bytes(out_dir / "images" / "portrait neutral (copy).png", _encode(copy, "x.png"))
    flipped = ImageOps.mirror(rendered["brick_hands_hips.png"]).rotate(2, resample=Image.BICUBIC)
    dx, dy = round(flipped.width * 0.05), round(flipped.height * 0.05)  # the corners the turn left empty
    flipped = flipped.crop((dx, dy, flipped.width - dx, flipped.height - dy))
    atomic.write_bytes(out_dir / "images" / "brick_hands_hips_flipped.jpg", _encode(flipped, "x.jpg", quality=85))
    thumb = rendered["studio_wave_mid.png"].resize((150, 200), Image.LANCZOS)
    atomic.write_bytes(out_dir / "images" / TOO_SMALL, _encode(thumb, TOO_SMALL))
    beach = render(Shot(TRUNCATED, "full_body", pose="waving", background="beach", seed=20))
    whole = _encode(beach, TRUNCATED)
    atomic.write_bytes(out_dir / "images" / TRUNCATED, whole[: len(whole) * 6 // 10])
