"""The dataset report: one self-contained HTML page (plus the framing chart as PNG).

It answers what a curator asks after a run: what was kept, what was set aside and why, which
photos were near-duplicates of which, what the audit flagged, and whether the framing mix matches
the guide's 20-30 % close-up / 40-50 % mid shot / 20-30 % full body.
"""

from __future__ import annotations

import base64
import html
import io
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from charlora import atomic
from charlora.audit import capture_dates, skin_tones
from charlora.dedup import DUPLICATE, KEPT, REJECTED, SIMILAR_SEPARATOR, DedupRow
from charlora.framing import FRAMINGS, UNKNOWN, WORDS
from charlora.images import ImageRejected, decode_rgb

THUMB = 160
LABELS = {**WORDS, UNKNOWN: "unknown"}


@dataclass
class FramingSummary:
    counts: dict[str, int]
    percent: dict[str, float]  # of the photos whose framing is known
    warnings: list[str] = field(default_factory=list)


def framing_summary(kept_audits: list[dict], targets: dict[str, list[float]]) -> FramingSummary:
    """Count framings among kept photos and compare each share with its target band."""
    counts = Counter(a["framing"]["label"] for a in kept_audits)
    known = sum(counts[f] for f in FRAMINGS)
    percent = {f: (100.0 * counts[f] / known if known else 0.0) for f in FRAMINGS}
    summary = FramingSummary({f: counts[f] for f in (*FRAMINGS, UNKNOWN)}, percent)
    if not known:
        summary.warnings.append("framing: no face found in any kept photo, so the framing mix is unknown")
        return summary
    for f in FRAMINGS:
        low, high = targets[f]
        if not low <= percent[f] <= high:
            direction = "below" if percent[f] < low else "above"
            summary.warnings.append(
                f"framing: {LABELS[f]} is {percent[f]:.0f}% of kept photos ({counts[f]} of {known}), "
                f"{direction} the guide's {low:g}-{high:g}%"
            )
    if counts[UNKNOWN]:
        summary.warnings.append(f"framing: {counts[UNKNOWN]} kept photo(s) without a detected face are not counted")
    return summary


def framing_chart(summary: FramingSummary, targets: dict[str, list[float]], path: str | Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 2.6), dpi=100)
    names = [LABELS[f] for f in FRAMINGS]
    for y, f in enumerate(FRAMINGS):
        low, high = targets[f]
        ax.add_patch(plt.Rectangle((low, y - 0.4), high - low, 0.8, color="#b8e0b8", zorder=0))
        inside = low <= summary.percent[f] <= high
        ax.barh(y, summary.percent[f], height=0.5, color="#3a7d44" if inside else "#c0392b", zorder=1)
        ax.text(summary.percent[f] + 1, y, f"{summary.percent[f]:.0f}% ({summary.counts[f]})", va="center")
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("share of kept photos with a detected face (%); green band: guide's target")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    plt.close(fig)
    atomic.write_bytes(path, buffer.getvalue())


def _thumb_uri(image: Image.Image) -> str:
    image = image.copy()
    image.thumbnail((THUMB, THUMB))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def mask_overlay(image: Image.Image, mask: Image.Image) -> Image.Image:
    """The photo with its background tinted red: what masked training will ignore."""
    tint = Image.new("RGB", image.size, (200, 30, 30))
    background = Image.blend(image.convert("RGB"), tint, 0.6)
    return Image.composite(image.convert("RGB"), background, mask.convert("L"))


