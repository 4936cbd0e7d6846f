"""Checkpoint select_epoch: the scorecard of every sampled epoch (the user's reviews win) and the selected
epoch with its reasons (charlora/scorecard.py)."""

from pathlib import Path

from charlora import logs, refinement, sample_metrics, scorecard, validate_plots

log = logs.setup(snakemake.log[0])
inp, out, params = snakemake.input, snakemake.output, snakemake.params
scores = {s.epoch: s for s in map(sample_metrics.read_scores, map(Path, inp.scores))}
metrics = dict(zip(params.epochs, map(Path, inp.metrics)))
train, val = refinement.epoch_losses(metrics)
_, val_per_epoch = validate_plots.read_losses(metrics)
reviews = {int(e): scorecard.read_review(Path(p)) for e, p in params.reviews.items()}
unknown = sorted(set(reviews) - set(scores))
if unknown:
    log.warning("review files for epochs that were not sampled are ignored: %s", ", ".join(map(str, unknown)))
rows = scorecard.score_rows(scores, params.copy_bits, val_per_epoch, train, reviews)
scorecard.write_scorecard(Path(out.scorecard), rows)
selection = scorecard.select(rows, val, train, refinement.knee(train))
scorecard.write_selection(Path(out.selection), selection)
for reason in selection.reasons:
    log.info("%s", reason)
log.info("selected: epoch %d", selection.epoch)
