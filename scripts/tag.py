"""Rule tag: auto-tags of one kept photo, with scores."""

from charlora import atomic, logs
from charlora.tags import tag_image

log = logs.setup(snakemake.log[0])
record = tag_image(snakemake.input.image, snakemake.params.captions)
log.info("%s: %d tags (%s)", snakemake.wildcards.id, len(record["tags"]), record["backend"])
atomic.write_json(snakemake.output[0], record)
