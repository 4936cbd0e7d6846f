"""Rule compare_runs: every run under results/runs/ side by side (charlora/run_record.py)."""

from charlora import logs, run_record

log = logs.setup(snakemake.log[0])
runs = run_record.write_comparison(snakemake.output[0], snakemake.params.runs)
log.info("%d run(s) compared: %s", len(runs), ", ".join(r.run for r in runs))
