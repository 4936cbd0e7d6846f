# Validation stage: the evaluation prompts (from the intent, the validation photos' captions and the
# user's own) -> every prompt x seed sampled from epoch 0 (the base model), every `validate.every`-th
# saved epoch and the last, then (a checkpoint, once the losses are known) the saved epochs around the
# lowest validation loss and the knee of the training loss -> a grid per epoch, the comparison sheet
# (prompts x epochs) and the loss curves, all in `snakemake --report`.
# Any saved epoch can be sampled on request: snakemake results/runs/<run>/validate/epoch-003.png


rule validation_prompts:
    input:
        split="results/dataset/split.tsv",
        captions=kept_captions,
        vocabulary=config["captions"]["vocabulary"],
    output:
        f"{RUN_DIR}/validate/prompts.tsv",
    params:
        token=config["subject"]["token"],
        intent=config["intent"],
        cap=VALIDATE["prompts"],
        extra=VALIDATE["extra_prompts"],
    log:
        f"logs/runs/{RUN}/validate/prompts.log",
    resources:
        mem_mb=500,
        runtime=5,
    conda:
        "../envs/charlora.yaml"
    script:
        "../scripts/validation_prompts.py"


rule sample_epoch:
    input:
        unpack(sample_inputs),
    output:
        images=directory(f"{RUN_DIR}/validate/epoch-{{eee}}"),
        grid=report(
            f"{RUN_DIR}/validate/epoch-{{eee}}.png",
            caption="report/epoch_grid.rst",
            category="2. Validation",
            subcategory="Samples per epoch",
        ),
    params:
        settings=SAMPLE_SETTINGS,
        run=RUN,
    log:
        f"logs/runs/{RUN}/validate/epoch-{{eee}}.log",
    resources:
        mem_mb=VALIDATE["mem_mb"],
        runtime=VALIDATE["runtime"],
        gpu=VALIDATE_GPUS,
    conda:
        "../envs/charlora.yaml"
    script:
        "../scripts/sample_epoch.py"


checkpoint refine_sampling:
    input:
        [plan.epoch_file(RUN, e, "metrics.tsv") for e in range(1, TRAIN["epochs"] + 1)],
    output:
        f"{RUN_DIR}/validate/refine.tsv",
    params:
        epochs=list(range(1, TRAIN["epochs"] + 1)),
        saved=SAVED_EPOCHS,
        sampled=COARSE_EPOCHS,
    log:
        f"logs/runs/{RUN}/validate/refine.log",
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        "../envs/charlora.yaml"
    script:
        "../scripts/refine_sampling.py"


rule compare_epochs:
    input:
        prompts=f"{RUN_DIR}/validate/prompts.tsv",
        samples=sample_folders,
    output:
        report(f"{RUN_DIR}/validate/compare.png", caption="report/compare.rst", category="2. Validation"),
    params:
        epochs=all_sampled_epochs,
        seeds=VALIDATE["seeds"],
        run=RUN,
    log:
        f"logs/runs/{RUN}/validate/compare.log",
    resources:
        mem_mb=4000,
        runtime=10,
    conda:
        "../envs/charlora.yaml"
    script:
        "../scripts/compare_epochs.py"


rule loss_curves:
    input:
        [plan.epoch_file(RUN, e, "metrics.tsv") for e in range(1, TRAIN["epochs"] + 1)],
    output:
        report(f"{RUN_DIR}/validate/losses.png", caption="report/losses.rst", category="2. Validation"),
    params:
        epochs=list(range(1, TRAIN["epochs"] + 1)),
        run=RUN,
    log:
        f"logs/runs/{RUN}/validate/losses.log",
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/charlora.yaml"
    script:
        "../scripts/loss_curves.py"
