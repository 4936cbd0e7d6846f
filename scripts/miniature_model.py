"""Rule miniature_model: the pretrained miniature base (docs/miniature.md) as a full single-file SDXL
checkpoint: the committed UNet and VAE with the random text encoders they were trained with."""

from charlora import logs, miniature

log = logs.setup(snakemake.log[0])
miniature.full_checkpoint(snakemake.input[0], snakemake.output[0])
log.info("wrote %s from %s", snakemake.output[0], snakemake.input[0])
