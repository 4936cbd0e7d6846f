"""Masks: rembg over a local ONNX file (a tiny model built here), the colour key, user masks, and
post-processing. Every mask is a single-channel 8-bit image of the photo's size."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from charlora import config, demo, demo_render, masks
from charlora.config import ConfigError
from tiny_onnx import brightness_segmenter

CONFIG = {
    "method": "colour_key",
    "rembg": {"model": None, "session": "u2net_custom"},
    "colour_key": {"tolerance": 30},
    "threshold": 0.5,
    "fill_holes": True,
    "dilate_px": 0,
    "feather_px": 1.0,
    "coverage_range": [0.05, 0.95],
}


def iou(a, b):
    a, b = np.asarray(a) >= 128, np.asarray(b) >= 128
    return (a & b).sum() / (a | b).sum()


@pytest.fixture
def square_photo(tmp_path):
    """A bright square 'subject' on a dark backdrop; the expected mask is the square."""
    arr = np.full((240, 180, 3), 30, np.uint8)
    arr[60:180, 40:140] = 235
    path = tmp_path / "photo.png"
    Image.fromarray(arr).save(path)
    expected = np.zeros((240, 180), np.uint8)
    expected[60:180, 40:140] = 255
    return path, expected


@pytest.mark.parametrize("session", ["u2net_custom", "u2net_human_seg"])
def test_rembg_runs_a_local_onnx_file_without_downloading(tmp_path, square_photo, session, monkeypatch):
    model = brightness_segmenter(tmp_path / "my model.onnx")
    monkeypatch.setenv("U2NET_HOME", str(tmp_path / "nothing-here"))  # would be rembg's download place
    config = {**CONFIG, "method": "rembg", "rembg": {"model": str(model), "session": session}}
    photo, expected = square_photo
    mask, record = masks.make_mask(photo, None, config)
    assert mask.dtype == np.uint8 and mask.shape == expected.shape
    assert record["source"] == "rembg" and iou(mask, expected) > 0.9
    assert not (tmp_path / "nothing-here").exists()


def test_rembg_mask_equals_rembgs_remove_and_leaves_alpha_matting_unloaded(tmp_path, square_photo):
    """The mask job loads its rembg session without rembg.bg (pymatting and numba: 1.5-2.5 s per job)
    and without rembg's other sessions (SAM's scipy: 0.4 s): the mask is still exactly what rembg's
    own `remove(only_mask=True)` gives, and `import rembg` afterwards still gets the whole package. A
    session in a module of another name is found through rembg's list; an unknown one is refused."""
    model = brightness_segmenter(tmp_path / "model.onnx")
    check = f"""
import sys
import numpy as np
from PIL import Image
from charlora import masks
image = Image.open({str(square_photo[0])!r}).convert("RGB")
masker = masks.RembgMasker({str(model)!r}, "u2net_custom")
ours = masker(image)
assert not {{"pymatting", "numba", "rembg.bg", "rembg.sessions.sam", "scipy"}} & set(sys.modules), sorted(sys.modules)
assert masks._rembg_session_class("isnet-anime").__name__ == "DisSession"  # in rembg/sessions/dis_anime.py
try:
    masks.RembgMasker({str(model)!r}, "no-such-session")
    raise AssertionError("an unknown session was accepted")
except masks.MaskError as exc:
    assert "rembg has no session of that name" in str(exc), exc
import rembg
theirs = np.asarray(rembg.remove(image, session=masker.session, only_mask=True), dtype=np.float32) / 255.0
assert ours.shape == theirs.shape and np.array_equal(ours, theirs), np.abs(ours - theirs).max()
"""
    env = {**os.environ, "PYTHONPATH": str(Path(masks.__file__).parents[1])}
    result = subprocess.run([sys.executable, "-c", check], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]


def test_missing_model_names_the_file_and_what_to_do(tmp_path):
    with pytest.raises(ConfigError, match=r"masks.rembg.model: .*missing.onnx does not exist. Put the ONNX model"):
        masks.RembgMasker(tmp_path / "missing.onnx", "u2net_custom")
    with pytest.raises(ConfigError, match="masks.rembg.model is not set"):
        masks.RembgMasker(None, "u2net_custom")


def test_corrupt_model_is_reported(tmp_path, square_photo):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model at all")
    with pytest.raises(masks.MaskError, match=r"rembg could not load .*bad.onnx"):
        masks.RembgMasker(bad, "u2net_custom")


