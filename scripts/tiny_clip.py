"""Rule tiny_clip: a random CLIP model with tiny widths (the demo's stand-in for a real CLIP model folder)."""

from pathlib import Path

from charlora import logs, sample_metrics

log = logs.setup(snakemake.log[0])
sample_metrics.write_tiny_clip(Path(snakemake.output[0]), seed=snakemake.params.seed)
log.info("wrote %s (seed %d)", snakemake.output[0], snakemake.params.seed)
