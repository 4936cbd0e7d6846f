# Captions stage: tags per kept photo -> structured caption per kept photo -> dataset-wide lint.


include: "inputs/captions.smk"


rule tag:
    input:
        image="results/dataset/images/{id}.png",
        model=TAGGER_FILES,
        script=rule_script("tag.py"),
    output:
        "results/dataset/tags/{id}.json",
    params:
        captions=as_json(settings_of("tag")["captions"]),
    log:
        "logs/captions/tag/{id}.log",
    resources:
        mem_mb=4000,
        runtime=10,
        **gpu_job(TAG_GPUS),
    conda:
        "../envs/charlora.yaml"
    shell:
        python_script("--id={wildcards.id:q} --captions={params.captions:q} --log={log:q} -- {input.image:q} {output:q}")


rule caption:
    input:
        tags="results/dataset/tags/{id}.json",
        audit="results/dataset/audit/{id}.json",
        vocabulary=config["captions"]["vocabulary"],
        user_caption=user_caption,
        script=rule_script("caption.py"),
    output:
        text="results/dataset/captions/{id}.txt",
        record="results/dataset/captions/{id}.json",
    params:
        token=as_json(settings_of("caption")["subject"]["token"]),
        generic=as_json(settings_of("caption")["captions"]["generic_tags"]),
        strict=as_json(settings_of("caption")["strict"]),
    log:
        "logs/captions/caption/{id}.log",
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        "../envs/charlora.yaml"
    shell:
        python_script(
            "--id={wildcards.id:q} --token={params.token:q} --generic={params.generic:q} --strict={params.strict:q}"
            " --log={log:q} --user-caption {input.user_caption:q} --vocabulary={input.vocabulary:q}"
            " -- {input.tags:q} {input.audit:q} {output.text:q} {output.record:q}",
        )


rule caption_lint:
    input:
        records=kept_caption_records,
        vocabulary=config["captions"]["vocabulary"],
    output:
        "results/dataset/lint.tsv",
    params:
        token=settings_of("caption_lint")["subject"]["token"],
        generic=settings_of("caption_lint")["captions"]["generic_tags"],
        max_tokens=settings_of("caption_lint")["captions"]["max_tokens"],
        strict=settings_of("caption_lint")["strict"],
    log:
        "logs/captions/lint.log",
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/charlora.yaml"
    script:
        "../scripts/caption_lint.py"
