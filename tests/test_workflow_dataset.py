"""The dataset stage run for real: the embedded demo, a user's folder full of junk, strict mode,
a bad config, and what reruns after the user edits the folder."""

import html
import json
import os
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import badfiles
from charlora import dedup, demo
from charlora.captions import read_lint_table
from tiny_onnx import brightness_segmenter, wd14_tagger
from workflow import copy_workspace, jobs_run, make_workspace, snakemake, snapshot


@pytest.fixture(scope="module")
def demo_ws(demo_dataset):  # `snakemake dataset` on the shipped demo (conftest.py)
    return demo_dataset


def rows_by_file(ws):
    return {r.file: r for r in dedup.read_table(ws / "results/dataset/dedup.tsv")}


def test_demo_runs_to_the_dataset_report(demo_ws):
    # config/demo.yaml was applied, and Snakemake's log says so
    logs = [p.read_text() for p in (demo_ws / ".snakemake/log").glob("*.snakemake.log")]
    assert any("dataset: demo, so config/demo.yaml (the demo's small CPU settings) is applied" in t for t in logs)
    rows = rows_by_file(demo_ws)
    assert set(rows) == set(demo.IMAGE_FILES)
    for copy, (original, _) in demo.NEAR_DUPLICATES.items():
        assert (rows[copy].status, rows[copy].duplicate_of) == ("duplicate", original.rsplit(".", 1)[0])
        assert int(rows[copy].distance) <= 22  # dedup.max_distance: the hashes made them candidates
        relation = "mirror image" if "mirror" in demo.NEAR_DUPLICATES[copy][1] else "near-duplicate"
        assert rows[copy].reason.startswith(
            (f"{relation} of {original}, kept for ", f"mirror image, otherwise equal: kept {original} ")
        ), rows[copy].reason
    assert int(rows["brick_hands_hips_flipped.jpg"].distance) > 10  # beyond the plain hash's old limit of 10
    assert rows[demo.TRUNCATED].status == "rejected" and "truncated" in rows[demo.TRUNCATED].reason
    assert rows[demo.TOO_SMALL].status == "rejected" and "too small: 150x200" in rows[demo.TOO_SMALL].reason
    kept = [r.id for r in rows.values() if r.status == "kept"]
    assert sorted(kept) == sorted(s.name.rsplit(".", 1)[0] for s in demo.SHOTS)
    for image_id in kept:
        with Image.open(demo_ws / f"results/dataset/images/{image_id}.png") as im:
            assert im.mode == "RGB" and im.format == "PNG"
    with Image.open(demo_ws / "results/dataset/images/window_light_serious.png") as im:
        assert im.size == (384, 512)  # stored sideways with EXIF orientation 6, ingested upright
    html = (demo_ws / "results/dataset/report.html").read_text()
    for needed in [
        "Near-duplicate groups",
        "portrait neutral (copy).png",
        demo.TRUNCATED,
        "too small",
        "close-up",
        '<h2 id="masks">Masks</h2>',
    ]:
        assert needed in html
    assert (demo_ws / "results/dataset/framing.png").stat().st_size > 1000
    for log in [
        "logs/dataset/demo_dataset.log",
        "logs/dataset/dedup.log",
        "logs/dataset/report.log",
        "logs/dataset/audit/park_walk.log",
        "logs/dataset/ingest/park_walk.log",
    ]:
        assert (demo_ws / log).stat().st_size > 0


def test_demo_tagger_fills_every_caption_slot_and_the_photos_cover_the_intent(demo_ws):
    composed = 0
    for shot in demo.SHOTS:
        record = json.loads((demo_ws / f"results/dataset/captions/{shot.name.rsplit('.', 1)[0]}.json").read_text())
        if record["source"] == "composed":  # not one of the demo's hand-written captions
            composed += 1
            assert all(record["slots"].values()), (shot.name, record["slots"])
            assert record["slots"]["clothing"] == [shot.outfit]
    assert composed == len(demo.SHOTS) - len(demo.CAPTION_FILES)
    html = (demo_ws / "results/dataset/report.html").read_text()
    assert '<h2 id="intent">Intent coverage</h2>' in html and "<td>poses</td><td>walking</td><td>1</td>" in html
    assert "intent:" not in (demo_ws / "logs/dataset/report.log").read_text()  # every value has a photo


