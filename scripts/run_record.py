"""Rule run_record: results/runs/<run>/run.yaml, what the run was made from and why (charlora/run_record.py)."""

from pathlib import Path

from charlora import logs, run_record
from charlora.dataset import files_by_id

log = logs.setup(snakemake.log[0])
inp, params = snakemake.input, snakemake.params
files = files_by_id(images=inp.images, masks=inp.masks, captions=inp.captions)
record = run_record.make_record(
    config=params.config,
    dataset=params.dataset,
    files=files,
    split=Path(inp.split),
    base_model=params.base_model,
    base_hash=Path(inp.model_hash).read_text().strip(),
    consent=Path(inp.consent[0]) if inp.consent else None,
    checkout=Path(snakemake.scriptdir).parent,
)  # the workflow's checkout: scripts/ is in it
run_record.write_record(snakemake.output[0], record)
log.info(
    "%s: dataset %s (%d photos), base model %s, charlora %s",
    snakemake.output[0],
    record["dataset"]["sha256"][:16],
    record["dataset"]["photos"],
    record["base_model"]["sha256"][:16],
    record["charlora"],
)
