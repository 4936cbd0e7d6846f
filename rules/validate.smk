# Validation stage: the evaluation prompts (from the intent, the validation photos' captions and the
# user's own), encoded once by the frozen text encoders -> every prompt x seed sampled from epoch 0
# (the base model), every `validate.every`-th saved epoch, the last and those in validate.epochs,
# then (a checkpoint, once the losses are known) the saved epochs within 8 of the selection's start
# (the one minimum of the validation loss) -> a grid per epoch, the comparison sheet (prompts x
# epochs) and the loss curves; then every sampled epoch measured (identity, prompt adherence,
# copying, sharpness, highlights, diversity) against the training photos and epoch 0, the scorecard
# (the guide's four criteria; the user's review files win) and the selected epoch, which
# `lora.epoch: auto` extracts. All in `snakemake --report`.
# Any saved epoch can be sampled on request: snakemake results/runs/<run>/validate/epoch-003.png


include: "inputs/validate.smk"


rule validation_prompts:
    input:
        split="results/dataset/split.tsv",
        captions=kept_captions,
        vocabulary=config["captions"]["vocabulary"],
    output:
        f"{VALIDATE_DIR}/prompts.tsv",
    params:
        token=settings_of("validation_prompts")["subject"]["token"],
        intent=settings_of("validation_prompts")["intent"],
        cap=settings_of("validation_prompts")["validate"]["prompts"],
        extra=settings_of("validation_prompts")["validate"]["extra_prompts"],
        probe=settings_of("validation_prompts")["validate"]["train_captions"],
    log:
        f"logs/runs/{RUN}/validate/prompts.log",
    resources:
        mem_mb=500,
        runtime=5,
    conda:
        "../envs/charlora.yaml"
    script:
        "../scripts/validation_prompts.py"


rule prompt_embeddings:
    input:
        model=base_model,
        prompts=f"{VALIDATE_DIR}/prompts.tsv",
    output:
        f"{VALIDATE_DIR}/prompts.safetensors",
    params:
        negative_prompt=settings_of("prompt_embeddings")["validate"]["negative_prompt"],
    log:
        f"logs/runs/{RUN}/validate/prompts.safetensors.log",
    resources:
        mem_mb=16000,  # SDXL's two text encoders in fp32 on the CPU
        runtime=30,
    conda:
        "../envs/charlora.yaml"
    script:
        "../scripts/prompt_embeddings.py"


rule sample_epoch:
    input:
        unpack(sample_inputs),
    output:
        images=directory(f"{VALIDATE_DIR}/epoch-{{eee}}"),
        grid=report(
            f"{VALIDATE_DIR}/epoch-{{eee}}.png",
            caption="report/epoch_grid.rst",
            category="2. Samples",
            subcategory="Grids per epoch",
        ),
    params:
        settings=settings_of("sample_epoch")["validate"],
        run=settings_of("sample_epoch")["run"],
    log:
        f"logs/runs/{RUN}/validate/epoch-{{eee}}.log",
    resources:
        mem_mb=VALIDATE["mem_mb"],
        runtime=VALIDATE["runtime"],
        **gpu_job(VALIDATE_GPUS),
    conda:
        "../envs/charlora.yaml"
    script:
        "../scripts/sample_epoch.py"


