"""Rule prompt_embeddings: every evaluation prompt encoded once by the base model's frozen text encoders,
for every epoch's samples (charlora/sample.py)."""

from pathlib import Path

from charlora import logs, sample

log = logs.setup(snakemake.log[0])
prompts = sample.read_prompts(Path(snakemake.input.prompts))
sample.write_embeddings(
    Path(snakemake.input.model), prompts, snakemake.params.negative_prompt, Path(snakemake.output[0])
)
log.info("encoded %d prompts and the negative prompt into %s", len(prompts), snakemake.output[0])