# OneTrainer's ConceptConfig.default_values() (Nerogar/OneTrainer at 23df383, modules/util/config/ConceptConfig.py),
# with BaseConfig.to_dict's "__version": the keys its concepts file is read with
ONETRAINER_CONCEPT = [
    "__version",
    "image",
    "text",
    "name",
    "path",
    "seed",
    "enabled",
    "type",
    "include_subdirectories",
    "image_variations",
    "text_variations",
    "balancing",
    "balancing_strategy",
    "loss_weight",
    "concept_stats",
]
ONETRAINER_TEXT = [
    "__version",
    "prompt_source",
    "prompt_path",
    "enable_tag_shuffling",
    "tag_delimiter",
    "keep_tags_count",
    "tag_dropout_enable",
    "tag_dropout_mode",
    "tag_dropout_probability",
    "tag_dropout_special_tags_mode",
    "tag_dropout_special_tags",
    "tag_dropout_special_tags_regex",
    "caps_randomize_enable",
    "caps_randomize_mode",
    "caps_randomize_probability",
    "caps_randomize_lowercase",
]


def test_onetrainer_export_is_the_layout_onetrainer_reads(demo_ws, tmp_path):
    ws = copy_workspace(demo_ws, tmp_path / "ws")
    assert jobs_run(snakemake(ws, "onetrainer").stdout) == {("onetrainer_export", ""), ("onetrainer", "")}
    out = ws / "results/export/onetrainer"
    concepts = json.loads((out / "concepts.json").read_text())
    assert [c["type"] for c in concepts] == ["STANDARD", "VALIDATION"]
    sides = dict(line.split("\t") for line in (ws / "results/dataset/split.tsv").read_text().splitlines()[1:])
    for c in concepts:
        assert list(c) == ONETRAINER_CONCEPT and list(c["text"]) == ONETRAINER_TEXT
        assert c["text"]["prompt_source"] == "sample" and c["enabled"] and not c["image"]["enable_random_flip"]
        folder = Path(c["path"])
        assert folder.is_absolute() and folder.parent == out.resolve()
        # what OneTrainer's CollectPaths and ModifyPath do: images without -masklabel/-condlabel, then
        # <stem>.txt for the prompt (prompt source "sample") and <stem>-masklabel.png for the mask
        images = [
            p for p in folder.iterdir() if p.suffix == ".png" and not p.stem.endswith(("-masklabel", "-condlabel"))
        ]
        want = "train" if c["type"] == "STANDARD" else "val"
        assert sorted(p.stem for p in images) == sorted(i for i, side in sides.items() if side == want)
        for image in images:
            curated = ws / "results/dataset"
            assert image.read_bytes() == (curated / "images" / image.name).read_bytes()
            assert image.with_suffix(".txt").read_text() == (curated / "captions" / f"{image.stem}.txt").read_text()
            mask = folder / f"{image.stem}-masklabel.png"
            assert mask.read_bytes() == (curated / "masks" / image.name).read_bytes()
    assert len(list((out / "train").iterdir())) + len(list((out / "val").iterdir())) == 3 * len(sides)


def test_demo_masks_are_single_channel_at_the_photos_size(demo_ws):
    hand_masked = {name.rsplit(".", 1)[0] for name in demo.MASK_FILES}
    for shot in demo.SHOTS:
        image_id = shot.name.rsplit(".", 1)[0]
        record = json.loads((demo_ws / f"results/dataset/masks/{image_id}.json").read_text())
        assert record["source"] == ("user" if image_id in hand_masked else "colour_key")
        assert 0.1 < record["coverage"] < 0.9 and not record["flags"]
        with (
            Image.open(demo_ws / f"results/dataset/masks/{image_id}.png") as mask,
            Image.open(demo_ws / f"results/dataset/images/{image_id}.png") as photo,
        ):
            assert mask.mode == "L" and mask.size == photo.size
    assert (demo_ws / "logs/masks/park_walk.log").stat().st_size > 0


def test_demo_rerun_has_nothing_to_do(demo_ws):
    assert "Nothing to be done" in snakemake(demo_ws, "dataset").stdout


def test_snakemake_report_includes_the_dataset_report(demo_ws):
    snakemake(demo_ws, "dataset", "--report", "report.zip")
    assert (demo_ws / "report.zip").stat().st_size > 10_000


# --- a user's folder -----------------------------------------------------------------------------

