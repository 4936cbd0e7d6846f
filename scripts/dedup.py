"""Checkpoint dedup: hash every usable photo, check the candidate pairs geometrically, group the
copies, write dedup.tsv."""

import json
from pathlib import Path

from tqdm import tqdm

from charlora import dedup, logs, near_duplicates
from charlora.images import decode_rgb

log = logs.setup(snakemake.log[0])
settings, ingest = snakemake.params.dedup, snakemake.params.ingest
audits = {}
for path in snakemake.input.audits:
    record = json.loads(Path(path).read_text(encoding="utf-8"))
    audits[record["id"]] = record
sources = {Path(p).name: p for p in snakemake.input.images}
usable = {i: sources[a["file"]] for i, a in audits.items() if a["status"] == "ok"}


def decode(path):
    return decode_rgb(path, ingest["max_megapixels"], ingest["alpha_background"]).image


log.info("%d usable photos, hashed with %s; %d threads", len(usable), settings["method"], snakemake.threads)
photos = near_duplicates.prepare_files(usable, decode, dedup.hasher(settings["method"]), snakemake.threads, tqdm)
relations = near_duplicates.find_relations(photos, settings["max_distance"], snakemake.threads, tqdm)
for relation in relations:
    log.info(
        "%s ~ %s: %s (hash distance %d; %s)",
        relation.a,
        relation.b,
        relation.kind,
        relation.hash_distance,
        relation.evidence,
    )
duplicates = dedup.group_duplicates(relations, audits, settings["mirrors"])
rows = dedup.build_table(audits, snakemake.params.unlisted, duplicates, dedup.similar_shots(relations, duplicates))
counts = {s: sum(r.status == s for r in rows) for s in (dedup.KEPT, dedup.DUPLICATE, dedup.REJECTED)}
log.info("%d files: %d kept, %d near-duplicates, %d rejected", len(rows), *counts.values())
for row in rows:
    if row.status != dedup.KEPT:
        log.warning("%s: %s %s", row.file, row.status, row.reason)
    elif row.similar_to:
        log.warning(
            "%s: kept; a second capture of the scene of %s (both kept: see the report)", row.file, row.similar_to
        )
strays = snakemake.params.strays
for where, reason in strays.items():
    log.warning("%s: %s", where, reason)
message = dedup.rejection_message(rows, strays)
if message and snakemake.params.strict:
    log.error("%s", message)
    raise SystemExit(message)
dedup.write_table(rows, snakemake.output.table)
