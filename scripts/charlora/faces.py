"""Identity: does a sample show the character's face? dlib's face recognition, run offline.

The weights come from the `face-recognition-models` package (installed from the package index; no
download at run time): dlib's HOG face detector, its 5-point shape predictor (the 68-point one's
training data excludes commercial use) and its ResNet face descriptor, whose 128-number descriptors
of one person lie closer than 0.6 apart (dlib's threshold: 99.38 % on LFW). Measured here: one face
under a flip, rescale, JPEG q20 or ±brightness 0.05-0.31 apart, two different people about 0.70.

A face is counted only when the detector's score reaches DETECTION_SCORE and its box is at least
`min_face` pixels wide: the descriptor of a tiny face cannot tell people apart. Drawn characters and
faceless pictures have no face to measure, and the scorecard says so instead of inventing a number.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

DETECTION_SCORE = 0.0  # HOG detector score (its own default threshold); higher is more certain
UPSAMPLE = 1  # the detector finds faces of ~80 px; one upsampling finds ~40 px ones
SHAPE_PREDICTOR = "shape_predictor_5_face_landmarks.dat"
DESCRIPTOR = "dlib_face_recognition_resnet_model_v1.dat"


class FaceModelMissing(RuntimeError):
    pass


def models_folder() -> Path:
    """face_recognition_models' `models/` folder, found without importing the package (its __init__
    imports pkg_resources, which current setuptools no longer has)."""
    spec = importlib.util.find_spec("face_recognition_models")
    folder = Path(spec.origin).parent / "models" if spec and spec.origin else None
    if folder is None or not (folder / DESCRIPTOR).is_file():
        raise FaceModelMissing(
            "dlib's face models were not found: install face-recognition-models and dlib-bin (envs/requirements.txt)"
        )
    return folder


@lru_cache(maxsize=None)
def _models():
    import dlib

    folder = models_folder()
    return (
        dlib.get_frontal_face_detector(),
        dlib.shape_predictor(str(folder / SHAPE_PREDICTOR)),
        dlib.face_recognition_model_v1(str(folder / DESCRIPTOR)),
    )


@dataclass(frozen=True)
class Face:
    box: tuple[int, int, int, int]  # left, top, right, bottom
    score: float
    descriptor: np.ndarray  # (128,) float32


def largest_face(image: Image.Image, min_face: int) -> Face | None:
    """The largest face the detector is sure of, with its descriptor; None when there is none."""
    detector, predictor, encoder = _models()
    pixels = np.ascontiguousarray(np.asarray(image.convert("RGB")))
    boxes, scores, _ = detector.run(pixels, UPSAMPLE, DETECTION_SCORE)
    found = [(b, s) for b, s in zip(boxes, scores) if min(b.width(), b.height()) >= min_face]
    if not found:
        return None
    box, score = max(found, key=lambda f: f[0].area())
    shape = predictor(pixels, box)
    descriptor = np.asarray(encoder.compute_face_descriptor(pixels, shape), dtype=np.float32)
    return Face((box.left(), box.top(), box.right(), box.bottom()), float(score), descriptor)


def distances(descriptor: np.ndarray, references: np.ndarray) -> np.ndarray:
    """Euclidean distances from one descriptor to each row of `references` (n, 128)."""
    return np.linalg.norm(references - descriptor[None, :], axis=1)
