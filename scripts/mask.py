"""Rule mask: the subject mask of one kept photo and its record (source, coverage, flags)."""

from PIL import Image

from charlora import atomic, logs, masks

log = logs.setup(snakemake.log[0])
user_mask = snakemake.input.user_mask[0] if snakemake.input.user_mask else None
mask, record = masks.make_mask(snakemake.input.image, user_mask, snakemake.params.masks, snakemake.params.strict)
log.info("%s: %s mask, %.0f%% subject", snakemake.wildcards.id, record["source"], 100 * record["coverage"])
for flag in record["flags"]:
    log.warning("%s: %s", snakemake.wildcards.id, flag)
atomic.save_image(Image.fromarray(mask, "L"), snakemake.output.mask)
atomic.write_json(snakemake.output.record, record)
