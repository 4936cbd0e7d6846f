"""Tags, captions and lint: the tiny WD14 tagger runs through onnxruntime, captions follow the
guide's slot order, the user's caption wins, and the lint finds what a careful tagger would."""

from pathlib import Path

import pytest
from PIL import Image

from charlora.captions import CaptionError, Vocabulary, compose, lint, make_caption
from charlora.config import ConfigError
from charlora.tags import WD14Tagger, tag_image
from charlora.tokenizer import CaptionTokens
from tiny_onnx import wd14_tagger

REPO = Path(__file__).resolve().parents[1]
VOCABULARY = Vocabulary.load(REPO / "config" / "caption_slots.yaml")
GENERIC = ["solo", "nose", "1girl"]
CONFIG = {"tagger": "wd14", "wd14": {"folder": None, "general_threshold": 0.35, "character_threshold": 0.85}}


@pytest.fixture(scope="module")
def tokens():
    return CaptionTokens.load()


def test_wd14_tagger_scores_tags_above_thresholds(tmp_path):
    folder = wd14_tagger(tmp_path / "tagger")
    Image.new("RGB", (300, 400), (200, 30, 40)).save(tmp_path / "red.png")
    record = tag_image(tmp_path / "red.png", {**CONFIG, "wd14": {**CONFIG["wd14"], "folder": str(folder)}})
    names = [t["name"] for t in record["tags"]]
    assert record["backend"] == "wd14"
    assert "red dress" in names and "mira (demo)" in names  # underscores become spaces
    assert "long hair" not in names and "general" not in names  # below threshold; rating tags never
    assert all(t["score"] >= 0.35 for t in record["tags"])


def test_tagger_files_are_checked(tmp_path):
    with pytest.raises(ConfigError, match=r"captions.wd14.folder: .*model.onnx does not exist"):
        WD14Tagger(tmp_path, 0.35, 0.85)
    folder = wd14_tagger(tmp_path / "tagger")
    (folder / "selected_tags.csv").write_text("tag_id,name,category,count\n0,only_one,0,1\n")
    with pytest.raises(ConfigError, match="scores 11 tags but .* lists 1"):
        WD14Tagger(folder, 0.35, 0.85)
    (folder / "model.onnx").write_bytes(b"truncated download")
    with pytest.raises(ConfigError, match=r"model.onnx: onnxruntime cannot load this tagger model"):
        WD14Tagger(folder, 0.35, 0.85)


def test_composed_caption_follows_the_guides_slot_order():
    tags = [
        {"name": n}
        for n in [
            "red_dress",
            "solo",
            "smile",
            "studio",
            "standing",
            "soft light",
            "upper_body",
            "nose",
            "long_hair",
            "1girl",
        ]
    ]
    caption = compose("mira", tags, "close_up", VOCABULARY, GENERIC)
    # measured framing wins over the tagger's "upper body"; synonyms map smile -> smiling
    assert caption.text == "mira, standing, smiling, soft light, red dress, studio, close-up"
    assert caption.dropped == ["1girl", "long hair", "nose", "solo"]


def test_users_caption_wins_and_bad_ones_fall_back(tmp_path):
    mine = tmp_path / "a.txt"
    mine.write_text("mira,  sitting, serious,\nwindow light\n", encoding="utf-8")
    caption = make_caption(mine, "mira", [], "mid_shot", VOCABULARY, GENERIC)
    assert (caption.text, caption.source) == ("mira, sitting, serious, window light", "user")
    assert mine.read_text(encoding="utf-8") == "mira,  sitting, serious,\nwindow light\n"  # never rewritten
    for content, problem in [(b"", "the caption file is empty"), (b"mira, caf\xe9", "not UTF-8 text")]:
        mine.write_bytes(content)
        caption = make_caption(mine, "mira", [{"name": "standing"}], "full_body", VOCABULARY, GENERIC)
        assert caption.source == "composed" and caption.text == "mira, standing, full body"
        assert problem in caption.flags[0] and str(mine) in caption.flags[0]
        with pytest.raises(CaptionError, match=problem):
            make_caption(mine, "mira", [], None, VOCABULARY, GENERIC, strict=True)


