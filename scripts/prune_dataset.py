"""Rule prune_dataset: remove the files in results/dataset/ that belong to no photo of the current
dataset (an earlier dataset's, a removed photo's, a photo now set aside) and list them."""

from pathlib import Path

from charlora import dedup, logs, stale

log = logs.setup(snakemake.log[0])
found = stale.find_stale(Path(snakemake.params.dataset), dedup.read_table(snakemake.input.table))
stale.remove_stale(found)
for item in found:
    log.info("removed %s: %s", item.path, item.reason)
log.info("%d stale file(s) removed", len(found))
stale.write_table(snakemake.output.table, found)
