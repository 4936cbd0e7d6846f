"""Subject masks: white = the character (trained on), black = background (ignored by masked training).

Where a mask comes from, in order: the user's hand-fixed `<dataset>/masks/<id>.png`; else the
configured method: `rembg` (any ONNX model rembg can run, read from a local file, never
downloaded), `colour_key` (studio shots on a plain background), or `none` (everything is subject).
Generated masks are then post-processed: threshold, hole filling, dilation, feathering. The result
is always a single-channel 8-bit PNG of the image's size. rembg's model is loaded once per batch of
photos (model_pass.py: a cache by content), on the CPU or a GPU (`masks.device`: devices.py); each
photo's job post-processes its photo's model output.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from charlora import devices
from charlora.config import require_file

USER, REMBG, COLOUR_KEY, NONE = "user", "rembg", "colour_key", "none"
REMBG_CUSTOM_SESSIONS = ("u2net_custom", "dis_custom", "ben_custom")


class MaskError(ValueError):
    """A mask cannot be made or used; the message names the file and what to do."""


@dataclass
class PostProcess:
    threshold: float | None  # 0..1: binarise at this level; None keeps the model's soft edges
    fill_holes: bool
    dilate_px: int
    feather_px: float


# --- sources ------------------------------------------------------------------------------------


def read_user_mask(path: str | Path, size: tuple[int, int]) -> np.ndarray:
    """A hand-made mask as float 0..1, checked against the image's size (width, height)."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            mode, mask_size = im.mode, im.size
            if mode in ("1", "L"):
                values = np.asarray(im.convert("L"), dtype=np.float32) / 255.0
            elif mode in ("I;16", "I;16B", "I"):
                values = np.asarray(im, dtype=np.float32) / 65535.0
            elif mode in ("LA", "RGBA", "RGB", "P"):
                rgb = np.asarray(im.convert("RGB"), dtype=np.int16)
                if np.abs(rgb - rgb[..., :1]).max() > 2:
                    raise MaskError(
                        f"{path}: the mask is in colour ({mode}); save it as a greyscale "
                        "PNG, white for the subject and black for the background"
                    )
                values = rgb[..., 0].astype(np.float32) / 255.0
            else:
                raise MaskError(f"{path}: mask mode {mode} is not supported; save it as an 8-bit greyscale PNG")
    except (OSError, SyntaxError) as exc:
        raise MaskError(f"{path}: cannot read the mask ({exc})") from None
    if mask_size != tuple(size):
        raise MaskError(
            f"{path}: the mask is {mask_size[0]}x{mask_size[1]} but its photo is "
            f"{size[0]}x{size[1]} (upright, after EXIF rotation); masks must match the photo"
        )
    return values


