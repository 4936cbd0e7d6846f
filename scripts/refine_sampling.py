"""Checkpoint refine_sampling: the saved epochs around the lowest validation loss and the knee of the
training loss that the coarse pass did not sample (charlora/refinement.py)."""

from pathlib import Path

from charlora import logs, refinement

log = logs.setup(snakemake.log[0])
params = snakemake.params
train, val = refinement.epoch_losses(dict(zip(params.epochs, map(Path, snakemake.input))))
result = refinement.refine(list(params.saved), list(params.sampled), train, val)
refinement.write_table(Path(snakemake.output[0]), result)
log.info("lowest validation loss: epoch %s; knee of the smoothed training loss: epoch %s; also sampling: %s",
         result.lowest_val, result.knee, ", ".join(map(str, result.epochs)) or "none")