def kept_thumbnails(
    kept_images: dict[str, Path], kept_masks: dict[str, tuple[Path, dict]], workers: int = 1
) -> tuple[dict[str, str], dict[str, str]]:
    """Each kept photo's thumbnail, and its mask overlay at thumbnail size, as data URIs: every photo
    decoded once, in `workers` threads (decoding the 1024 px PNGs is most of the report's work)."""

    def pictures(image_id: str) -> tuple[str, str | None]:
        with Image.open(kept_images[image_id]) as photo:
            small = photo.copy()
        small.thumbnail((THUMB, THUMB))
        if image_id not in kept_masks:
            return _thumb_uri(small), None
        with Image.open(kept_masks[image_id][0]) as mask:
            small_mask = mask.convert("L").resize(small.size, Image.Resampling.BOX)  # the subject's share of each pixel
        return _thumb_uri(small), _thumb_uri(mask_overlay(small, small_mask))

    ids = sorted(kept_images)
    with ThreadPoolExecutor(max(1, workers)) as pool:  # PIL decodes and resizes without the GIL
        done = dict(zip(ids, pool.map(pictures, ids)))
    return (
        {i: thumb for i, (thumb, _) in done.items()},
        {i: overlay for i, (_, overlay) in done.items() if overlay is not None},
    )


def _figure(uri: str, caption: str) -> str:
    return f'<figure><img src="{uri}" alt=""><figcaption>{caption}</figcaption></figure>'


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


CSS = """
body{font-family:sans-serif;margin:2em;max-width:70em;color:#222}
table{border-collapse:collapse;margin:1em 0}\
td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}
figure{display:inline-block;vertical-align:top;width:160px;margin:.3em;font-size:.8em;overflow-wrap:anywhere}
figure img{display:block;max-width:160px;max-height:160px}figcaption{margin-top:.2em}
.group{border:1px solid #ccc;padding:.4em;margin:.5em 0}.warn{color:#a94400}
"""


@dataclass
class ReportSummary:
    counts: dict[str, int]
    framing: FramingSummary
    warnings: list[str]


@dataclass
class Dataset:
    """What the report's sections read: the dedup table, the kept photos' audits, masks, captions and
    lint, the thumbnails, and the thresholds of the dataset-wide checks."""

    rows: list[DedupRow]
    by_id: dict[str, dict]  # every audited photo's audit record
    kept: list[dict]  # the kept photos' audit records, in the table's order
    kept_masks: dict[str, tuple[Path, dict]]  # id -> (mask PNG, mask record)
    kept_captions: dict[str, dict]  # id -> caption record
    lint_rows: list
    images_dir: Path  # the dataset's originals (set-aside duplicates shown from there)
    coverage: list[tuple[str, str, int]]  # (intent field, value, kept photos whose caption carries it)
    strays: dict[str, str]  # captions and masks no photo uses -> why
    max_years: float
    max_skin_shift: float
    thumbs: dict[str, str]  # id -> thumbnail data URI
    overlays: dict[str, str]  # id -> mask overlay data URI
    framing: FramingSummary
    chart_path: Path


# A section: its HTML parts (joined by newlines) and its warnings, (section anchor, text), which the
# page lists once at the top.
Section = tuple[list[str], list[tuple[str, str]]]


def framing_section(d: Dataset) -> Section:
    chart_uri = "data:image/png;base64," + base64.b64encode(d.chart_path.read_bytes()).decode("ascii")
    return (
        ['<h2 id="framing">Framing</h2>', f'<img src="{chart_uri}" alt="framing chart">'],
        [("framing", w) for w in d.framing.warnings],
    )


def rejected_section(d: Dataset) -> Section:
    rejected = [[html.escape(r.file), html.escape(r.reason)] for r in d.rows if r.status == REJECTED]
    return ["<h2>Rejected files</h2>", _table(["file", "reason"], rejected) if rejected else "<p>None.</p>"], []


def strays_section(d: Dataset) -> Section:
    table = (
        _table(["file", "why it is not used"], [[html.escape(w), html.escape(r)] for w, r in d.strays.items()])
        if d.strays
        else "<p>None: every caption and mask file belongs to a photo.</p>"
    )
    return (
        ['<h2 id="strays">Unused captions and masks</h2>', table],
        [("strays", f"{where}: {reason}") for where, reason in d.strays.items()],
    )