@pytest.mark.parametrize(
    "shot", [s for s in demo.SHOTS if s.background not in demo.HAND_MASKED_BACKGROUNDS], ids=lambda s: s.name
)
def test_colour_key_separates_the_figure_on_plain_backdrops(shot):
    photo, truth = demo_render.render(shot), demo_render.render(shot, mask=True)
    alpha = masks.colour_key_mask(photo, 30).alpha
    mask = masks.postprocess(alpha, masks.settings_from_config(CONFIG))
    assert iou(mask, truth) > 0.85, shot.name


def _flags(photo: Image.Image, tmp_path) -> list[str]:
    """The flags of a colour-key mask made with the shipped defaults (schema.yaml)."""
    defaults = config.defaults()["masks"]
    photo.convert("RGB").save(tmp_path / "photo.png")
    return masks.make_mask(tmp_path / "photo.png", None, {**defaults, "method": "colour_key"})[1]["flags"]


@pytest.mark.parametrize("shot", demo.SHOTS, ids=lambda s: s.name)
def test_a_colour_key_without_a_plain_backdrop_is_flagged_and_studio_shots_are_not(shot, tmp_path):
    flags = _flags(demo_render.render(shot), tmp_path)
    if shot.background == "brick wall":  # the drawn street, cafe and brick wall: the key keeps 69-92 % as subject
        assert any(f.startswith("no plain backdrop to key out") for f in flags), flags
        if shot.name in ("café_sitting.jpg", "street_full.png"):  # 86 % and 92 %: beyond the default range too
            assert any(f.startswith("mask covers") and "(expected 5%-85%)" in f for f in flags), flags
    elif shot.background not in demo.HAND_MASKED_BACKGROUNDS:
        assert flags == []


@pytest.mark.parametrize("name", ["astronaut", "coffee", "chelsea"])
def test_a_colour_key_on_real_photos_with_a_room_behind_is_flagged(name, tmp_path):
    import skimage.data

    flags = _flags(Image.fromarray(getattr(skimage.data, name)()), tmp_path)
    assert any(f.startswith("no plain backdrop to key out") for f in flags), flags


def test_user_mask_wins_and_is_used_as_drawn(tmp_path, square_photo):
    photo, expected = square_photo
    drawn = np.zeros_like(expected)
    drawn[10:50, 10:50] = 200  # a soft grey value stays as drawn (no threshold)
    Image.fromarray(drawn).save(tmp_path / "mine.png")
    mask, record = masks.make_mask(photo, tmp_path / "mine.png", CONFIG)
    assert record["source"] == "user" and np.array_equal(mask, drawn)


@pytest.mark.parametrize(
    "bad, problem",
    [
        (lambda: Image.new("L", (100, 100)), "the mask is 100x100 but its photo is 180x240"),
        (lambda: Image.new("RGB", (180, 240), (255, 0, 0)), "the mask is in colour (RGB)"),
        (None, "cannot read the mask"),
    ],
)
def test_unusable_user_mask_is_flagged_and_replaced_or_fails_when_strict(tmp_path, square_photo, bad, problem):
    photo, expected = square_photo
    path = tmp_path / "mine.png"
    if bad is None:
        path.write_bytes(b"\x89PNG broken")
    else:
        bad().save(path)
    mask, record = masks.make_mask(photo, path, CONFIG)
    assert record["source"] == "colour_key" and iou(mask, expected) > 0.9
    assert any(problem in f and str(path) in f for f in record["flags"]), record["flags"]
    with pytest.raises(masks.MaskError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        masks.make_mask(photo, path, CONFIG, strict=True)


def test_postprocess_fills_dilates_and_feathers():
    ring = np.zeros((64, 64), np.float32)
    ring[16:48, 16:48] = 1.0
    ring[28:36, 28:36] = 0.0  # a hole in the subject
    plain = masks.PostProcess(threshold=0.5, fill_holes=False, dilate_px=0, feather_px=0)
    assert masks.postprocess(ring, plain)[32, 32] == 0
    filled = masks.postprocess(ring, masks.PostProcess(0.5, True, 0, 0))
    assert filled[32, 32] == 255 and filled[8, 8] == 0
    grown = masks.postprocess(ring, masks.PostProcess(0.5, True, 3, 0))
    assert grown[14, 32] == 255 and grown[12, 32] == 0
    soft = masks.postprocess(ring, masks.PostProcess(0.5, True, 0, 2.0))
    assert 0 < soft[16, 32] < 255  # the edge is a ramp
    assert masks.coverage(filled) == pytest.approx(32 * 32 / 64 / 64)
