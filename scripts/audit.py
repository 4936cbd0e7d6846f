"""Rule audit: measure one photo and write its audit record."""

from charlora import atomic, logs
from charlora.audit import audit_image

log = logs.setup(snakemake.log[0])
record = audit_image(snakemake.input[0], snakemake.wildcards.id, snakemake.params.ingest)
if record["status"] == "ok":
    log.info("%s: %dx%d, %s", record["file"], record["width"], record["height"], record["framing"]["label"])
    for flag in record["flags"]:
        log.warning("%s: %s", record["file"], flag)
else:
    log.warning("%s rejected: %s", record["file"], record["reason"])
atomic.write_json(snakemake.output[0], record)
