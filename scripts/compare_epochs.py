"""Rule compare_epochs: the comparison sheet, prompts x sampled epochs (charlora/validate_plots.py)."""

from pathlib import Path

from charlora import logs, sample, validate_plots

log = logs.setup(snakemake.log[0])
inp, params = snakemake.input, snakemake.params
folders = dict(zip(params.epochs, map(Path, inp.samples)))
title = f"{params.run}: every prompt and seed (rows) by epoch (columns)"
if params.random_base:
    title += "; the base model is random (the demo's tiny model): every sample is colour noise by design"
validate_plots.compare_sheet(
    folders, sample.read_prompts(Path(inp.prompts)), list(range(params.seeds)), title, Path(snakemake.output[0])
)
log.info("wrote %s: epochs %s, titled %r", snakemake.output[0], ", ".join(map(str, params.epochs)), title)