def _border_strip(h: int, w: int) -> np.ndarray:
    """Where the backdrop shows in a studio shot: a thin strip along the top edge and the upper half of
    the side edges (the bottom edge is usually the subject: a close-up or mid shot is cut there)."""
    strip = max(2, min(h, w) // 50)
    on_border = np.zeros((h, w), bool)
    on_border[:strip] = True
    on_border[: h // 2, :strip], on_border[: h // 2, -strip:] = True, True
    return on_border


def backdrop_model(rgb: np.ndarray, iterations: int = 4) -> np.ndarray:
    """The backdrop's colour at every pixel, fitted to the border strip (`_border_strip`).

    Studio backdrops are rarely one flat colour: sweeps and lights give smooth gradients. Each
    channel is fitted as a plane in (x, y) to the strip by least squares, repeated without the
    pixels that fit worst, so a head or arm that touches the border does not pull the fit.
    """
    h, w = rgb.shape[:2]
    ys, xs = np.nonzero(_border_strip(h, w))
    step = max(1, len(ys) // 20000)
    ys, xs = ys[::step], xs[::step]
    values = rgb[ys, xs].astype(np.float64)

    def basis(y, x):
        y, x = y / h - 0.5, x / w - 0.5
        return np.stack([np.ones_like(y), x, y], axis=-1)

    design, keep = basis(ys.astype(np.float64), xs.astype(np.float64)), np.ones(len(ys), bool)
    for _ in range(iterations):
        coef, *_ = np.linalg.lstsq(design[keep], values[keep], rcond=None)
        residual = np.linalg.norm(design @ coef - values, axis=1)
        keep = residual <= max(2.5 * np.median(residual[keep]), 6.0)
    yy, xx = np.mgrid[0:h, 0:w]
    return basis(yy.astype(np.float64), xx.astype(np.float64)) @ coef


# A plain backdrop: half of the border strip within this share of `tolerance` of the fitted backdrop.
# Measured at tolerance 30: the demo's studio and plain-backdrop shots 3.0-5.2 (median distance), the
# demo's drawn brick-wall scenes (street, café, brick wall, a brick close-up) 13-19, real photos with a
# room or landscape behind the subject (scikit-image's astronaut, coffee, chelsea; grace_hopper) 20-39.
PLAIN_BACKDROP_SHARE = 1 / 3


@dataclass
class ColourKey:
    alpha: np.ndarray  # 0..1, subject = 1
    border_distance: float  # median RGB distance of the border strip from the fitted backdrop


def colour_key_mask(image: Image.Image, tolerance: float) -> ColourKey:
    """Subject = pixels that differ from the fitted backdrop (see `backdrop_model`).

    Distance is Euclidean in RGB: within `tolerance` is backdrop, beyond 1.5 x tolerance subject,
    a ramp between (soft edge). Only backdrop-like regions that touch the border count as
    background, so a shirt of the backdrop's colour inside the figure stays subject. The border's
    median distance from the fit says whether there was a plain backdrop to key out at all.
    """
    rgb = np.asarray(image, dtype=np.float32)
    distance = np.linalg.norm(rgb - backdrop_model(rgb), axis=-1)
    subject = np.clip((distance - tolerance) / (0.5 * tolerance), 0.0, 1.0)
    connected = _reaching_border(subject < 0.5)
    border = float(np.median(distance[_border_strip(*distance.shape)]))
    return ColourKey(np.where(connected, subject, 1.0).astype(np.float32), border)


class RembgMasker:
    """A rembg session over a local ONNX file. rembg looks for `<session>.onnx` under U2NET_HOME and
    would download it when absent; we point U2NET_HOME at a private folder holding a link to the
    user's file under that name, so the file is always found and nothing is fetched."""

    def __init__(self, model_path: str | Path, session: str, device: str = "cpu"):
        model_path = require_file(model_path, "masks.rembg.model", "the ONNX model for masks.method: rembg")
        self._home = tempfile.TemporaryDirectory(prefix="charlora-rembg-")
        link = Path(self._home.name) / f"{session}.onnx"
        link.symlink_to(model_path.resolve())
        os.environ["U2NET_HOME"] = self._home.name
        session_class = _rembg_session_class(session)
        if session_class is None:
            raise MaskError(f"rembg cannot use session {session!r}: rembg has no session of that name")
        import onnxruntime  # (here: colour-key jobs never need it)

        options = onnxruntime.SessionOptions()
        threads = int(os.environ.get("OMP_NUM_THREADS", "0"))  # as rembg's new_session: the job's threads
        options.inter_op_num_threads = options.intra_op_num_threads = threads
        providers = devices.onnx_providers(device, "masks.device")
        try:
            if session in REMBG_CUSTOM_SESSIONS:
                self.session = session_class(session, options, model_path=str(link), providers=providers)
            else:
                self.session = session_class(session, options, providers=providers)
        except Exception as exc:  # onnxruntime's errors for a corrupt or foreign file
            raise MaskError(f"rembg could not load {model_path} as session {session!r}: {exc}") from None

    @property
    def runs_on(self) -> str:
        return devices.onnx_words(self.session.inner_session)

    def __call__(self, image: Image.Image) -> np.ndarray:
        """The session's mask of an upright RGB image, 0..1 (the union where a model gives several),
        as rembg's `remove(image, only_mask=True)` computes it, without its alpha-matting module."""
        masks = self.session.predict(image)
        return np.maximum.reduce([np.asarray(m.convert("L"), dtype=np.float32) for m in masks]) / 255.0


def _rembg_session_class(name: str):
    """rembg's session class called `name` (None if rembg has none), imported without running
    rembg/__init__.py or rembg/sessions/__init__.py. The first imports rembg.bg for `remove`, and with
    it pymatting's alpha matting, whose numba functions cost 1.5-2.5 s in every mask job (minutes where
    numba cannot write its cache beside a read-only install), for a feature masks never use; the
    second imports every session rembg has (0.4 s: SAM's scipy and jsonschema, pooch) to pick one.
    Most sessions live in a module named after them (u2net_custom.py, birefnet_general.py); for the
    others (isnet-anime is in dis_anime.py) rembg's list of them all is read. The sessions are rembg's
    own: same models, same pre- and post-processing. What was imported here is taken out of
    sys.modules again, so a later `import rembg` loads the whole package."""
    if "rembg" in sys.modules:  # loaded whole already
        from rembg.sessions import sessions_class

        return next((c for c in sessions_class if c.name() == name), None)
    if importlib.util.find_spec("rembg") is None:
        raise MaskError(
            "masks.method: rembg needs the rembg package (pip install rembg); or use masks.method: colour_key"
        )
    for package in ("rembg", "rembg.sessions"):  # the packages without their __init__.py run
        sys.modules[package] = importlib.util.module_from_spec(importlib.util.find_spec(package))
    try:
        from rembg.sessions.base import BaseSession

        try:
            module = vars(importlib.import_module(f"rembg.sessions.{name.replace('-', '_')}"))
        except ModuleNotFoundError:
            module = {}
        found = [
            c
            for c in module.values()
            if isinstance(c, type) and issubclass(c, BaseSession) and c is not BaseSession and c.name() == name
        ]
        if not found:  # in a module of another name: rembg's list, which imports them all
            del sys.modules["rembg.sessions"]
            from rembg.sessions import sessions_class

            found = [c for c in sessions_class if c.name() == name]
    finally:
        for module_name in [m for m in sys.modules if m == "rembg" or m.startswith("rembg.")]:
            del sys.modules[module_name]
    return found[0] if found else None


# --- post-processing ----------------------------------------------------------------------------


def _reaching_border(region: np.ndarray) -> np.ndarray:
    """The pixels of `region` (boolean) joined to the picture's edge through 4-neighbours within it."""
    _, labels = cv2.connectedComponents(region.astype(np.uint8), connectivity=4)
    touching = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    return np.isin(labels, touching[touching > 0])


def postprocess(alpha: np.ndarray, settings: PostProcess) -> np.ndarray:
    """Threshold, fill holes, dilate and feather a 0..1 mask; return it as uint8 0..255."""
    mask = alpha.astype(np.float32)
    if settings.threshold is not None:
        mask = (mask >= settings.threshold).astype(np.float32)
    if settings.fill_holes:
        filled = ~_reaching_border(mask < 0.5)  # the subject and the holes in it
        mask = np.maximum(mask, filled.astype(np.float32))
    if settings.dilate_px > 0:
        size = 2 * settings.dilate_px + 1
        mask = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size)))
    if settings.feather_px > 0:
        mask = cv2.GaussianBlur(mask, (0, 0), settings.feather_px)
    return _to_uint8(mask)


