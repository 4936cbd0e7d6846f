# The run record stage's globals and input functions, for rules/runs.smk (which includes this file;
# Snakemake's linter keeps functions and rules in separate files).


def run_record_inputs(wildcards):
    """What run.yaml fingerprints: the curated files the training reads, the split, the base model's
    hash and the consent record."""
    return dict(images=kept_images(wildcards), masks=kept_mask_images(wildcards), captions=kept_captions(wildcards),
                split="results/dataset/split.tsv", model_hash="results/models/base_model.sha256",
                consent=[str(CONSENT)] if CONSENT else [])
