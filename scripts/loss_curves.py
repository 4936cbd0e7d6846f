"""Rule loss_curves: training loss (raw and smoothed) and validation loss per timestep, by epoch."""

from pathlib import Path

from charlora import logs, validate_plots

log = logs.setup(snakemake.log[0])
metrics = dict(zip(snakemake.params.epochs, map(Path, snakemake.input)))
validate_plots.loss_curves(metrics, f"{snakemake.params.run}: losses", Path(snakemake.output[0]))
log.info("wrote %s from %d epochs", snakemake.output[0], len(metrics))
