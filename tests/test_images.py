"""Decoding and listing: awkward modes are read correctly, junk is rejected with a clear reason."""

import re

import numpy as np
import pytest
from PIL import Image

import badfiles
from charlora.dataset import list_dataset_images
from charlora.images import ImageRejected, decode_rgb, estimate_jpeg_quality


def decode(path):
    return decode_rgb(path, max_megapixels=100)


@pytest.mark.parametrize(
    "maker, expected",
    [
        (badfiles.zero_byte, "empty file (0 bytes)"),
        (badfiles.text_as_image, "not an image: the file holds text"),
        (badfiles.truncated_jpeg, "truncated or corrupt image data"),
        (badfiles.animated_gif, "animated GIF with 3 frames"),
        (badfiles.decompression_bomb_png, "declares 60000x60000 pixels (3600 MP), over ingest.max_megapixels=100"),
    ],
)
def test_junk_is_rejected_with_its_reason(tmp_path, maker, expected):
    path = tmp_path / ("bad.gif" if maker is badfiles.animated_gif else "bad.jpg")
    maker(path)
    with pytest.raises(ImageRejected, match=re.escape(expected)):
        decode(path)


def test_bomb_is_refused_by_our_limit_before_decoding(tmp_path):
    path = tmp_path / "bomb.png"
    badfiles.decompression_bomb_png(path, side=12000)  # 144 MP: over our 100 MP, under Pillow's own guard
    with pytest.raises(ImageRejected, match=r"declares 12000x12000 pixels \(144 MP\), over ingest.max_megapixels=100"):
        decode(path)


def test_cmyk_is_converted_to_rgb(tmp_path):
    path = tmp_path / "cmyk.jpg"
    badfiles.cmyk_jpeg(path)
    decoded = decode(path)
    assert (decoded.source_mode, decoded.image.mode) == ("CMYK", "RGB")
    reference = np.asarray(badfiles.photo(seed=4), dtype=float)
    assert np.abs(np.asarray(decoded.image, dtype=float) - reference).mean() < 12


def test_palette_grey_alpha_and_16_bit_are_read_as_8_bit_rgb(tmp_path):
    badfiles.palette_png(tmp_path / "p.png")
    badfiles.grey_alpha_png(tmp_path / "la.png")
    badfiles.sixteen_bit_png(tmp_path / "i16.png")
    palette = decode(tmp_path / "p.png")
    assert palette.source_mode == "P" and palette.image.mode == "RGB"
    la = decode_rgb(tmp_path / "la.png", 100, alpha_background=(0, 255, 0))
    assert la.had_alpha and la.image.getpixel((2, 2)) == (0, 255, 0)  # transparent -> background colour
    sixteen = decode(tmp_path / "i16.png")
    assert sixteen.source_mode.startswith("I") and sixteen.image.mode == "RGB"
    expected = np.asarray(badfiles.photo(seed=7).convert("L"))
    assert np.array_equal(np.asarray(sixteen.image)[..., 0], expected)  # 16-bit scaled back, not clipped to 255


def test_exif_orientation_is_applied(tmp_path):
    upright = badfiles.photo(300, 400, seed=8)
    badfiles.exif_rotated_jpeg(tmp_path / "phone.jpg", upright)
    decoded = decode(tmp_path / "phone.jpg")
    assert decoded.source_size == (400, 300) and decoded.image.size == (300, 400)
    assert decoded.exif_transposed
    assert np.abs(np.asarray(decoded.image, dtype=float) - np.asarray(upright, dtype=float)).mean() < 6


@pytest.mark.parametrize("quality", [60, 85, 95])
def test_jpeg_quality_estimate(tmp_path, quality):
    badfiles.photo().save(tmp_path / "q.jpg", "JPEG", quality=quality)
    with Image.open(tmp_path / "q.jpg") as im:
        assert abs(estimate_jpeg_quality(im) - quality) <= 1