def test_tokenizer_gives_open_clips_token_ids(tokens):
    from open_clip.tokenizer import SimpleTokenizer

    reference = SimpleTokenizer()
    for text in [
        "mira, standing, smiling, soft frontal light, Red_Dress, café au lait, 1girl, ^_^",
        "A  photo\nof  O'Brien's dog!!  2026-11-29",
        ", ".join(f"word{i}" for i in range(60)),
    ]:
        assert tokens.tokenizer(text).input_ids == [49406] + reference.encode(text) + [49407]
    assert len(tokens.tokenizer) == 49408


def test_token_count_matches_sdxl_tokenizer(tokens):
    assert tokens.count("a photo") == 4  # <start> a photo <end>
    long = ", ".join(f"word{i}" for i in range(60))
    assert tokens.count(long) > 77
    cut = tokens.cut(long, 77)
    assert cut and long.replace(" ", "").endswith(cut.replace(" ", ""))


def test_lint_finds_what_a_careful_tagger_would(tokens):
    records = {
        "a": {
            "caption": "mira, standing, smiling, soft light, red dress, studio, full body",
            "source": "composed",
            "slots": {
                "pose": ["standing"],
                "expression": ["smiling"],
                "lighting": ["soft light"],
                "clothing": ["red dress"],
                "background": ["studio"],
                "composition": ["full body"],
            },
        },
        "b": {
            "caption": "mira, standing, smiling, red dress, studio, close-up",
            "source": "composed",
            "slots": {
                "pose": ["standing"],
                "expression": ["smiling"],
                "lighting": [],
                "clothing": ["red dress"],
                "background": ["studio"],
                "composition": ["close-up"],
            },
        },
        "c": {
            "caption": "sitting, standing, smile, Red_Dress, solo, solo, " + ", ".join(["detail"] * 40),
            "source": "user",
            "user_caption": "photos/captions/c.txt",
            "slots": {},
        },
    }
    rows = {r.id: r for r in lint(records, "mira", VOCABULARY, GENERIC, tokens.count, 77, tokens.cut)}
    assert rows["a"].issues == []
    assert rows["b"].issues == ["empty slot: lighting"]
    c = rows["c"].issues
    assert "missing subject token 'mira' at the start" in c
    assert "generic tag 'solo'" in c and "repeated tag 'solo'" in c
    assert "conflicting tags: 'standing' and 'sitting'" in c
    assert "'smile' is written 'smiling' in 2 other caption(s)" in c
    assert "'Red_Dress' is written 'red dress' in 2 other caption(s)" in c
    assert any(i.startswith("photos/captions/c.txt: ") and "would be cut" in i for i in c)
    assert rows["c"].cut and rows["c"].tokens > 77


def test_vlm_backend_loads_a_local_transformers_model_and_splits_its_answer(tmp_path, monkeypatch):
    from tiny_vlm import WORDS, tiny_blip

    folder = tiny_blip(tmp_path / "blip")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    Image.new("RGB", (64, 80), (200, 30, 40)).save(tmp_path / "red.png")
    config = {"tagger": "vlm", "vlm": {"folder": str(folder), "prompt": "", "max_new_tokens": 12}}
    record = tag_image(tmp_path / "red.png", config)
    assert record["backend"] == "vlm" and record["tags"]
    for tag in record["tags"]:
        assert tag["score"] is None and all(word in WORDS for word in tag["name"].split())
    assert record == tag_image(tmp_path / "red.png", config)  # greedy decoding: the same answer every time


def test_vlm_folder_must_be_a_model(tmp_path):
    with pytest.raises(ConfigError, match=r"captions.vlm.folder: .*config.json does not exist"):
        tag_image(__file__, {"tagger": "vlm", "vlm": {"folder": str(tmp_path), "prompt": "", "max_new_tokens": 5}})
