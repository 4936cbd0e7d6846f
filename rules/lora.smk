# LoRA stage: a saved epoch's UNet - the base UNet -> the LoRA of that epoch (kohya format), checked by
# loading it through diffusers -> the run's LoRA, results/runs/<run>/<run>.safetensors.
# Any saved epoch's LoRA can be asked for: snakemake results/runs/<run>/lora/epoch-003.safetensors


include: "inputs/lora.smk"


rule extract_lora:
    input:
        weights=f"{TRAIN_DIR}/epoch-{{eee}}.safetensors",
        model=base_model,
        model_hash="results/models/base_model.sha256",
        consent=[str(CONSENT)] if CONSENT else [],
    output:
        f"{LORA_DIR}/epoch-{{eee}}.safetensors",
    params:
        settings=settings_of("extract_lora")["lora"],
        run=settings_of("extract_lora")["run"],
        token=settings_of("extract_lora")["subject"]["token"],
        rights_holder=settings_of("extract_lora")["subject"]["rights_holder"],
        resolution=settings_of("extract_lora")["train"]["resolution"],
    log:
        f"logs/runs/{RUN}/lora/epoch-{{eee}}.log",
    resources:
        mem_mb=8000,
        runtime=60,
        **gpu_job(LORA_GPUS),
    conda:
        "../envs/charlora.yaml"
    script:
        "../scripts/extract_lora.py"


rule verify_lora:
    input:
        lora=f"{LORA_DIR}/epoch-{{eee}}.safetensors",
        weights=f"{TRAIN_DIR}/epoch-{{eee}}.safetensors",
        model=base_model,
    output:
        record=f"{LORA_DIR}/epoch-{{eee}}.verify.json",
        plot=report(
            f"{LORA_DIR}/epoch-{{eee}}.verify.png",
            caption="report/lora_verify.rst",
            category="4. LoRA",
            subcategory="Verification per epoch",
        ),
    params:
        settings=settings_of("verify_lora")["lora"],
        token=settings_of("verify_lora")["subject"]["token"],
    log:
        f"logs/runs/{RUN}/lora/epoch-{{eee}}.verify.log",
    resources:
        mem_mb=24000,
        runtime=60,
        **gpu_job(LORA_GPUS),
    conda:
        "../envs/charlora.yaml"
    script:
        "../scripts/verify_lora.py"


rule run_lora:
    input:
        unpack(run_lora_inputs),
        selection=[] if LORA_EPOCH is not None else f"{VALIDATE_DIR}/selected.json",  # re-evaluated when it changes
    output:
        f"{RUN_DIR}/{RUN}.safetensors",
    log:
        f"logs/runs/{RUN}/lora.log",
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        "../envs/charlora.yaml"
    script:
        "../scripts/run_lora.py"
