"""Rule dataset_report: the dataset report (HTML) and the framing chart (PNG)."""

import json
from pathlib import Path

from charlora import dedup, intent, logs, report
from charlora.captions import Vocabulary, read_lint_table

log = logs.setup(snakemake.log[0])
rows = dedup.read_table(snakemake.input.table)
audits = [json.loads(Path(p).read_text(encoding="utf-8")) for p in snakemake.input.audits]
kept_images = {Path(p).stem: Path(p) for p in snakemake.input.images}
kept_masks = {
    Path(p).stem: (Path(p), json.loads(Path(p).with_suffix(".json").read_text(encoding="utf-8")))
    for p in snakemake.input.masks
    if p.endswith(".png")
}
kept_captions = {Path(p).stem: json.loads(Path(p).read_text(encoding="utf-8")) for p in snakemake.input.captions}
lint_rows = read_lint_table(snakemake.input.lint)
vocabulary = Vocabulary.load(snakemake.input.vocabulary)
coverage = intent.coverage(
    intent.Intent.from_config(snakemake.params.intent, vocabulary),
    {i: record["caption"] for i, record in kept_captions.items()},
    vocabulary,
)
summary = report.write_dataset_report(
    rows=rows,
    audits=audits,
    kept_images=kept_images,
    kept_masks=kept_masks,
    kept_captions=kept_captions,
    lint_rows=lint_rows,
    images_dir=Path(snakemake.params.dataset) / "images",
    targets=snakemake.params.targets,
    coverage=coverage,
    html_path=snakemake.output.html,
    chart_path=snakemake.output.framing,
    strays=snakemake.params.strays,
    max_years=snakemake.params.max_years,
    max_skin_shift=snakemake.params.max_skin_shift,
    workers=snakemake.threads,
)
for warning in summary.warnings:
    log.warning("%s", warning)
log.info("report: %s", snakemake.output.html)
