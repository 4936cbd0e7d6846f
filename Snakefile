# charlora: photos of one character -> curated dataset -> ... -> SDXL character LoRA.
# Run the embedded demo with `snakemake --cores all`; see README.md and config/config.yaml.

from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "rules/common.smk"
include: "rules/dataset.smk"
include: "rules/masks.smk"
include: "rules/captions.smk"
include: "rules/train.smk"
include: "rules/validate.smk"
include: "rules/lora.smk"
include: "rules/runs.smk"


# On a cluster (profiles/slurm) these run where Snakemake itself runs: each reads a few small
# tables or copies one file, less work than a cluster job's wait in the queue and its start.
localrules:
    all,
    dataset,
    onetrainer,
    split,
    prune_dataset,
    caption_lint,
    validation_prompts,
    refine_sampling,
    select_epoch,
    run_lora,
    run_record,
    compare_runs,


onsuccess:
    print(summary.where_to_look(RUN, strays=STRAYS))


rule all:
    input:
        all_targets,
    default_target: True


# `snakemake dataset`: curate, mask and caption only, to review the dataset report before training.
rule dataset:
    input:
        dataset_targets,


# `snakemake onetrainer`: the curated dataset in OneTrainer's layout, with its concepts file.
rule onetrainer:
    input:
        "results/export/onetrainer",
