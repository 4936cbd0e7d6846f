# Training stage: base model -> a chain of training jobs, one per block of `train.epochs_per_job`
# epochs, each continuing from the previous block's state -> one UNet file per saved epoch.
# Each block is its own rule (its epochs are its declared outputs), so raising `train.epochs` adds
# blocks and leaves the finished ones alone, and a failed block keeps every earlier epoch.


include: "inputs/train.smk"


rule tiny_model:
    output:
        "results/models/tiny.safetensors",
    params:
        seed=0,
    log:
        "logs/models/tiny_model.log",
    resources:
        mem_mb=4000,
        runtime=10,
    conda:
        "../envs/charlora.yaml"
    script:
        "../scripts/tiny_model.py"


rule miniature_model:
    input:
        MINIATURE_WEIGHTS,
    output:
        "results/models/miniature.safetensors",
    log:
        "logs/models/miniature_model.log",
    resources:
        mem_mb=4000,
        runtime=10,
    conda:
        "../envs/charlora.yaml"
    script:
        "../scripts/miniature_model.py"


rule model_hash:
    input:
        model=base_model,
    output:
        "results/models/base_model.sha256",
    log:
        "logs/models/model_hash.log",
    resources:
        mem_mb=1000,
        runtime=30,
    conda:
        "../envs/charlora.yaml"
    script:
        "../scripts/model_hash.py"


for first, last in TRAIN_BLOCKS:

    rule:
        name:
            f"train_epochs_{first:03d}_{last:03d}"
        input:
            unpack(train_inputs(first)),
        output:
            weights=[plan.epoch_file(RUN, e, "safetensors") for e in saved_epochs(first, last)],
            metrics=[plan.epoch_file(RUN, e, "metrics.tsv") for e in range(first, last + 1)],
            state=directory(plan.epoch_file(RUN, last, "state")),
        params:
            settings=TRAIN_SETTINGS,
            first=first,
            last=last,
            train_dir=lambda wildcards, output: os.path.dirname(output.state),  # the linter: a folder of outputs from them
            tensorboard=plan.tensorboard_dir(RUN),
            cache=plan.CACHE,
        log:
            f"logs/runs/{RUN}/train/epochs-{first:03d}-{last:03d}.log",
        threads: TRAIN_PROCESSES
        resources:
            mem_mb=config["train"]["mem_mb"],
            runtime=config["train"]["runtime"],
            **gpu_job(TRAIN_GPUS),
        conda:
            "../envs/charlora.yaml"
        script:
            "../scripts/train.py"


rule export_checkpoint:
    input:
        weights=f"{TRAIN_DIR}/epoch-{{eee}}.safetensors",
        model=base_model,
    output:
        f"{EXPORT_DIR}/epoch-{{eee}}.safetensors",
    log:
        f"logs/runs/{RUN}/export/epoch-{{eee}}.log",
    resources:
        mem_mb=32000,
        runtime=30,
    conda:
        "../envs/charlora.yaml"
    script:
        "../scripts/export_checkpoint.py"
