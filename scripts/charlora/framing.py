"""Shot size of a photo (close-up / mid shot / full body) from how much of the frame the face fills.

Method: OpenCV's Haar cascades (frontal face, then profile face both ways round) find the largest
face; its height as a fraction of the image height places the shot on the photographer's scale.
An adult head is about 1/7.5 of body height, so a full-body shot that fills the frame has a face
of about 0.09-0.12 of the frame height; a waist-up mid shot about 0.15-0.22; a close-up (head and
shoulders) 0.25 and up. The thresholds sit between those bands and are configurable.

Limits, stated plainly: Haar cascades miss faces turned away, heavily shadowed or smaller than
about 24 px after downscaling; such photos are labelled `unknown` (flagged in the audit, left out
of the distribution rather than guessed). A person small in a wide landscape frame reads as full
body, which is what the caption and the balance need anyway.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from PIL import Image

if TYPE_CHECKING:
    import cv2
    import numpy as np

# OpenCV and NumPy are imported where faces are detected: captions and the report read only the
# labels and words below, and a caption job (one per photo) need not load OpenCV (0.2 s each).
CLOSE_UP, MID_SHOT, FULL_BODY, UNKNOWN = "close_up", "mid_shot", "full_body", "unknown"
FRAMINGS = (CLOSE_UP, MID_SHOT, FULL_BODY)
WORDS = {CLOSE_UP: "close-up", MID_SHOT: "mid shot", FULL_BODY: "full body"}  # as captions and the report write them
DETECT_MAX_SIDE = 640  # faces are detected on a copy no larger than this (speed; Haar needs no more)


@dataclass
class Framing:
    label: str
    face_height: float | None  # largest face's height / image height
    face_box: list[float] | None  # [x, y, w, h] as fractions of width and height
    faces: int

    def as_dict(self) -> dict:
        return asdict(self)


@lru_cache(maxsize=None)
def _cascade(name: str) -> cv2.CascadeClassifier:
    import cv2

    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + name)
    if cascade.empty():
        raise RuntimeError(f"OpenCV cascade {name} is missing from {cv2.data.haarcascades}")
    return cascade


def detect_faces(gray: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Faces as (x, y, w, h) boxes in `gray`'s pixels: frontal first, profile (both sides) if none."""
    import cv2

    min_size = (24, 24)
    faces = list(
        _cascade("haarcascade_frontalface_default.xml").detectMultiScale(
            gray, scaleFactor=1.1, minNeighbors=5, minSize=min_size
        )
    )
    if not faces:
        profile = _cascade("haarcascade_profileface.xml")
        faces = list(profile.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=min_size))
        width = gray.shape[1]
        for x, y, w, h in profile.detectMultiScale(cv2.flip(gray, 1), 1.1, 5, minSize=min_size):
            faces.append((width - x - w, y, w, h))
    return [tuple(int(v) for v in f) for f in faces]


def classify(image: Image.Image, close_up_min: float, full_body_max: float) -> Framing:
    """Label the shot size of an RGB image by its largest face's height relative to the frame."""
    import cv2
    import numpy as np

    scale = min(1.0, DETECT_MAX_SIDE / max(image.size))
    small = (
        image
        if scale == 1.0
        else image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.BILINEAR)
    )
    gray = cv2.equalizeHist(np.asarray(small.convert("L")))
    faces = detect_faces(gray)
    if not faces:
        return Framing(UNKNOWN, None, None, 0)
    x, y, w, h = max(faces, key=lambda f: f[2] * f[3])
    ratio = h / gray.shape[0]
    if ratio >= close_up_min:
        label = CLOSE_UP
    elif ratio <= full_body_max:
        label = FULL_BODY
    else:
        label = MID_SHOT
    box = [x / gray.shape[1], y / gray.shape[0], w / gray.shape[1], h / gray.shape[0]]
    return Framing(label, round(ratio, 4), [round(v, 4) for v in box], len(faces))