checkpoint refine_sampling:
    input:
        [plan.epoch_file(RUN, e, "metrics.tsv") for e in range(1, TRAIN["epochs"] + 1)],
    output:
        f"{VALIDATE_DIR}/refine.tsv",
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
        prompts=f"{VALIDATE_DIR}/prompts.tsv",
        samples=sample_folders,
        refined=f"{VALIDATE_DIR}/refine.tsv",  # re-evaluated when the refinement changes
    output:
        report(f"{VALIDATE_DIR}/compare.png", caption="report/compare.rst", category="1. Selection", subcategory="Comparison sheet"),
    params:
        epochs=all_sampled_epochs,
        seeds=settings_of("compare_epochs")["validate"]["seeds"],
        run=settings_of("compare_epochs")["run"],
        random_base=settings_of("compare_epochs")["base_model"] == "tiny",
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
        metrics=[plan.epoch_file(RUN, e, "metrics.tsv") for e in range(1, TRAIN["epochs"] + 1)],
        selection=f"{VALIDATE_DIR}/selected.json",
    output:
        report(f"{VALIDATE_DIR}/losses.png", caption="report/losses.rst", category="1. Selection", subcategory="Losses"),
    params:
        epochs=list(range(1, TRAIN["epochs"] + 1)),
        run=settings_of("loss_curves")["run"],
    log:
        f"logs/runs/{RUN}/validate/losses.log",
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/charlora.yaml"
    script:
        "../scripts/loss_curves.py"


rule tiny_clip:
    output:
        directory("results/models/tiny-clip"),
    params:
        seed=0,
    log:
        "logs/models/tiny_clip.log",
    resources:
        mem_mb=2000,
        runtime=5,
    conda:
        "../envs/charlora.yaml"
    script:
        "../scripts/tiny_clip.py"


rule reference_photos:
    input:
        images=kept_images,
        split="results/dataset/split.tsv",
    output:
        "results/dataset/reference.json",
    params:
        min_face=settings_of("reference_photos")["select"]["min_face"],
        sample_side=settings_of("reference_photos")["validate"]["resolution"],  # sharpness compared at the samples' size
    log:
        "logs/dataset/reference.log",
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../envs/charlora.yaml"
    script:
        "../scripts/reference_photos.py"


rule score_epoch:
    input:
        samples=f"{VALIDATE_DIR}/epoch-{{eee}}",
        prompts=f"{VALIDATE_DIR}/prompts.tsv",
        reference="results/dataset/reference.json",
        images=kept_images,
        clip=clip_model,
        tagger=TAGGER_FILES,
        vocabulary=[] if SELECT["clip"] or not TAGGER_FILES else config["captions"]["vocabulary"],  # tag recall's words
    output:
        f"{VALIDATE_DIR}/epoch-{{eee}}.scores.json",
    params:
        settings=settings_of("score_epoch")["select"],
        training_photos=f"{plan.DATASET_DIR}/images",
        seeds=settings_of("score_epoch")["validate"]["seeds"],
        captions=settings_of("score_epoch").get("captions", {}),  # the tagger, where no CLIP model scores adherence
        token=settings_of("score_epoch")["subject"]["token"],
        base_model=settings_of("score_epoch")["base_model"],  # the miniature's samples are read by the pixel probe
    log:
        f"logs/runs/{RUN}/validate/epoch-{{eee}}.scores.log",
    resources:
        mem_mb=SELECT["mem_mb"],
        runtime=SELECT["runtime"],
    conda:
        "../envs/charlora.yaml"
    script:
        "../scripts/score_epoch.py"


checkpoint select_epoch:
    input:
        scores=epoch_scores,
        refined=f"{VALIDATE_DIR}/refine.tsv",  # re-evaluated when the refinement changes
        metrics=[plan.epoch_file(RUN, e, "metrics.tsv") for e in range(1, TRAIN["epochs"] + 1)],
        reviews=list(REVIEWS.values()),
    output:
        scorecard=report(
            f"{VALIDATE_DIR}/scorecard.tsv", caption="report/scorecard.rst", category="1. Selection", subcategory="Scorecard"
        ),
        selection=report(
            f"{VALIDATE_DIR}/selected.json",
            caption="report/selected.rst",
            category="1. Selection",
            subcategory="Selected epoch",
        ),
    params:
        epochs=list(range(1, TRAIN["epochs"] + 1)),
        saved=SAVED_EPOCHS,
        reviews={e: str(p) for e, p in REVIEWS.items()},
        copy_bits=settings_of("select_epoch")["select"]["copy_bits"],
    log:
        f"logs/runs/{RUN}/validate/select.log",
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        "../envs/charlora.yaml"
    script:
        "../scripts/select_epoch.py"