def duplicates_section(d: Dataset) -> Section:
    parts = ["<h2>Near-duplicate groups</h2>"]
    groups: dict[str, list[DedupRow]] = {}
    for r in d.rows:
        if r.status == DUPLICATE:
            groups.setdefault(r.duplicate_of, []).append(r)
    if not groups:
        parts.append("<p>None found.</p>")
    for kept_id, dups in sorted(groups.items()):
        figures = [_figure(d.thumbs[kept_id], f"kept: {html.escape(d.by_id[kept_id]['file'])}")]
        for dup in dups:
            try:
                image = decode_rgb(d.images_dir / dup.file, max_megapixels=1e9).image
            except ImageRejected:
                continue
            figures.append(
                _figure(
                    _thumb_uri(image),
                    f"{html.escape(dup.file)}<br>distance {dup.distance}<br>{html.escape(dup.reason)}",
                )
            )
        parts.append(f'<div class="group">{"".join(figures)}</div>')
    return parts, []


def similar_section(d: Dataset) -> Section:
    parts, warnings = ['<h2 id="similar">Similar shots, both kept</h2>'], []
    similar = [
        (r.id, other)
        for r in d.rows
        if r.status == KEPT and r.similar_to
        for other in r.similar_to.split(SIMILAR_SEPARATOR)
        if r.id < other
    ]
    if similar:
        parts.append(
            "<p>These pairs align like one scene but part of the picture differs (a blink, a head "
            "turn, a moved arm): second captures, not edited copies. Both are kept; remove one from "
            "the dataset if it adds no new pose or expression.</p>"
        )
        warnings.append(
            (
                "similar",
                f"{len(similar)} pair(s) of photos look like second captures of one scene: "
                "both kept, check they add something",
            )
        )
    else:
        parts.append("<p>None found.</p>")
    for a, b in similar:
        parts.append(
            '<div class="group">'
            + "".join(_figure(d.thumbs[i], html.escape(d.by_id[i]["file"])) for i in (a, b))
            + "</div>"
        )
    return parts, warnings


def flags_section(d: Dataset) -> Section:
    flagged = [[html.escape(a["file"]), "<br>".join(html.escape(f) for f in a["flags"])] for a in d.kept if a["flags"]]
    return [
        "<h2>Audit flags</h2>",
        _table(["file", "flags"], flagged) if flagged else "<p>No flags on kept photos.</p>",
    ], []


def skin_section(d: Dataset) -> Section:
    parts, warnings = ['<h2 id="skin">Skin tone and colour</h2>'], []
    skin = skin_tones(d.kept, d.max_skin_shift)
    if skin.median_ab is None:
        parts.append(f"<p>Skin colour measured on {skin.measured} kept photo(s) with a face: too few to compare.</p>")
    else:
        parts.append(
            f"<p>Skin colour (the middle of the face, CIELAB) measured on {skin.measured} kept photos: "
            f"median a* {skin.median_ab[0]:g}, b* {skin.median_ab[1]:g}; typical: "
            f"{html.escape(skin.typical)}. A photo further than {d.max_skin_shift:g} from the median "
            "has a colour cast or a white-balance error the model would learn as the skin.</p>"
        )
        by_file = {a["file"]: a["id"] for a in d.kept}
        for file, distance, way in skin.outliers:
            parts.append(
                '<div class="group">'
                + _figure(d.thumbs[by_file[file]], f"{html.escape(file)}<br>{way} by {distance:g}")
                + _figure(d.thumbs[by_file[skin.typical]], f"typical: {html.escape(skin.typical)}")
                + "</div>"
            )
            warnings.append(
                (
                    "skin",
                    f"skin colour: {file} is {way} than the dataset by {distance:g} "
                    f"(ingest.max_skin_shift {d.max_skin_shift:g}): a colour cast?",
                )
            )
        if not skin.outliers:
            parts.append("<p>No photo's skin colour stands out.</p>")
    grey = [
        [html.escape(a["file"]), f"{a['colour']['grey_world_ab'][0]:g}", f"{a['colour']['grey_world_ab'][1]:g}"]
        for a in d.kept
        if a.get("colour")
    ]
    if grey:
        parts.append(
            "<details><summary>Whole-picture colour (grey-world mean a*, b*): a cast, or just a "
            "colourful backdrop</summary>" + _table(["file", "a*", "b*"], grey) + "</details>"
        )
    return parts, warnings