def _to_uint8(mask: np.ndarray) -> np.ndarray:
    """0..1 floats -> 0..255 bytes, rounded."""
    return np.clip(np.rint(mask * 255.0), 0, 255).astype(np.uint8)


def coverage(mask: np.ndarray) -> float:
    """Fraction of the image that is subject (mean mask value)."""
    return float(mask.astype(np.float64).mean() / 255.0)


# --- one image ----------------------------------------------------------------------------------


def settings_from_config(masks_config: dict) -> PostProcess:
    return PostProcess(
        masks_config["threshold"], masks_config["fill_holes"], masks_config["dilate_px"], masks_config["feather_px"]
    )


def open_rgb(path: str | Path) -> Image.Image:
    with Image.open(path) as im:
        return im.convert("RGB")


def rembg_masker(masks_config: dict) -> Callable[[Path], np.ndarray]:
    """rembg's model for `masks_config`, loaded once: photo file -> its mask before post-processing."""
    import logging

    rembg = masks_config["rembg"]
    masker = RembgMasker(rembg["model"], rembg["session"], masks_config.get("device", "cpu"))
    logging.getLogger("charlora.masks").info("rembg session %s on %s", rembg["session"], masker.runs_on)
    return lambda path: masker(open_rgb(path))


def model_settings(masks_config: dict) -> dict:
    """What rembg's output depends on beyond the photo and the model file (the cache key, model_pass.py)."""
    return {"method": REMBG, "session": masks_config["rembg"]["session"]}


def make_mask(
    image_path: str | Path,
    user_mask: str | Path | None,
    masks_config: dict,
    strict: bool = False,
    rembg_alpha: Callable[[], np.ndarray] | None = None,
) -> tuple[np.ndarray, dict]:
    """The mask of one ingested photo (uint8, image size) and its record (source, coverage, flags).

    A user mask that cannot be used (unreadable, wrong size, in colour) is reported in the
    record's flags and replaced by a generated mask, or raises MaskError when `strict`.
    `rembg_alpha`: gives the photo's rembg output (model_pass.py: cached, batched); None: run rembg here.
    """
    image = open_rgb(image_path)
    flags = []
    mask = None
    if user_mask:
        try:
            # the user's own mask is used as drawn: no threshold, no dilation, no feathering
            mask = _to_uint8(read_user_mask(user_mask, image.size))
            source = USER
        except MaskError as exc:
            if strict:
                raise
            flags.append(f"user mask not used, generated one instead: {exc}")
    if mask is None:
        source = masks_config["method"]
        if source == NONE:
            mask = np.full((image.height, image.width), 255, np.uint8)
        else:
            if source == REMBG:
                alpha = rembg_alpha() if rembg_alpha else rembg_masker(masks_config)(Path(image_path))
            else:
                tolerance = masks_config["colour_key"]["tolerance"]
                key = colour_key_mask(image, tolerance)
                alpha = key.alpha
                if key.border_distance > PLAIN_BACKDROP_SHARE * tolerance:
                    flags.append(
                        f"no plain backdrop to key out: the photo's border is {key.border_distance:.0f} "
                        f"from one smooth colour (a plain backdrop: under {PLAIN_BACKDROP_SHARE * tolerance:.0f}), "
                        "so the colour key keeps background as subject; use masks.method: rembg or put "
                        "a fixed mask in the dataset's masks/ folder"
                    )
            mask = postprocess(alpha, settings_from_config(masks_config))
    share = coverage(mask)
    low, high = masks_config["coverage_range"]
    if not low <= share <= high:
        flags.append(
            f"mask covers {share:.0%} of the photo (expected {low:.0%}-{high:.0%}): check it "
            "and put a fixed one in the dataset's masks/ folder"
        )
    record = {
        "source": source,
        "coverage": round(share, 4),
        "flags": flags,
        "user_mask": str(user_mask) if user_mask else None,
    }
    return mask, record