JUNK = {
    "empty.jpg": (badfiles.zero_byte, "empty file (0 bytes)"),
    "notes.jpg": (badfiles.text_as_image, "not an image: the file holds text"),
    "cut off.jpg": (badfiles.truncated_jpeg, "truncated or corrupt image data"),
    "wave.gif": (badfiles.animated_gif, "animated GIF with 3 frames"),
    "huge.png": (badfiles.decompression_bomb_png, "declares 60000x60000 pixels"),
    "set {2}.png": (lambda path: badfiles.photo(seed=13).save(path), "braces { } in the name"),  # a good photo
}
# Good photos whose names a shell would read as syntax (each job gets them as a command's arguments):
# a leading dash, a quote, brackets, $, ;, a comma, a tab, a newline. The first has the user's own
# caption and mask, under the same odd name.
ODD_NAMES = ["-it's [1] $HOME; a,b\tc", "two\nlines"]
AWKWARD = {  # valid photos in awkward encodings: all must be kept
    "print cmyk.jpg": badfiles.cmyk_jpeg,
    "scan16.png": badfiles.sixteen_bit_png,
    "cutout_la.png": badfiles.grey_alpha_png,
    "palette.png": badfiles.palette_png,
}


@pytest.fixture(scope="module")
def user_ws(tmp_path_factory, demo_ws):
    ws = make_workspace(tmp_path_factory.mktemp("user"))
    photos = ws / "photos" / "images"
    photos.mkdir(parents=True)
    for shot in demo.SHOTS:  # the demo's good photos, copied as a user would
        shutil.copy2(demo_ws / "results/demo/images" / shot.name, photos / shot.name)
    for name, (maker, _) in JUNK.items():
        maker(photos / name)
    for name, maker in AWKWARD.items():
        maker(photos / name)
    badfiles.exif_rotated_jpeg(photos / "teléfono.jpg", badfiles.photo(300, 400, seed=9))
    for seed, name in enumerate(ODD_NAMES, start=20):
        badfiles.photo(seed=seed).save(photos / f"{name}.png")
    badfiles.photo(200, 200, seed=10).save(photos / "tiny.png")
    badfiles.photo(seed=11).save(photos / "twice.png")
    badfiles.photo(seed=11).save(photos / "twice.jpg", quality=95)
    (photos / "readme.txt").write_text("shoot of 2026-10-01\n")
    (ws / "photos" / "captions").mkdir()
    (ws / "photos/captions/park_walk.txt").write_text("mira, walking, smiling, white t-shirt, park, full body\n")
    (ws / "photos/captions/backlit_mid.txt").write_bytes(b"mira, backlight, \xff\xfe broken")  # not UTF-8
    (ws / "photos/captions/studio_wave_mid2.txt").write_text("mira, waving\n")  # matches no photo: reported
    (ws / "photos/captions" / f"{ODD_NAMES[0]}.txt").write_text("mira, $HOME; `ls`, 'quoted'\n")
    wd14_tagger(ws / "models" / "tagger")  # the user's tagger folder; the config names it
    # the user's config: their character's token, their tagger, the colour key for masks, and (the demo's
    # photos are small) 256 px
    config = (ws / "config/config.yaml").read_text()
    for default, theirs in [
        ("  token: mychar ", "  token: mira "),
        ("{folder: models/wd-eva02-large-tagger-v3}", "{folder: models/tagger}"),
        ("  method: rembg ", "  method: colour_key "),
        ("\nstrict:", "\ningest:\n  min_side: 256\nstrict:"),
    ]:
        assert default in config
        config = config.replace(default, theirs)
    (ws / "config/config.yaml").write_text(config)
    (ws / "photos" / "masks").mkdir()
    shutil.copy2(demo_ws / "results/demo/masks/park_walk.png", ws / "photos/masks/park_walk.png")
    Image.new("L", (10, 10), 255).save(ws / "photos/masks/red_dress_mid.png")  # wrong size
    Image.new("L", (384, 512), 255).save(ws / "photos/masks" / f"{ODD_NAMES[0]}.png")
    Image.new("L", (384, 512), 255).save(ws / "photos/masks/sitting_full.jpg")  # masks are PNG: reported
    before = snapshot(ws / "photos")
    result = snakemake(ws, "dataset", "--config", f"dataset={ws / 'photos'}")
    return ws, before, result