def dates_section(d: Dataset) -> Section:
    parts = ['<h2 id="dates">Capture dates</h2>']
    dates = capture_dates(d.kept, d.max_years)
    if dates.median:
        parts.append(
            f"<p>{len(d.kept) - len(dates.undated)} of {len(d.kept)} kept photos have an EXIF capture "
            f"date: from {dates.earliest} to {dates.latest}, median {dates.median}.</p>"
        )
    else:
        parts.append("<p>No kept photo has an EXIF capture date (drawings, scans, or metadata stripped).</p>")
    if dates.far:
        parts.append(
            _table(
                ["file", "taken", "years from the median"],
                [[html.escape(f), taken, f"{y:g}"] for f, taken, y in dates.far],
            )
        )
    warnings = [
        (
            "dates",
            f"capture date: {f} was taken {taken}, {y:g} years from the median {dates.median} "
            f"(ingest.max_years_from_median {d.max_years:g}): the subject's looks may have changed",
        )
        for f, taken, y in dates.far
    ]
    if dates.undated and dates.median:
        parts.append("<p>Without a date: " + ", ".join(html.escape(f) for f in dates.undated) + ".</p>")
    return parts, warnings


def masks_section(d: Dataset) -> Section:
    figures, warnings = [], []
    for image_id in sorted(d.kept_masks):
        record = d.kept_masks[image_id][1]
        caption = f"{html.escape(image_id)}<br>{record['source']}, {record['coverage']:.0%}"
        if record["flags"]:
            caption += "".join(f'<br><span class="warn">{html.escape(f)}</span>' for f in record["flags"])
            warnings.extend(("masks", f"mask of {image_id}: {f}") for f in record["flags"])
        figures.append(_figure(d.overlays[image_id], caption))
    return (
        [
            '<h2 id="masks">Masks</h2><p>Red: background that masked training ignores.</p>',
            "".join(figures) or "<p>No masks.</p>",
        ],
        warnings,
    )


def captions_section(d: Dataset) -> Section:
    table = _table(
        ["file", "caption", "tokens", "lint"],
        [
            [
                html.escape(d.by_id[r.id]["file"]),
                html.escape(d.kept_captions[r.id]["caption"]) + f" <i>({d.kept_captions[r.id]['source']})</i>",
                str(r.tokens),
                "<br>".join(html.escape(i) for i in r.issues),
            ]
            for r in d.lint_rows
        ],
    )
    over = [r.id for r in d.lint_rows if r.cut]
    warnings = (
        [("captions", f"captions: {len(over)} caption(s) longer than the text encoders read: {', '.join(over)}")]
        if over
        else []
    )
    return ['<h2 id="captions">Captions and lint</h2>', table], warnings


def intent_section(d: Dataset) -> Section:
    parts, warnings = ['<h2 id="intent">Intent coverage</h2>'], []
    if not d.coverage:
        return parts + ["<p>The intent lists no values (config <code>intent:</code>).</p>"], warnings
    parts.append(
        "<p>For each value the intent lists, the kept photos whose caption carries it. The "
        "validation prompts sample every value; one that no photo shows is learnt from the base "
        "model alone.</p>"
    )
    parts.append(
        _table(
            ["intent", "value", "photos"],
            [
                [field, html.escape(value), str(n) if n else '<span class="warn">0</span>']
                for field, value, n in d.coverage
            ],
        )
    )
    missing = [value for _, value, n in d.coverage if not n]
    if missing:
        warnings.append(("intent", f"intent: no kept photo's caption shows {', '.join(missing)}"))
    return parts, warnings


