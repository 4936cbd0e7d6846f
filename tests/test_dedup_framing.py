"""Dedup finds the near-duplicates a curator would, keeps the best, and leaves distinct shots alone;
framing labels the demo's shots as a photographer would."""

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from badfiles import cropped, reencoded
from charlora import dedup, demo, demo_render, framing

DEFAULT_METHOD, DEFAULT_DISTANCE = "phash", 10  # the schema's defaults


@pytest.fixture(scope="module")
def shots():
    return {shot.name: demo_render.render(shot) for shot in demo.SHOTS}


EDITS = {
    "resized": lambda im: im.resize((im.width * 2 // 3, im.height * 2 // 3), Image.LANCZOS),
    "re-encoded": lambda im: reencoded(im, 75),
    "slightly cropped": lambda im: cropped(im, 0.02),
    "brightened": lambda im: ImageEnhance.Brightness(im).enhance(1.12),
}


def audit_of(image_id, image):
    return {"id": image_id, "file": image_id + ".png", "status": "ok", "width": image.width,
            "height": image.height, "sharpness": 100.0}


def test_curators_near_duplicates_are_found_and_distinct_shots_kept(shots):
    images = dict(shots)
    for name in ["studio_smile_closeup.png", "park_walk.jpg", "red_dress_mid.png", "sitting_full.png"]:
        for edit, fn in EDITS.items():
            images[f"{name} ({edit})"] = fn(shots[name])
    hashes = dedup.hash_images(images, DEFAULT_METHOD)
    audits = {i: audit_of(i, im) for i, im in images.items()}
    duplicates = dedup.group_duplicates(hashes, audits, DEFAULT_METHOD, DEFAULT_DISTANCE)
    expected = {i: i.split(" (")[0] for i in images if " (" in i}
    # every crafted copy is a duplicate of its original (the original has more pixels or the same)
    assert {i: kept for i, (kept, _) in duplicates.items()} == expected


def test_best_of_group_is_kept_deterministically(shots):
    big = shots["park_walk.jpg"]
    small = big.resize((big.width // 2, big.height // 2))
    images = {"b_small": small, "a_big": big, "c_same": big.copy()}
    hashes = dedup.hash_images(images, DEFAULT_METHOD)
    audits = {i: audit_of(i, im) for i, im in images.items()}
    audits["c_same"]["sharpness"] = 50.0  # same size as a_big, softer
    duplicates = dedup.group_duplicates(hashes, audits, DEFAULT_METHOD, DEFAULT_DISTANCE)
    assert duplicates == {"b_small": ("a_big", 0), "c_same": ("a_big", 0)}
    rows = dedup.build_table(audits, {"x.txt": "unsupported"}, duplicates)
    assert [(r.file, r.status) for r in rows] == [
        ("a_big.png", "kept"), ("b_small.png", "duplicate"), ("c_same.png", "duplicate"), ("x.txt", "rejected")]


def test_table_round_trips_and_strict_message_lists_rejections(tmp_path):
    rows = [dedup.DedupRow("a b.png", "a b", "kept"),
            dedup.DedupRow("c.jpg", "c", "rejected", reason="truncated or corrupt image data")]
    dedup.write_table(rows, tmp_path / "dedup.tsv")
    assert dedup.read_table(tmp_path / "dedup.tsv") == rows
    assert dedup.rejection_message(rows).endswith("c.jpg: truncated or corrupt image data")
    with_stray = dedup.rejection_message(rows, {"captions/d.txt": "no photo named 'd' in images/"})
    assert "and 1 caption/mask file(s) unused" in with_stray and with_stray.endswith("captions/d.txt: no photo named 'd' in images/")
    assert dedup.rejection_message([], {}) is None


def test_framing_of_every_demo_shot(shots):
    labels = {name: framing.classify(image, 0.28, 0.14).label for name, image in shots.items()}
    expected = {shot.name: shot.framing for shot in demo.SHOTS}
    assert labels == expected  # 19 of 19: close-ups, mid shots and full-body shots


def test_no_face_means_unknown_framing():
    flat = Image.fromarray(np.full((512, 384, 3), 128, np.uint8))
    assert framing.classify(flat, 0.28, 0.14).label == framing.UNKNOWN


def test_files_of_photos_no_longer_kept_are_found_stale_with_the_reason(tmp_path):
    from charlora import stale

    root = tmp_path / "results/dataset"
    names = {"audit": ["a.b.json", "c.json", "gone.json"], "images": ["a.b.png", "c.png", "gone.png"],
             "captions": ["a.b.txt", "a.b.json", "c.txt", "c.json", "gone [1].txt", "notes.md"],
             "masks": ["a.b.png", "a.b.json", ".c.png.x1y2.tmp"], "tags": ["c.json"]}
    for folder, files in names.items():
        (root / folder).mkdir(parents=True)
        for name in files:
            (root / folder / name).write_text("x")
    rows = [dedup.DedupRow("a.b.jpg", "a.b", dedup.KEPT),
            dedup.DedupRow("c.jpg", "c", dedup.DUPLICATE, duplicate_of="a.b", distance="2")]
    found = {str(item.path.relative_to(root)): item.reason for item in stale.find_stale(root, rows)}
    assert found == {
        "audit/gone.json": "no photo 'gone' in the current dataset",  # c keeps its audit: it is still listed
        "images/c.png": "c.jpg is now a duplicate of a.b", "images/gone.png": "no photo 'gone' in the current dataset",
        "captions/c.txt": "c.jpg is now a duplicate of a.b", "captions/c.json": "c.jpg is now a duplicate of a.b",
        "captions/gone [1].txt": "no photo 'gone [1]' in the current dataset",
        "captions/notes.md": "not a file charlora writes in captions/",
        "tags/c.json": "c.jpg is now a duplicate of a.b",
    }  # a.b's files (an id with a dot) and the half-written temporary file stay
    stale.remove_stale(stale.find_stale(root, rows))
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) == [
        "audit/a.b.json", "audit/c.json", "captions/a.b.json", "captions/a.b.txt", "images/a.b.png",
        "masks/.c.png.x1y2.tmp", "masks/a.b.json", "masks/a.b.png"]


def test_the_copy_with_the_most_real_content_then_the_least_processed_is_kept(tmp_path):
    import skimage.data
    from charlora import audit, config

    settings = config.defaults()["ingest"] | {"min_side": 256}
    photo = Image.fromarray(skimage.data.astronaut())  # 512 x 512, a real photo
    photo.save(tmp_path / "original.png")
    canvas = Image.new("RGB", (912, 612), (0, 0, 0))  # pasted on a wider black canvas, as screenshots do
    canvas.paste(photo, (150, 30))  # not centred
    canvas.save(tmp_path / "letterboxed.png")
    ImageEnhance.Brightness(photo).enhance(1.1).save(tmp_path / "brightened.jpg", quality=90)
    photo.resize((384, 384), Image.LANCZOS).save(tmp_path / "smaller.png")
    audits = {p.stem: audit.audit_image(p, p.stem, settings) for p in tmp_path.iterdir()}
    assert audits["letterboxed"]["content_size"] == [512, 512] and audits["original"]["content_size"] == [512, 512]
    hashes = dedup.hash_images({i: Image.open(tmp_path / a["file"]).convert("RGB") for i, a in audits.items()},
                               DEFAULT_METHOD)
    duplicates = dedup.group_duplicates(hashes, audits, DEFAULT_METHOD, 30)  # a loose distance: all one group here
    assert {i: kept for i, (kept, _) in duplicates.items() if i != "letterboxed"} == {"brightened": "original",
                                                                                      "smaller": "original"}
    rows = {r.id: r.reason for r in dedup.build_table(audits, {}, duplicates)}
    assert rows["smaller"].endswith("kept for more image content (512x512 without borders vs 384x384 without borders)")
    assert rows["brightened"].endswith("kept for lossless (PNG vs JPEG)")
    assert dedup.why_kept(audits["original"], audits["letterboxed"]).startswith("sharper")  # same content, same format
