"""The dataset report: every warning listed once at the top, linked to the section with its details."""

import html
import re

import numpy as np
from PIL import Image

from charlora import report
from charlora.captions import LintRow
from charlora.dedup import DUPLICATE, KEPT, REJECTED, DedupRow

TARGETS = {"close_up": [20, 30], "mid_shot": [40, 50], "full_body": [20, 30]}


def test_each_warning_is_shown_once_and_links_to_its_section(tmp_path):
    images, kept_images, kept_masks, audits = tmp_path / "images", {}, {}, []
    images.mkdir()
    for n, image_id in enumerate(["a", "b [2]", "c"]):
        photo = Image.fromarray(np.full((64, 48, 3), 40 * n, np.uint8))
        photo.save(images / f"{image_id}.jpg")
        photo.save(kept_images.setdefault(image_id, tmp_path / f"{image_id}.png"))
        Image.new("L", (48, 64), 255).save(tmp_path / f"{image_id}.mask.png")
        flags = ["mask covers 100% of the photo (expected 5%-85%): check it"] if image_id == "c" else []
        kept_masks[image_id] = (
            tmp_path / f"{image_id}.mask.png",
            {"source": "colour_key", "coverage": 1.0, "flags": flags},
        )
        audits.append(
            {
                "id": image_id,
                "file": f"{image_id}.jpg",
                "flags": [],
                "width": 48,
                "height": 64,
                "sharpness": 50.0,
                "jpeg_quality": 90,
                "source_format": "JPEG",
                "source_mode": "RGB",
                "exif_transposed": False,
                "framing": {"label": "close_up", "face_height": 0.5},
                "captured": {"a": "2024-05-01", "b [2]": "2024-06-01", "c": "2019-01-01"}[image_id],
                "colour": {
                    "skin_lab": {"a": [76, 12, 21], "b [2]": [76, 13, 20], "c": [70, 0, 10]}[image_id],
                    "grey_world_ab": [1.5, -2.0],
                },
            }
        )
    audits.append({**audits[0], "id": "d", "file": "d.jpg"})
    Image.new("RGB", (48, 64)).save(images / "d.jpg")
    rows = [
        DedupRow("a.jpg", "a", KEPT),
        DedupRow("b [2].jpg", "b [2]", KEPT, similar_to="c"),
        DedupRow("c.jpg", "c", KEPT, similar_to="b [2]"),
        DedupRow(
            "d.jpg",
            "d",
            DUPLICATE,
            duplicate_of="a",
            distance="3",
            reason="near-duplicate of a.jpg, kept for sharper (sharpness 50 vs 20)",
        ),
        DedupRow("e.txt", "", REJECTED, reason="unsupported file type '.txt'"),
    ]
    captions = {i: {"caption": f"mira, {i}", "source": "composed"} for i in kept_images}
    lint_rows = [LintRow(i, "composed", 5, "far too long" if i == "a" else "", []) for i in kept_images]
    coverage = [("scenes", "park", 2), ("scenes", "beach", 0)]

    summary = report.write_dataset_report(
        rows=rows,
        audits=audits,
        kept_images=kept_images,
        kept_masks=kept_masks,
        kept_captions=captions,
        lint_rows=lint_rows,
        images_dir=images,
        targets=TARGETS,
        coverage=coverage,
        html_path=tmp_path / "report.html",
        chart_path=tmp_path / "framing.png",
        strays={"captions/IMG_001.txt": "no photo named 'IMG_001' in images/"},
    )

    page = (tmp_path / "report.html").read_text()
    assert summary.counts == {KEPT: 3, DUPLICATE: 1, REJECTED: 1}
    assert summary.warnings == [
        "framing: close-up is 100% of kept photos (3 of 3), above the guide's 20-30%",
        "framing: mid shot is 0% of kept photos (0 of 3), below the guide's 40-50%",
        "framing: full body is 0% of kept photos (0 of 3), below the guide's 20-30%",
        "captions/IMG_001.txt: no photo named 'IMG_001' in images/",
        "1 pair(s) of photos look like second captures of one scene: both kept, check they add something",
        "skin colour: c.jpg is greener and bluer than the dataset by 15.6 (ingest.max_skin_shift 8): a colour cast?",
        "capture date: c.jpg was taken 2019-01-01, 5.3 years from the median 2024-05-01 (ingest.max_years_from_median "
        "2): the subject's looks may have changed",
        "mask of c: mask covers 100% of the photo (expected 5%-85%): check it",
        "captions: 1 caption(s) longer than the text encoders read: a",
        "intent: no kept photo's caption shows beach",
    ]
    sections = ["framing"] * 3 + ["strays", "similar", "skin", "dates", "masks", "captions", "intent"]
    for warning, section in zip(summary.warnings, sections):
        assert page.count(f'{html.escape(warning)} <a href="#{section}">(details)</a>') == 1, warning
        assert page.count(f'id="{section}"') == 1
    framing_text = re.compile(r"close-up is 100% of kept photos")
    assert len(framing_text.findall(page)) == 1  # at the top only; the Framing section shows the chart
    assert "3 of 3 kept photos have an EXIF capture date: from 2019-01-01 to 2024-06-01, median 2024-05-01" in page
    skin = page.split('id="skin"')[1].split("<h2")[0]
    assert "median a* 12, b* 20; typical: a.jpg" in skin and skin.count("<figure") == 2  # beside the typical photo
    similar = page.split('id="similar"')[1].split("<h2")[0]
    assert similar.count("<figure") == 2 and "b [2].jpg" in similar and "c.jpg" in similar  # side by side, once
    assert (
        "b [2].jpg" in page
        and "d.jpg<br>distance 3<br>near-duplicate of a.jpg, kept for sharper" in page
        and "unsupported file type" in page
    )
    # a caption is as wide as its picture and stands under it, however long the reason
    figure_style = re.search(r"figure\{([^}]*)\}", page).group(1)
    assert "width:160px" in figure_style and "text-align:center" not in figure_style
