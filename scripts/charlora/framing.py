"""Shot size of a photo (close-up / mid shot / full body) from how much of the frame the face fills.

Method: the largest face's height as a fraction of the image height places the shot on the
photographer's scale. An adult head is about 1/7.5 of body height, so a full-body shot that fills
the frame has a face of about 0.09-0.12 of the frame height; a waist-up mid shot about 0.15-0.22; a
close-up (head and shoulders) 0.25 and up. The thresholds sit between those bands and are
configurable. The face's box also gives the skin colour the audit measures (audit.colour).

Which detector decides (benchmarks/face_eval.py measures both on photos with and without people):
1. dlib's HOG face detector (the one the scorecard's identity metric uses), with a score of at least
   HOG_SCORE. It finds real faces turned up to about 45 degrees and sees none in foliage, clouds,
   coins or textures, where OpenCV's Haar cascades found faces in 18 of 100 such photos.
2. Only where it finds none: OpenCV's Haar cascades (frontal, then profile both ways round) propose
   faces, and a proposal counts when HOG, run on its region alone, scores it at least CONFIRM_SCORE
   and the middle of the box has skin's colour (YCrCb). This keeps drawn faces framed (the demo's
   surprised close-up scores just under HOG's own threshold) without Haar's faces in leaves.
HOG's boxes run from the brows to the chin; they are scaled to the forehead-to-chin box the
thresholds were set on (HOG_TO_FACE, measured on the benchmark's photos and the demo).

Limits, stated plainly: faces in full profile, turned away, heavily shadowed or smaller than about
20 px after downscaling are not found; such photos are labelled `unknown` (flagged in the audit, left
out of the distribution rather than guessed). A person small in a wide landscape frame reads as full
body, which is what the caption and the balance need anyway.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

if TYPE_CHECKING:
    import cv2
    import numpy as np

# OpenCV, dlib and NumPy are imported where faces are detected: captions and the report read only the
# labels and words below, and a caption job (one per photo) need not load them (0.2 s each).
CLOSE_UP, MID_SHOT, FULL_BODY, UNKNOWN = "close_up", "mid_shot", "full_body", "unknown"
FRAMINGS = (CLOSE_UP, MID_SHOT, FULL_BODY)
WORDS = {CLOSE_UP: "close-up", MID_SHOT: "mid shot", FULL_BODY: "full body"}  # as captions and the report write them
DETECT_MAX_SIDE = 640  # faces are detected on a copy no larger than this (speed; 20 px faces are found at it)
HOG, HAAR_CONFIRMED = "dlib HOG", "Haar, confirmed by HOG and skin colour"  # which detector found the face
DETECTOR = f"{HOG}; where it finds none, {HAAR_CONFIRMED}"
HOG_UPSAMPLE = 1  # the detector's window is 80 px; one upsampling finds faces of 40 px (20 px before it)
HOG_SCORE = 0.0  # dlib's own threshold
CONFIRM_SCORE = -0.3  # HOG's score a Haar proposal needs on its own region (the demo's drawn faces: -0.06 and up)
CONFIRM_SIDE = 100  # a proposal's face is scaled to this many pixels for HOG's look at it
HOG_TO_FACE = 1.2  # a HOG box (brows to chin) x 1.2, raised by 0.08 of its height: the forehead-to-chin box
HOG_RAISE = 0.08
SKIN_CR, SKIN_CB = (133, 173), (77, 127)  # skin's chroma in YCrCb (the usual bounds; any complexion)


@dataclass
class Framing:
    label: str
    face_height: float | None  # largest face's height / image height
    face_box: list[float] | None  # [x, y, w, h] as fractions of width and height
    faces: int
    detector: str | None = None  # HOG or HAAR_CONFIRMED: which one found the faces

    def as_dict(self) -> dict:
        return asdict(self)


@lru_cache(maxsize=None)
def _cascade(name: str) -> cv2.CascadeClassifier:
    import cv2

    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + name)
    if cascade.empty():
        raise RuntimeError(f"OpenCV cascade {name} is missing from {cv2.data.haarcascades}")
    return cascade


@lru_cache(maxsize=None)
def _hog():
    """dlib's frontal face detector. Building it takes 0.28 s (it parses the model dlib holds as
    text), reading it back from dlib's own binary file 2 ms: every audit job is a process of its
    own, so the first one saves it in the user's cache folder, by dlib version, and the rest read it."""
    import os

    import dlib

    from charlora.atomic import atomic_path

    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "charlora"
    saved = cache / f"dlib-{dlib.__version__}-frontal-face-detector.svm"
    if saved.is_file():
        try:
            return dlib.fhog_object_detector(str(saved))
        except RuntimeError:  # unreadable: made again below
            pass
    detector = dlib.get_frontal_face_detector()
    try:
        with atomic_path(saved) as temporary:
            detector.save(str(temporary))
    except OSError:  # no cache folder to write: it is built again next time
        pass
    return detector