def test_every_bad_file_gets_its_reason_and_the_rest_goes_on(user_ws):
    ws, _, result = user_ws
    rows = rows_by_file(ws)
    for name, (_, reason) in JUNK.items():
        assert rows[name].status == "rejected" and reason in rows[name].reason, (name, rows[name])
    assert "too small: 200x200" in rows["tiny.png"].reason
    assert "ambiguous id 'twice'" in rows["twice.png"].reason and rows["twice.jpg"].status == "rejected"
    assert "unsupported file type '.txt'" in rows["readme.txt"].reason
    for name in [*AWKWARD, "teléfono.jpg", *(s.name for s in demo.SHOTS), *(f"{n}.png" for n in ODD_NAMES)]:
        assert rows[name].status == "kept", rows[name]
    for name in ODD_NAMES:  # every per-photo file of each odd name
        for made in ["audit/{}.json", "images/{}.png", "masks/{}.png", "tags/{}.json", "captions/{}.txt"]:
            assert (ws / "results/dataset" / made.format(name)).is_file(), made.format(name)
    assert (ws / "results/dataset/captions" / f"{ODD_NAMES[0]}.txt").read_text() == "mira, $HOME; `ls`, 'quoted'\n"
    assert json.loads((ws / "results/dataset/masks" / f"{ODD_NAMES[0]}.json").read_text())["source"] == "user"
    with Image.open(ws / "results/dataset/images/teléfono.png") as im:
        assert im.size == (300, 400)
    with Image.open(ws / "results/dataset/images/scan16.png") as im:
        assert im.mode == "RGB" and np.asarray(im).max() > 200  # 16-bit range scaled, not clipped
    report = (ws / "results/dataset/report.html").read_text()
    for name in JUNK:
        assert name in report
    tags = json.loads((ws / "results/dataset/tags/studio_wave_mid.json").read_text())
    assert tags["backend"] == "wd14" and {"1girl", "standing", "smile"} <= {t["name"] for t in tags["tags"]}
    assert (
        ws / "results/dataset/captions/studio_wave_mid.txt"
    ).read_text() == "mira, standing, smiling, grey background, mid shot\n"
    assert (
        ws / "results/dataset/captions/park_walk.txt"
    ).read_text() == "mira, walking, smiling, white t-shirt, park, full body\n"
    backlit = json.loads((ws / "results/dataset/captions/backlit_mid.json").read_text())
    assert backlit["source"] == "composed" and "backlit_mid.txt: not UTF-8 text" in backlit["flags"][0]
    lint_rows = read_lint_table(ws / "results/dataset/lint.tsv")  # a row per caption, odd names too
    assert sorted(r.id for r in lint_rows) == sorted(r.id for r in rows.values() if r.status == "kept")
    assert "Captions and lint" in report
    park = json.loads((ws / "results/dataset/masks/park_walk.json").read_text())
    assert park["source"] == "user"
    red = json.loads((ws / "results/dataset/masks/red_dress_mid.json").read_text())
    assert red["source"] == "colour_key"
    assert "the mask is 10x10 but its photo is 384x512" in red["flags"][0]
    assert "the mask is 10x10" in report
    # captions and masks that no photo uses: in the report and the log, never silently ignored
    strays = {
        "captions/studio_wave_mid2.txt": "no photo named 'studio_wave_mid2' in images/, so this caption is "
        "not used; did you mean 'studio_wave_mid'?",
        "masks/sitting_full.jpg": "not used: only <photo name>.png files are read as masks",
    }
    log = (ws / "logs/dataset/dedup.log").read_text()
    for where, reason in strays.items():
        assert f"{where}: {reason}" in log and html.escape(f"{where}: {reason}") in report
    assert "  not used        captions/studio_wave_mid2.txt, masks/sitting_full.jpg  (no photo has" in result.stdout


