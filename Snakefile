# charlora: photos of one character -> curated dataset -> ... -> SDXL character LoRA.
# Run the embedded demo with `snakemake --cores all`; see README.md and config/config.yaml.

import os
from pathlib import Path

from snakemake.utils import min_version

min_version("9.0")

# One folder per character: `snakemake --directory <folder>` run from the checkout reads that folder's
# config/config.yaml and writes its results/ and logs/ there, so one character never touches another's
# files. The checkout itself is the demo's folder.
if not Path("config/config.yaml").is_file():
    raise FileNotFoundError(
        f"{Path.cwd()} has no config/config.yaml. A character's folder holds its own copy: "
        f"mkdir -p config && cp {Path(workflow.basedir) / 'config' / 'config.yaml'} config/ (then edit it)"
    )


configfile: "config/config.yaml"


# The embedded demo's small settings (a tiny model on the CPU) over the guide's, whenever the dataset
# is the demo; command-line --configfile and --config values still win.
if config.get("dataset") == "demo":

    configfile: os.path.relpath(Path(workflow.basedir) / "config" / "demo.yaml")


# `snakemake --report report.zip`: this page first (what to read first and how), then every result by category.
report: "rules/report/workflow.rst"


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
    models,
    cost,
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


onstart:
    check_models(workflow.dag_settings.targets)  # before any job: every model file the run needs
    if cost := cost_at_start(workflow.dag_settings.targets):
        logger.info(f"What this run costs, at most (`snakemake cost` prints it again):\n{cost}")
    if config["dataset"] == "demo":
        logger.info("dataset: demo, so config/demo.yaml (the demo's small CPU settings) is applied over "
                    f"config/config.yaml: {DEMO_BASES.get(config['base_model'], 'a base model of your own')}")


onsuccess:
    print(summary.where_to_look(RUN, strays=STRAYS, random_base=config["base_model"] == "tiny"))


rule all:
    input:
        all_targets,
    default_target: True


# `snakemake dataset`: curate, mask and caption only, to review the dataset report before training.
rule dataset:
    input:
        dataset_targets,


# `snakemake models`: every model file the config names, what it is for, its size and SHA-256, and for a
# missing one where to get it (nothing is downloaded).
rule models:
    log:
        "logs/models/check.log",
    resources:
        mem_mb=1000,
        runtime=15,  # hashing the model files: several GB each
    conda:
        "envs/charlora.yaml"
    script:
        "scripts/check_models.py"


# `snakemake cost`: the disk the whole run fills (checkpoints, training states, samples), estimated
# before it runs from the base model's UNet shapes and the photo count.
rule cost:
    input:
        model=base_model,
    params:
        photos=len(LISTING.images),
    log:
        "logs/models/cost.log",
    resources:
        mem_mb=4000,
        runtime=5,
    conda:
        "envs/charlora.yaml"
    script:
        "scripts/run_cost.py"


# `snakemake onetrainer`: the curated dataset in OneTrainer's layout, with its concepts file.
rule onetrainer:
    input:
        "results/export/onetrainer",
