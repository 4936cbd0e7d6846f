"""Checkpoint dedup: hash every usable photo, group near-duplicates, write dedup.tsv."""

import json
from pathlib import Path

from tqdm import tqdm

from charlora import dedup, logs
from charlora.images import decode_rgb

log = logs.setup(snakemake.log[0])
settings, ingest = snakemake.params.dedup, snakemake.params.ingest
audits = {}
for path in snakemake.input.audits:
    record = json.loads(Path(path).read_text(encoding="utf-8"))
    audits[record["id"]] = record
sources = {Path(p).name: p for p in snakemake.input.images}
usable = sorted(i for i, a in audits.items() if a["status"] == "ok")
images = {}
for image_id in tqdm(usable, desc=f"hashing ({settings['method']})"):
    images[image_id] = decode_rgb(sources[audits[image_id]["file"]], ingest["max_megapixels"],
                                  ingest["alpha_background"]).image
hashes = dedup.hash_images(images, settings["method"])
duplicates = dedup.group_duplicates(hashes, audits, settings["method"], settings["max_distance"])
rows = dedup.build_table(audits, snakemake.params.unlisted, duplicates)
counts = {s: sum(r.status == s for r in rows) for s in (dedup.KEPT, dedup.DUPLICATE, dedup.REJECTED)}
log.info("%d files: %d kept, %d near-duplicates, %d rejected", len(rows), *counts.values())
for row in rows:
    if row.status != dedup.KEPT:
        log.warning("%s: %s %s", row.file, row.status, row.reason)
strays = snakemake.params.strays
for where, reason in strays.items():
    log.warning("%s: %s", where, reason)
message = dedup.rejection_message(rows, strays)
if message and snakemake.params.strict:
    log.error("%s", message)
    raise SystemExit(message)
dedup.write_table(rows, snakemake.output.table)
