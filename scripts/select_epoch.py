"""Checkpoint select_epoch: the scorecard of every sampled epoch (the user's reviews win) and the selected
epoch with its reasons (charlora/scorecard.py, charlora/selection.py)."""

from pathlib import Path

from charlora import logs, loss_trend, refinement, sample_metrics, scorecard, selection

log = logs.setup(snakemake.log[0])
inp, out, params = snakemake.input, snakemake.output, snakemake.params
scores = {s.epoch: s for s in map(sample_metrics.read_scores, map(Path, inp.scores))}
losses = refinement.epoch_losses(dict(zip(params.epochs, map(Path, inp.metrics))))
reviews = {int(e): scorecard.read_review(Path(p)) for e, p in params.reviews.items()}
unknown = sorted(set(reviews) - set(scores))
if unknown:
    log.warning("review files for epochs that were not sampled are ignored: %s", ", ".join(map(str, unknown)))
minimum = loss_trend.minimum(losses.val, losses.train)
rows = scorecard.score_rows(scores, params.copy_bits, losses.val_per_timestep, losses.train_smoothed, minimum, reviews)
scorecard.write_scorecard(Path(out.scorecard), rows)
chosen = selection.select(rows, losses.val, losses.train, list(params.saved))
selection.write_selection(Path(out.selection), chosen)
for reason in chosen.reasons:
    log.info("%s", reason)
if chosen.epoch is None:
    log.error("no epoch selected: %s", chosen.reasons[-1])
else:
    log.info("selected: epoch %d", chosen.epoch)
