"""Rule tiny_model: the random-init SDXL-topology model (small widths) as a single-file checkpoint."""

from charlora import logs, sdxl

log = logs.setup(snakemake.log[0])
sdxl.write_tiny(snakemake.output[0], seed=snakemake.params.seed)
log.info("wrote %s (seed %d)", snakemake.output[0], snakemake.params.seed)