def test_rembg_loads_once_per_batch_and_a_mask_is_the_same_in_any_batch(user_ws, tmp_path):
    ws = copy_workspace(user_ws[0], tmp_path / "ws")
    brightness_segmenter(ws / "models" / "segmenter.onnx")
    rembg = "masks:\n  method: rembg\n  rembg: {model: models/segmenter.onnx, session: u2net_custom}\n"
    (ws / "rembg.yaml").write_text(rembg)
    args = ("dataset", "--configfile", "rembg.yaml", "--config", f"dataset={ws / 'photos'}")
    ran = jobs_run(snakemake(ws, *args).stdout)
    kept = [r.id for r in rows_by_file(ws).values() if r.status == "kept"]
    generated = [i for i in kept if i not in ("park_walk", ODD_NAMES[0])]  # the others have the user's mask
    assert {("mask", f"id={i.splitlines()[0]}") for i in generated} <= ran
    # a copied folder reruns its photos' jobs, yet every photo's tags are in the cache: no tagger loaded
    assert all("tags from the cache" in (ws / "logs/captions/tag" / f"{i}.log").read_text() for i in kept)
    logs = {i: (ws / "logs/masks" / f"{i}.log").read_text() for i in generated}
    batches = [re.search(r"computed in a batch of (\d+) photo", log) for log in logs.values()]
    sizes = [int(b.group(1)) for b in batches if b]
    assert sum(sizes) == len(generated) and len(sizes) < len(generated) / 2, sizes  # loads: a few, not one per photo
    # a job that ran a batch loaded rembg; one that waited on the lock while another job's batch made
    # its mask ("from the cache (another job's batch)") loaded nothing
    for i, log in logs.items():
        assert ("rembg session u2net_custom on CPU" in log) == ("computed in a batch" in log), (i, log)
    for i in generated:
        assert json.loads((ws / "results/dataset/masks" / f"{i}.json").read_text())["source"] == "rembg", i
    # a photo's mask is the same bytes made in another batch: here, with every other photo again
    photo = "studio_wave_mid"
    before = (ws / f"results/dataset/masks/{photo}.png").read_bytes()
    for entry in (ws / "results/cache/masks").glob("*.png"):
        entry.unlink()
    snakemake(ws, f"results/dataset/masks/{photo}.png", "--force", *args[1:])
    log = (ws / "logs/masks" / f"{photo}.log").read_text()
    assert f"computed in a batch of {len(generated) - 1} photo(s)" in log  # red_dress_mid: a user mask, not batched
    assert (ws / f"results/dataset/masks/{photo}.png").read_bytes() == before


def test_the_users_folder_is_left_untouched(user_ws):
    ws, before, _ = user_ws
    assert snapshot(ws / "photos") == before


def test_incremental_reruns(user_ws):
    ws, _, _ = user_ws
    args = ("dataset", "--config", f"dataset={ws / 'photos'}")
    photos = ws / "photos" / "images"
    # touching a photo without changing it: nothing to do
    later = time.time() + 5
    os.utime(photos / "park_walk.jpg", (later, later))
    assert "Nothing to be done" in snakemake(ws, "-n", *args).stdout
    # changing one photo: only its jobs and the dataset-wide ones
    with Image.open(photos / "park_walk.jpg") as im:
        im.convert("RGB").rotate(2).save(photos / "park_walk.jpg", quality=95)
    ran = jobs_run(snakemake(ws, *args).stdout)
    assert ran == {
        ("audit", "id=park_walk"),
        ("dedup", ""),
        ("ingest", "id=park_walk"),
        ("mask", "id=park_walk"),
        ("tag", "id=park_walk"),
        ("caption", "id=park_walk"),
        ("caption_lint", ""),
        ("dataset_report", ""),
        ("dataset", ""),
    }  # dedup.tsv came out the same: no new split
    assert "tags computed in a batch of 1 photo(s)" in (ws / "logs/captions/tag/park_walk.log").read_text()
    # adding a photo: only the new photo's jobs and the dataset-wide ones (the split too)
    badfiles.photo(seed=12).save(photos / "new shot.png")
    ran = jobs_run(snakemake(ws, *args).stdout)
    assert ran == {
        ("audit", "id=new shot"),
        ("dedup", ""),
        ("ingest", "id=new shot"),
        ("mask", "id=new shot"),
        ("tag", "id=new shot"),
        ("caption", "id=new shot"),
        ("caption_lint", ""),
        ("split", ""),
        ("prune_dataset", ""),
        ("dataset_report", ""),
        ("dataset", ""),
    }
    # fixing a mask by hand: only that photo's mask and the report
    with Image.open(ws / "results/dataset/masks/studio_wave_mid.png") as generated:
        generated.save(ws / "photos/masks/studio_wave_mid.png")
    ran = jobs_run(snakemake(ws, *args).stdout)
    assert ran == {("mask", "id=studio_wave_mid"), ("dataset_report", ""), ("dataset", "")}
    # editing one caption: that caption and what reads captions, never a mask or tags
    (ws / "photos/captions/park_walk.txt").write_text(
        "mira, walking, smiling, white t-shirt, park, full body, sunlight\n"
    )
    ran = jobs_run(snakemake(ws, *args).stdout)
    assert ran == {("caption", "id=park_walk"), ("caption_lint", ""), ("dataset_report", ""), ("dataset", "")}
    # editing the slot vocabulary: every caption is recomposed; masks and tags stay
    vocabulary = ws / "config/caption_slots.yaml"
    vocabulary.write_text(vocabulary.read_text().replace("  grin: smiling", "  grin: smiling\n  beam: smiling"))
    ran = jobs_run(snakemake(ws, *args).stdout)
    kept = [r.id for r in rows_by_file(ws).values() if r.status == "kept"]
    kept = [i.split("\n")[0] for i in kept]  # Snakemake prints a wildcard's newline as is: jobs_run sees one line
    assert ran == {("caption", f"id={i}") for i in kept} | {
        ("caption_lint", ""),
        ("dataset_report", ""),
        ("dataset", ""),
    }
    # removing a photo: its files leave results/dataset/ too, listed in the log and pruned.tsv
    new_files = sorted(p.relative_to(ws) for p in (ws / "results/dataset").rglob("new shot.*"))
    assert len(new_files) == 7  # audit, image, mask and its record, tags, caption and its record
    (photos / "new shot.png").unlink()
    ran = jobs_run(snakemake(ws, *args).stdout)
    assert ran == {
        ("dedup", ""),
        ("prune_dataset", ""),
        ("split", ""),
        ("caption_lint", ""),
        ("dataset_report", ""),
        ("dataset", ""),
    }
    assert not list((ws / "results/dataset").rglob("new shot.*"))
    pruned = (ws / "results/dataset/pruned.tsv").read_text().splitlines()
    assert sorted(line.split("\t")[0] for line in pruned[1:]) == [str(p) for p in new_files]
    assert all(line.endswith("\tno photo 'new shot' in the current dataset") for line in pruned[1:])
    log = (ws / "logs/dataset/prune.log").read_text()
    assert all(f"removed {p}: no photo 'new shot'" in log for p in new_files)
    assert "new shot" not in (ws / "results/dataset/report.html").read_text()