def test_listing_gives_ids_and_rejects_what_cannot_have_one(tmp_path):
    for name in [
        "a.jpg",
        "a.png",
        "café au lait.png",
        "b.PNG",
        "notes.txt",
        ".DS_Store",
        "Thumbs.db",
        "x{y}.png",
        "[1] 'q' $;,.png",
    ]:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    listing = list_dataset_images(tmp_path)
    assert listing.images == {"café au lait": "café au lait.png", "b": "b.PNG", "[1] 'q' $;,": "[1] 'q' $;,.png"}
    assert set(listing.rejected) == {"a.jpg", "a.png", "notes.txt", "sub", "x{y}.png"}
    assert listing.rejected["x{y}.png"].startswith("braces { } in the name: Snakemake reads them as wildcards")
    assert "ambiguous id 'a': a.png has the same name" in listing.rejected["a.jpg"]
    assert "unsupported file type '.txt'" in listing.rejected["notes.txt"]


def test_missing_dataset_folder_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere/images does not exist"):
        list_dataset_images(tmp_path / "nowhere" / "images")


def test_atomic_writes_leave_no_temp_files_and_normal_permissions(tmp_path):
    import os
    import stat

    from charlora import atomic

    atomic.write_json(tmp_path / "out" / "a.json", {"b": 1, "a": 2})
    assert (tmp_path / "out" / "a.json").read_text() == '{\n  "a": 2,\n  "b": 1\n}\n'
    mode = stat.S_IMODE(os.stat(tmp_path / "out" / "a.json").st_mode)
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask
    with pytest.raises(RuntimeError):
        with atomic.atomic_path(tmp_path / "out" / "b.txt") as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed mid-write")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.json"]


def _with_exif(path, **tags):
    exif = Image.Exif()
    for tag, value in tags.items():
        if tag == "DateTime":
            exif[0x0132] = value
        else:
            exif.get_ifd(0x8769)[{"DateTimeOriginal": 0x9003, "DateTimeDigitized": 0x9004}[tag]] = value
    badfiles.photo(64, 64).save(path, "JPEG", exif=exif)
    return path


@pytest.mark.parametrize(
    "tags, expected",
    [
        (
            dict(DateTimeOriginal="2019:05:01 10:00:00", DateTime="2024:01:01 00:00:00"),
            "2019-05-01",
        ),  # taken, not edited
        (dict(DateTimeDigitized="2018:02:03 04:05:06"), "2018-02-03"),
        (dict(DateTime="2021:12:24 18:00:00"), "2021-12-24"),
        (dict(DateTimeOriginal="0000:00:00 00:00:00", DateTime="2020:07:07 07:07:07"), "2020-07-07"),  # a placeholder
        (dict(DateTimeOriginal="    :  :     :  :  "), None),
        ({}, None),
    ],
)
def test_capture_date_from_exif(tmp_path, tags, expected):
    from charlora.images import decode_rgb

    assert decode_rgb(_with_exif(tmp_path / "p.jpg", **tags), 100).captured == expected


def test_photos_taken_far_from_the_others_and_undated_ones_are_listed():
    from charlora.audit import capture_dates

    audits = [
        {"file": f"{n}.jpg", "captured": d}
        for n, d in [
            ("a", "2023-03-01"),
            ("b", "2023-06-01"),
            ("c", "2023-07-15"),
            ("d", "2020-01-10"),
            ("e", "2026-02-01"),
        ]
    ]
    audits.append({"file": "drawn.png", "captured": None})
    dates = capture_dates(audits, max_years=2)
    assert (dates.earliest, dates.latest, dates.median) == ("2020-01-10", "2026-02-01", "2023-06-01")
    assert dates.far == [("d.jpg", "2020-01-10", 3.4), ("e.jpg", "2026-02-01", 2.7)]
    assert dates.undated == ["drawn.png"]
    assert capture_dates(audits, max_years=5).far == []
    assert capture_dates(audits[-1:], max_years=2).median is None
