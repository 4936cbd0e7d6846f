"""Rule loss_curves: training loss (raw and smoothed) and validation loss per timestep, by epoch, with the
selected epoch marked."""

from pathlib import Path

from charlora import logs, selection, validate_plots

log = logs.setup(snakemake.log[0])
metrics = dict(zip(snakemake.params.epochs, map(Path, snakemake.input.metrics)))
selected = selection.read_selection(Path(snakemake.input.selection))
validate_plots.loss_curves(metrics, f"{snakemake.params.run}: losses", Path(snakemake.output[0]), selected)
log.info("wrote %s from %d epochs (selected: epoch %s)", snakemake.output[0], len(metrics), selected)
