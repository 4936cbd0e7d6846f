# Masks stage: one subject mask per kept photo (the user's own when there is one).


include: "inputs/masks.smk"


rule mask:
    input:
        image="results/dataset/images/{id}.png",
        user_mask=user_mask,
        model=rembg_model,
        script=rule_script("mask.py"),
    output:
        mask="results/dataset/masks/{id}.png",
        record="results/dataset/masks/{id}.json",
    params:
        masks=as_json(settings_of("mask")["masks"]),
        strict=as_json(settings_of("mask")["strict"]),
    log:
        "logs/masks/{id}.log",
    resources:
        mem_mb=4000,
        runtime=10,
        **gpu_job(MASK_GPUS),
    conda:
        "../envs/charlora.yaml"
    shell:
        python_script(
            "--id={wildcards.id:q} --masks={params.masks:q} --strict={params.strict:q} --log={log:q}"
            " --user-mask {input.user_mask:q} -- {input.image:q} {output.mask:q} {output.record:q}",
        )