def test_strict_turns_rejections_into_a_failed_run(user_ws):
    ws, _, _ = user_ws
    result = snakemake(ws, "dataset", "--config", f"dataset={ws / 'photos'}", "strict=True", check=False)
    assert result.returncode != 0
    assert "dataset file(s) rejected and 2 caption/mask file(s) unused (strict: true" in result.stdout
    assert "  captions/studio_wave_mid2.txt: no photo named 'studio_wave_mid2'" in result.stdout
    for name, (_, reason) in JUNK.items():
        assert f"{name}: {reason}" in result.stdout


@pytest.mark.parametrize(
    "config, message",
    [
        ("ingest:\n  min_side: big\n", "ingest.min_side: 'big' is not of type 'integer'"),
        (
            "masks:\n  method: rembg\n  rembg:\n    model: models/BiRefNet.onnx\n",
            "masks.rembg.model: models/BiRefNet.onnx does not exist. Put the ONNX model",
        ),
        (
            "captions:\n  tagger: wd14\n  wd14: {folder: null}\n",
            "captions.wd14.folder is not set: give the path of a WD14 tagger's model.onnx",
        ),
        (
            "base_model: models/sd_xl_base_1.0.safetensors\n",
            "base_model: models/sd_xl_base_1.0.safetensors does not exist",
        ),
        ("base_model: model.ckpt\n", "base_model: model.ckpt is a Python pickle (.ckpt); loading one can run code"),
        ("train:\n  optimizer: lion\n", "train.optimizer: 'lion' is not one of ['adafactor', 'adamw8bit', 'adamw']"),
        ("lora:\n  epoch: last\n", "lora.epoch: must be auto or the number of a saved epoch"),
        (
            "lora:\n  epoch: 7\n",
            "lora.epoch: 7 is not a saved epoch of run 'demo'; with train.epochs 4, save_every 1 "
            "and epochs_per_job 2 the saved epochs are 1, 2, 3, 4",
        ),
        ("validate:\n  sampler: heun\n", "validate.sampler: 'heun' is not one of ['euler', 'euler_a', 'dpmpp_2m'"),
        ("validate:\n  extra_prompts: ['']\n", "validate.extra_prompts.0: '' should be non-empty"),
    ],
    ids=[
        "schema",
        "missing rembg model",
        "tagger folder not set",
        "missing base model",
        "pickled base model",
        "unknown optimizer",
        "lora epoch not a number",
        "lora epoch not saved",
        "unknown sampler",
        "empty prompt",
    ],
)
def test_bad_config_stops_before_any_job_naming_the_key(tmp_path, config, message):
    ws = make_workspace(tmp_path / "ws")
    (ws / "mine.yaml").write_text(config)
    result = snakemake(ws, "--configfile", "mine.yaml", check=False)
    assert result.returncode != 0
    assert message in result.stdout
    assert not (ws / "results").exists()


