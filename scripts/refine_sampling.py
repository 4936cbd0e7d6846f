"""Checkpoint refine_sampling: the saved epochs around the selection's start (the one minimum of the
validation loss) that the coarse pass did not sample (charlora/refinement.py)."""

from pathlib import Path

from charlora import logs, refinement

log = logs.setup(snakemake.log[0])
params = snakemake.params
losses = refinement.epoch_losses(dict(zip(params.epochs, map(Path, snakemake.input))))
result = refinement.refine(list(params.saved), list(params.sampled), losses.train, losses.val)
refinement.write_table(Path(snakemake.output[0]), result)
log.info("%s", result.why)
log.info("also sampling %d saved epochs: %s", len(result.epochs), ", ".join(map(str, result.epochs)) or "none")
