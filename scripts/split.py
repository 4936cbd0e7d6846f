"""Rule split: every kept photo -> train or val, by a stable hash of its id."""

from charlora import dedup, logs, split

log = logs.setup(snakemake.log[0])
kept = [row.id for row in dedup.read_table(snakemake.input.table) if row.status == dedup.KEPT]
sides = split.assign(kept, snakemake.params.val_fraction)
val = sorted(i for i, s in sides.items() if s == split.VAL)
log.info("%d train, %d val: %s", len(sides) - len(val), len(val), ", ".join(val))
split.write_table(snakemake.output[0], sides)