def test_an_unedited_checkout_gives_a_folder_the_guides_run_and_a_quick_look_without_models(tmp_path, demo_ws):
    """`dataset: <folder>` leaves the demo's settings behind: the default target is the guide's run and
    stops, before any job, on the first model file the user has not put in place yet; the README's
    quick-look command runs the dataset stage on the same folder with no model file at all."""
    ws = make_workspace(tmp_path / "ws")
    photos = tmp_path / "my photos" / "images"
    photos.mkdir(parents=True)
    for shot in ("park_walk.jpg", "studio_wave_mid.png", "sitting_full.png"):  # at a real run's 768 px or more
        with Image.open(demo_ws / "results/demo/images" / shot) as im:
            im.convert("RGB").resize((im.width * 2, im.height * 2)).save(photos / f"{Path(shot).stem}.png")
    folder = f"dataset={photos.parent}"
    real = snakemake(ws, "--config", folder, check=False)
    assert (
        real.returncode != 0
        and "masks.rembg.model: models/BiRefNet-general-epoch_244.onnx does not exist" in real.stdout
    )
    assert "Where to get it: BiRefNet general" in real.stdout and "config/demo.yaml" not in real.stdout
    assert not (ws / "results").exists()
    # `snakemake models` lists all four, with where to get each; it downloads and checks nothing else
    listed = snakemake(ws, "models", "--config", folder).stdout
    assert (
        "0 of 4 model files in place" in listed and "huggingface.co/stabilityai/stable-diffusion-xl-base-1.0" in listed
    )
    result = snakemake(ws, "dataset", "--configfile", "config/quick-look.yaml", "--config", folder)
    rows = rows_by_file(ws)
    assert sorted(r.status for r in rows.values()) == ["kept"] * 3
    caption = (ws / "results/dataset/captions/park_walk.txt").read_text()
    assert caption.startswith("mychar, ") and "full body" in caption  # the token of config.yaml, the framing
    assert not (ws / "results/demo").exists() and ("demo_dataset", "") not in jobs_run(result.stdout)


def test_a_second_character_in_its_own_folder_leaves_the_first_untouched(tmp_path, demo_ws):
    """`--directory <folder>`: the folder's own config/config.yaml, results/ and logs/; the checkout's (the
    demo's) files stay as they were, through a dry run and a dataset-only run of the second character."""
    first = copy_workspace(demo_ws, tmp_path / "checkout")
    before = {name: snapshot(first / name) for name in ("results", "logs", "config")}
    second = tmp_path / "characters" / "anna 2"
    (second / "config").mkdir(parents=True)
    photos = second / "photos" / "images"
    photos.mkdir(parents=True)
    for seed in range(3):
        badfiles.photo(800, 1000, seed=seed).save(photos / f"shot {seed}.png")
    missing = snakemake(first, "-n", "--directory", str(second), check=False)
    assert (
        missing.returncode != 0
        and "has no config/config.yaml. A character's folder holds its own copy" in missing.stdout
    )
    config = (first / "config/config.yaml").read_text().replace("dataset: demo ", "dataset: photos ")
    (second / "config/config.yaml").write_text(config.replace("  token: mychar ", "  token: anna "))
    planned = snakemake(first, "-n", "--directory", str(second), "dataset", "--configfile", "config/quick-look.yaml")
    assert ("demo_dataset", "") not in jobs_run(planned.stdout)
    snakemake(first, "--directory", str(second), "dataset", "--configfile", "config/quick-look.yaml")
    assert sorted(r.status for r in rows_by_file(second).values()) == ["kept"] * 3
    assert (second / "results/dataset/captions/shot 0.txt").read_text().startswith("anna")
    assert (second / "logs/dataset/dedup.log").is_file()
    assert {name: snapshot(first / name) for name in ("results", "logs", "config")} == before