def kept_section(d: Dataset) -> Section:
    return [
        "<h2>Kept photos</h2>",
        _table(
            ["", "file", "size", "sharpness", "framing (face height)", "JPEG quality", "source"],
            [
                [
                    f'<img src="{d.thumbs[a["id"]]}" alt="">',
                    html.escape(a["file"]),
                    f"{a['width']}x{a['height']}",
                    f"{a['sharpness']:.0f}",
                    f"{LABELS[a['framing']['label']]}"
                    + (f" ({a['framing']['face_height']:.2f})" if a["framing"]["face_height"] else ""),
                    "" if a["jpeg_quality"] is None else str(a["jpeg_quality"]),
                    html.escape(
                        f"{a['source_format']} {a['source_mode']}" + (", EXIF-rotated" if a["exif_transposed"] else "")
                    ),
                ]
                for a in d.kept
            ],
        ),
    ], []


# The report's sections, in the order of the page.
SECTIONS = (
    framing_section,
    rejected_section,
    strays_section,
    duplicates_section,
    similar_section,
    flags_section,
    skin_section,
    dates_section,
    masks_section,
    captions_section,
    intent_section,
    kept_section,
)


def write_dataset_report(
    *,
    rows: list[DedupRow],
    audits: list[dict],
    kept_images: dict[str, Path],
    kept_masks: dict[str, tuple[Path, dict]],
    kept_captions: dict[str, dict],
    lint_rows: list,
    images_dir: Path,
    targets: dict[str, list[float]],
    coverage: list[tuple[str, str, int]],
    html_path: str | Path,
    chart_path: str | Path,
    strays: dict[str, str] | None = None,
    max_years: float = 2.0,
    max_skin_shift: float = 8.0,
    workers: int = 1,
) -> ReportSummary:
    """Write the HTML report (the SECTIONS in order, their warnings listed once at the top) and the
    framing chart; return the counts and the warnings shown.

    `kept_images`: id -> normalised PNG of each kept photo; `kept_masks`: id -> (mask PNG, mask
    record); `kept_captions`: id -> caption record; `lint_rows`: the caption lint; `images_dir`: the
    dataset's originals (the set-aside duplicates are shown from there); `coverage`: (intent field,
    value, kept photos whose caption carries it) for each value the intent lists (intent.coverage);
    `strays`: the dataset's captions and masks that no photo uses, with the reason (dataset.stray_files);
    `max_years`: photos taken further than this from the median capture date are flagged;
    `max_skin_shift`: photos whose skin colour is further than this (CIELAB a*b*) from the median;
    `workers`: threads that make the thumbnails.
    """
    by_id = {a["id"]: a for a in audits}
    thumbs, overlays = kept_thumbnails(kept_images, kept_masks, workers)
    kept = [by_id[r.id] for r in rows if r.status == KEPT]
    counts = {s: sum(r.status == s for r in rows) for s in (KEPT, DUPLICATE, REJECTED)}
    framing = framing_summary(kept, targets)
    framing_chart(framing, targets, chart_path)
    dataset = Dataset(
        rows,
        by_id,
        kept,
        kept_masks,
        kept_captions,
        lint_rows,
        Path(images_dir),
        coverage,
        strays or {},
        max_years,
        max_skin_shift,
        thumbs,
        overlays,
        framing,
        Path(chart_path),
    )
    body, warnings = [], []
    for section in SECTIONS:
        parts, found = section(dataset)
        body += parts
        warnings += found
    page = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>charlora dataset report</title>"
        f"<style>{CSS}</style></head><body><h1>Dataset report</h1>",
        f"<p>{len(rows)} files in {html.escape(str(images_dir))}: <b>{counts[KEPT]} kept</b>, "
        f"{counts[DUPLICATE]} near-duplicates set aside, {counts[REJECTED]} rejected.</p>",
        "".join(
            f'<p class="warn">{html.escape(text)} <a href="#{section}">(details)</a></p>' for section, text in warnings
        ),
    ]
    atomic.write_text(html_path, "\n".join(page + body + ["</body></html>\n"]))
    return ReportSummary(counts, framing, [text for _, text in warnings])
