"""Rule compare_runs: every run under results/runs/ side by side (charlora/run_record.py)."""

from pathlib import Path

from charlora import logs, run_record

log = logs.setup(snakemake.log[0])
runs_root = Path(snakemake.output[0]).parent.parent  # results/runs: the other runs are beside this one
runs = run_record.write_comparison(snakemake.output[0], runs_root)
log.info("%d run(s) compared: %s", len(runs), ", ".join(r.run for r in runs))