def haar_proposals(gray: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Haar's faces as (x, y, w, h) boxes in `gray`'s pixels: frontal first, profile (both sides) if none."""
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


def hog_faces(rgb: np.ndarray) -> list[tuple[int, int, int, int]]:
    """HOG's faces (score >= HOG_SCORE) as forehead-to-chin (x, y, w, h) boxes in `rgb`'s pixels."""
    boxes, _, _ = _hog().run(rgb, HOG_UPSAMPLE, HOG_SCORE)
    faces = []
    for box in boxes:
        w, h = box.width() * HOG_TO_FACE, box.height() * HOG_TO_FACE
        cx, cy = box.left() + box.width() / 2, box.top() + box.height() / 2 - HOG_RAISE * box.height()
        faces.append((round(cx - w / 2), round(cy - h / 2), round(w), round(h)))
    return faces


def confirmed(rgb: np.ndarray, box: tuple[int, int, int, int]) -> bool:
    """A Haar proposal is a face when HOG, looking at its region alone (the face at CONFIRM_SIDE px),
    scores it at least CONFIRM_SCORE, and the middle of the box has skin's colour."""
    import cv2
    import numpy as np

    x, y, w, h = box
    middle = rgb[y + 3 * h // 10 : y + 7 * h // 10, x + 3 * w // 10 : x + 7 * w // 10]
    if not middle.size:
        return False
    _, cr, cb = np.median(cv2.cvtColor(np.ascontiguousarray(middle), cv2.COLOR_RGB2YCrCb).reshape(-1, 3), axis=0)
    if not (SKIN_CR[0] <= cr <= SKIN_CR[1] and SKIN_CB[0] <= cb <= SKIN_CB[1]):
        return False
    margin = w // 2
    x0, y0 = max(0, x - margin), max(0, y - margin)
    x1, y1 = min(rgb.shape[1], x + w + margin), min(rgb.shape[0], y + h + margin)
    scale = CONFIRM_SIDE / w
    region = cv2.resize(
        rgb[y0:y1, x0:x1], (round((x1 - x0) * scale), round((y1 - y0) * scale)), interpolation=cv2.INTER_LINEAR
    )
    _, scores, _ = _hog().run(np.ascontiguousarray(region), 0, CONFIRM_SCORE)
    return len(scores) > 0


def detect_faces(rgb: np.ndarray) -> tuple[list[tuple[int, int, int, int]], str | None]:
    """Faces as (x, y, w, h) boxes in `rgb`'s pixels and the detector that found them (see above)."""
    import cv2

    faces = hog_faces(rgb)
    if faces:
        return faces, HOG
    gray = cv2.equalizeHist(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
    faces = [box for box in haar_proposals(gray) if confirmed(rgb, box)]
    return faces, (HAAR_CONFIRMED if faces else None)


def classify(image: Image.Image, close_up_min: float, full_body_max: float) -> Framing:
    """Label the shot size of an RGB image by its largest face's height relative to the frame."""
    import numpy as np

    scale = min(1.0, DETECT_MAX_SIDE / max(image.size))
    small = (
        image
        if scale == 1.0
        else image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.BILINEAR)
    )
    rgb = np.ascontiguousarray(np.asarray(small.convert("RGB")))
    faces, detector = detect_faces(rgb)
    if not faces:
        return Framing(UNKNOWN, None, None, 0)
    height, width = rgb.shape[:2]
    x, y, w, h = max(faces, key=lambda f: f[2] * f[3])
    x0, y0, x1, y1 = max(0, x), max(0, y), min(width, x + w), min(height, y + h)  # the box within the frame
    ratio = h / height
    if ratio >= close_up_min:
        label = CLOSE_UP
    elif ratio <= full_body_max:
        label = FULL_BODY
    else:
        label = MID_SHOT
    box = [x0 / width, y0 / height, (x1 - x0) / width, (y1 - y0) / height]
    return Framing(label, round(ratio, 4), [round(v, 4) for v in box], len(faces), detector)
