"""Validation, part 2: each measurement on constructed images, each scorecard level on constructed figures,
and the user's review files (the selection: test_selection.py)."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib.cbook
import numpy as np
import pytest
import skimage.data
from PIL import Image, ImageEnhance, ImageFilter, ImageOps

from charlora import faces, sample, sample_metrics, scorecard
from charlora.captions import Vocabulary
from charlora.config import ConfigError
from charlora.scorecard import Evidence
from tiny_onnx import wd14_tagger


@pytest.fixture(scope="module")
def astronaut():
    return Image.fromarray(skimage.data.astronaut())


@pytest.fixture(scope="module")
def hopper():
    return Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg")).convert("RGB")


def jpeg(image, quality):
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return Image.open(buffer).convert("RGB")


# --- identity ------------------------------------------------------------------------------------

def test_the_same_face_under_edits_matches_and_two_people_do_not(astronaut, hopper):
    face = faces.largest_face(astronaut, 40)
    assert face is not None and face.descriptor.shape == (128,)
    edits = {"mirror": ImageOps.mirror(astronaut), "rescaled": astronaut.resize((384, 384)),
             "jpeg q20": jpeg(astronaut, 20), "brighter": ImageEnhance.Brightness(astronaut).enhance(1.15),
             "darker": ImageEnhance.Brightness(astronaut).enhance(0.85)}
    for name, edited in edits.items():
        other = faces.largest_face(edited, 40)
        assert other is not None, name
        assert faces.distances(other.descriptor, face.descriptor[None])[0] < 0.4, name
    assert faces.distances(faces.largest_face(hopper, 40).descriptor, face.descriptor[None])[0] > 0.6


def test_no_face_in_a_drawing_or_a_face_below_the_minimum_size(astronaut):
    flat = Image.new("RGB", (256, 256), (200, 180, 160))
    assert faces.largest_face(flat, 40) is None
    assert faces.largest_face(astronaut.resize((128, 128)), 40) is None  # a 22-pixel face


def test_identity_in_the_sample_scores(astronaut, hopper, tmp_path):
    astronaut.save(tmp_path / "me.png")
    reference = sample_metrics.Reference([sample_metrics.describe_photo("me", astronaut, 40)], 40)
    thumbs = reference.thumbnails(tmp_path)
    same = sample_metrics.score_sample(jpeg(astronaut, 30), reference, thumbs, 0.6,
                                       sample_metrics.SampleScore("p01", 0, True))
    other = sample_metrics.score_sample(hopper, reference, thumbs, 0.6, sample_metrics.SampleScore("p01", 1, True))
    assert same.face and same.face_match and same.face_distance < 0.3
    assert other.face and not other.face_match


# --- copying, sharpness, highlights, diversity ---------------------------------------------------

def test_a_copied_composition_is_near_and_an_unrelated_photo_far(astronaut, hopper, tmp_path):
    astronaut.save(tmp_path / "a.png")
    reference = sample_metrics.Reference([sample_metrics.describe_photo("a", astronaut, 40)], 40)
    thumbs = reference.thumbnails(tmp_path)
    copied = sample_metrics.score_sample(ImageOps.mirror(jpeg(astronaut.resize((300, 300)), 40)), reference, thumbs,
                                         0.6, sample_metrics.SampleScore("p", 0, True))
    unrelated = sample_metrics.score_sample(hopper.resize((512, 512)), reference, thumbs, 0.6,
                                            sample_metrics.SampleScore("p", 0, True))
    assert copied.copy_bits <= 4 and copied.nearest == "a (mirrored)" and copied.copy_ssim > 0.8
    assert unrelated.copy_bits >= 20 and unrelated.copy_ssim < 0.5


def test_over_sharpening_and_blown_highlights_are_measured(astronaut):
    sharpened = astronaut.filter(ImageFilter.UnsharpMask(radius=2, percent=300, threshold=0))
    assert sample_metrics.high_frequency(sharpened) > 1.5 * sample_metrics.high_frequency(astronaut)
    assert sample_metrics.high_frequency(Image.new("RGB", (64, 64), "grey")) == 0.0
    burned = ImageEnhance.Brightness(astronaut).enhance(2.5)
    assert sample_metrics.blown_share(burned) > 0.2 > sample_metrics.blown_share(astronaut) + 0.1


def test_diversity_across_seeds_and_prompts():
    rng = np.random.default_rng(0)
    noise = {(p, s): rng.random((64, 64)) for p in ("p01", "p02") for s in (0, 1)}
    same = {(p, s): noise["p01", 0] for p in ("p01", "p02") for s in (0, 1)}
    seeds, prompts = sample_metrics.diversity(noise)
    assert seeds > 0.9 and prompts > 0.9
    assert sample_metrics.diversity(same) == (0.0, 0.0)
    assert sample_metrics.diversity({("p01", 0): noise["p01", 0]}) == (None, None)


VOCABULARY = Path(__file__).resolve().parents[1] / "config" / "caption_slots.yaml"


def test_tag_recall_and_clip_score(tmp_path):
    assert sample_metrics.tag_recall("mira, sitting, smiling, park", "mira", ["sitting", "park", "tree"]) == pytest.approx(2 / 3, abs=1e-4)
    # the tagger's words against the prompt's, through the caption vocabulary's synonyms
    found = ["smile", "upper_body", "backlighting"]
    assert sample_metrics.tag_recall("mira, smiling, mid shot, backlight", "mira", found) == 0.0
    assert sample_metrics.tag_recall("mira, smiling, mid shot, backlight", "mira", found,
                                     Vocabulary.load(VOCABULARY)) == 1.0
    sample_metrics.write_tiny_clip(tmp_path / "clip")
    scorer = sample_metrics.ClipScorer(tmp_path / "clip")
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    a, b = scorer(image, "mira, sitting"), scorer(image, "a red car on a road")
    assert -100 <= a <= 100 and a != b and scorer(image, "mira, sitting") == a


def test_an_epoch_scored_with_the_taggers_recall_or_without_adherence(tmp_path, monkeypatch):
    """Without a CLIP model the dataset's WD14 tagger, loaded once, tags each sample; with tagger none: n/a,
    not a number."""
    from charlora import tags
    loads = []
    make_tagger = tags.make_tagger
    monkeypatch.setattr(tags, "make_tagger", lambda config: loads.append(config) or make_tagger(config))
    training = tmp_path / "images"
    training.mkdir()
    red, grey = Image.new("RGB", (96, 96), (200, 30, 30)), Image.new("RGB", (96, 96), (128, 128, 128))
    red.save(training / "red.png")
    reference = sample_metrics.Reference([sample_metrics.describe_photo("red", red, 40)], 40)
    prompts = [sample.Prompt("p01", "intent", "mira, red dress, smile"),
               sample.Prompt("p02", "validation photo x", "mira, grey background, long hair")]
    folder = tmp_path / "epoch-001"
    folder.mkdir()
    for prompt, image in zip(prompts, (red, grey)):
        for seed in (0, 1):
            image.save(folder / sample.image_name(prompt, seed))
    captions = {"tagger": "wd14", "wd14": {"folder": str(wd14_tagger(tmp_path / "tagger")), "general_threshold": 0.35,
                                          "character_threshold": 0.85}, "vocabulary": str(VOCABULARY)}
    scores = sample_metrics.score_epoch(1, folder, prompts, [0, 1], reference, training, 0.6, None, captions, "mira")
    assert scores.adherence_method.startswith("tag recall (wd14: ") and len(loads) == 1  # 4 samples, 1 load
    assert [s.adherence for s in scores.samples] == [1.0, 1.0, 0.5, 0.5]  # long hair stays below the threshold
    # each against the other prompt: the red picture has no grey background or long hair; the grey one
    # has the tagger's smile of "red dress, smile"
    assert [s.adherence_shuffled for s in scores.samples] == [0.0, 0.0, 0.5, 0.5]
    e = scorecard.evidence(scores, 12)
    assert (e.adherence, e.adherence_shuffled, e.adherence_margin) == (0.75, 0.25, 0.5)
    assert [s.unseen for s in scores.samples] == [True, True, False, False]
    assert [s.copy_bits for s in scores.samples[:2]] == [0, 0] and scores.samples[0].nearest == "red"
    assert scores.diversity_seeds == 0.0  # every seed drew the same picture
    assert scores.identity_method.startswith("n/a: no face")
    untagged = sample_metrics.score_epoch(1, folder, prompts, [0, 1], reference, training, 0.6, None,
                                          {"tagger": "none"}, "mira")
    assert untagged.adherence_method.startswith("n/a: no CLIP model folder (select.clip)")
    assert all(s.adherence is None for s in untagged.samples)


# --- levels --------------------------------------------------------------------------------------

BASE = Evidence(adherence=30.0, adherence_unseen=30.0, adherence_validation=30.0, face_share=0.0,
                sharper_share=0.0, blown_share=0.0, copy_median=30, diversity_seeds=0.6, diversity_prompts=0.6)


def level(criterion, **figures):
    return getattr(scorecard, criterion)(Evidence(**{**BASE.__dict__, **figures}), BASE)[0]


def test_adherence_at_chance_is_n_a_not_a_level():
    """Epoch 0 as close to its own prompts as to shuffled ones: adherence says nothing (the demo's random
    model); prompt sensitivity still counts, and generalisation keeps its diversity."""
    base = Evidence(**{**BASE.__dict__, "adherence_shuffled": 29.5, "adherence_margin": 0.5,
                       "adherence_margin_error": 0.4})
    worse = Evidence(**{**base.__dict__, "adherence": 20.0, "adherence_unseen": 20.0})
    level, text = scorecard.prompt_accuracy(worse, base)
    assert level == "high" and text.startswith("adherence n/a: the base model does not follow prompts here "
                                               "(epoch 0: 30 on its own prompts, 29.5 on shuffled ones)")
    assert scorecard.generalisation(worse, base)[0] == "high"
    above = Evidence(**{**base.__dict__, "adherence_margin": 5.0})
    assert scorecard.at_chance(above) is None and scorecard.prompt_accuracy(worse, above)[0] == "low"


@pytest.mark.parametrize("figures, expected", [
    ({}, "high"),
    ({"adherence": 27.0}, "moderate"),                       # -10 %
    ({"adherence": 24.0}, "low"),                            # -20 %
    ({"diversity_prompts": 0.42}, "moderate"),               # 0.7x
    ({"diversity_prompts": 0.3}, "low"),                     # 0.5x: the prompts no longer change the picture
    ({"adherence": None, "diversity_prompts": None}, "n/a"),
])
def test_prompt_accuracy_levels(figures, expected):
    assert level("prompt_accuracy", **figures) == expected


@pytest.mark.parametrize("figures, expected", [
    ({"face_share": 0.9, "match_share": 0.9, "face_distance": 0.4}, "excellent"),
    ({"face_share": 0.9, "match_share": 0.6, "face_distance": 0.55}, "good"),
    ({"face_share": 0.9, "match_share": 0.3, "face_distance": 0.7}, "poor"),
    ({"face_share": 0.9, "match_share": 0.9, "face_distance": 0.4, "sharper_share": 0.5}, "over-sharpened"),
    ({"blown_share": 0.4}, "burned"),
    ({}, "n/a"),                                             # no faces to measure, no flags: no verdict
])
def test_visual_fidelity_levels(figures, expected):
    assert level("visual_fidelity", **figures) == expected


@pytest.mark.parametrize("figures, expected", [
    ({}, "high"),
    ({"adherence_unseen": 27.0}, "moderate"),               # unseen prompts 10 % behind the validation captions
    ({"adherence_unseen": 24.0}, "poor"),
    ({"diversity_seeds": 0.3}, "poor"),
])
def test_generalisation_levels(figures, expected):
    assert level("generalisation", **figures) == expected


def test_overfit_sign_levels():
    def signs(loss=None, **figures):
        return scorecard.overfit_signs(Evidence(**{**BASE.__dict__, **figures}), BASE, loss)[0]
    assert signs() == "none"
    assert signs(copied_share=0.1) == "slight"
    assert signs(copy_median=20) == "slight"                 # 0.67x epoch 0's distance
    assert signs(loss="validation loss past its minimum") == "slight"
    assert signs(copied_share=0.1, loss="past") == "present"
    assert signs(copied_share=0.3) == "present"
    assert signs(diversity_seeds=0.2) == "present"           # collapse


def test_what_was_not_measured_is_n_a_never_a_clean_verdict():
    """One seed and no copy distances: overfit signs n/a, not "none"; the evidence says what is missing."""
    nothing = Evidence(**{**BASE.__dict__, "copied_share": None, "copy_median": None, "diversity_seeds": None})
    level, text = scorecard.overfit_signs(nothing, BASE, None)
    assert level == "n/a" and "copies n/a" in text and "diversity across seeds n/a" in text
    assert "no copies" not in text and "diversity kept" not in text
    assert scorecard.overfit_signs(nothing, BASE, "validation loss past its minimum")[0] == "slight"
    level, text = scorecard.overfit_signs(Evidence(**{**BASE.__dict__, "copied_share": 0.0}), BASE, None)
    assert level == "none" and text == "no copies; diversity kept; validation loss not past its minimum"
    level, text = scorecard.visual_fidelity(Evidence(), Evidence())
    assert level == "n/a" and text.startswith("identity n/a (no face measured); n/a sharper")


# --- review files --------------------------------------------------------------------------------

def test_review_files_override_cells_and_reject(tmp_path):
    folder = tmp_path / "review" / "demo"
    folder.mkdir(parents=True)
    (folder / "epoch-004.yaml").write_text("visual_fidelity: excellent\nnote: the eyes are right\nreject: true\n")
    files = scorecard.review_files(folder)
    assert list(files) == [4]
    review = scorecard.read_review(files[4])
    assert review.levels == {"visual_fidelity": "excellent"} and review.reject and review.note == "the eyes are right"


@pytest.mark.parametrize("text, message", [
    ("visual_fidelity: superb\n", "'superb' is not a level; use one of excellent, good"),
    ("fidelity: good\n", "unknown key 'fidelity'"),
    ("reject: maybe\n", "reject must be true or false"),
    ("- a list\n", "expected keys"),
])
def test_a_wrong_review_key_or_level_is_a_clear_error(tmp_path, text, message):
    path = tmp_path / "epoch-002.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as error:
        scorecard.read_review(path)
    assert str(path) in str(error.value)


def test_a_review_file_with_another_name_is_an_error(tmp_path):
    (tmp_path / "epoch 4.yaml").write_text("reject: true\n")
    with pytest.raises(ConfigError, match="named epoch-<eee>.yaml"):
        scorecard.review_files(tmp_path)
