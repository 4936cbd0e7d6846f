"""Rule cost (`snakemake cost`): what the whole run will write to disk, estimated before it runs
(charlora/run_cost.py); printed, and kept in the rule's log."""

from pathlib import Path

from charlora import atomic, run_cost

table = run_cost.describe(snakemake.config, run_cost.header_shapes(snakemake.input.model), snakemake.params.photos)
print(table, flush=True)
with atomic.atomic_path(Path(snakemake.log[0])) as tmp:
    Path(tmp).write_text(table + "\n", encoding="utf-8")
