# Dataset stage: demo photos (when dataset: demo) -> audit per photo -> dedup checkpoint ->
# normalised image per kept photo, and the files of photos no longer kept removed -> dataset report
# (which also shows the masks of rules/masks.smk).


rule demo_dataset:
    output:
        images=expand(f"{DEMO_DIR}/images/{{name}}", name=demo.IMAGE_FILES),
        captions=expand(f"{DEMO_DIR}/captions/{{name}}", name=demo.CAPTION_FILES),
        masks=expand(f"{DEMO_DIR}/masks/{{name}}", name=demo.MASK_FILES),
    params:
        folder=lambda wildcards, output: os.path.dirname(os.path.dirname(output.images[0])),
    log:
        "logs/dataset/demo_dataset.log",
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/charlora.yaml"
    script:
        "../scripts/demo_dataset.py"


rule audit:
    input:
        photo=source_image,
        script=rule_script("audit.py"),
    output:
        "results/dataset/audit/{id}.json",
    params:
        ingest=as_json(settings_of("audit")["ingest"]),
    log:
        "logs/dataset/audit/{id}.log",
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/charlora.yaml"
    shell:
        python_script("--id={wildcards.id:q} --ingest={params.ingest:q} --log={log:q} -- {input.photo:q} {output:q}")


checkpoint dedup:
    input:
        audits=expand("results/dataset/audit/{id}.json", id=IDS),
        images=all_source_images,
    output:
        table="results/dataset/dedup.tsv",
    params:
        dedup=settings_of("dedup")["dedup"],
        ingest=settings_of("dedup")["ingest"],
        unlisted=LISTING.rejected,
        strays=STRAYS,
        strict=settings_of("dedup")["strict"],
    log:
        "logs/dataset/dedup.log",
    threads: 4  # the geometric check of candidate pairs runs in threads; capped at --cores
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../envs/charlora.yaml"
    script:
        "../scripts/dedup.py"


rule ingest:
    input:
        photo=source_image,
        script=rule_script("ingest.py"),
    output:
        "results/dataset/images/{id}.png",
    params:
        ingest=as_json(settings_of("ingest")["ingest"]),
    log:
        "logs/dataset/ingest/{id}.log",
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/charlora.yaml"
    shell:
        python_script("--ingest={params.ingest:q} --log={log:q} -- {input.photo:q} {output:q}")


rule split:
    input:
        table="results/dataset/dedup.tsv",
    output:
        "results/dataset/split.tsv",
    params:
        val_fraction=settings_of("split")["ingest"]["val_fraction"],
    log:
        "logs/dataset/split.log",
    resources:
        mem_mb=500,
        runtime=5,
    conda:
        "../envs/charlora.yaml"
    script:
        "../scripts/split.py"


# Per-photo files of photos that are not (or no longer) in the dataset, as kept: removed, and listed.
rule prune_dataset:
    input:
        table="results/dataset/dedup.tsv",
    output:
        table="results/dataset/pruned.tsv",
    params:
        dataset=lambda wildcards, output: os.path.dirname(output.table),  # the curated dataset's folder
    log:
        "logs/dataset/prune.log",
    resources:
        mem_mb=500,
        runtime=5,
    conda:
        "../envs/charlora.yaml"
    script:
        "../scripts/prune_dataset.py"


rule dataset_report:
    input:
        table="results/dataset/dedup.tsv",
        pruned="results/dataset/pruned.tsv",  # so that the report is written after the stale files are gone
        audits=expand("results/dataset/audit/{id}.json", id=IDS),
        images=kept_images,
        masks=kept_masks,
        captions=kept_caption_records,
        lint="results/dataset/lint.tsv",
        vocabulary=config["captions"]["vocabulary"],
        duplicates=duplicate_sources,
    output:
        html=report(
            "results/dataset/report.html",
            caption="report/dataset.rst",
            category="3. Dataset",
            subcategory="Dataset report",
        ),
        framing=report(
            "results/dataset/framing.png",
            caption="report/framing.rst",
            category="3. Dataset",
            subcategory="Framing",
        ),
    params:
        targets=settings_of("dataset_report")["ingest"]["framing"]["targets"],
        intent=settings_of("dataset_report")["intent"],
        dataset=DATASET,
        strays=STRAYS,
        max_years=settings_of("dataset_report")["ingest"]["max_years_from_median"],
        max_skin_shift=settings_of("dataset_report")["ingest"]["max_skin_shift"],
    log:
        "logs/dataset/report.log",
    threads: 4  # thumbnails; the report runs alone at the end of the stage
    resources:
        mem_mb=4000,
        runtime=20,
    conda:
        "../envs/charlora.yaml"
    script:
        "../scripts/dataset_report.py"


# On request (`snakemake onetrainer`): the curated dataset as OneTrainer reads it.
rule onetrainer_export:
    input:
        images=kept_images,
        captions=kept_captions,
        masks=kept_mask_images,
        split="results/dataset/split.tsv",
    output:
        directory("results/export/onetrainer"),
    params:
        token=settings_of("onetrainer_export")["subject"]["token"],
        seed=settings_of("onetrainer_export")["train"]["seed"],
    log:
        "logs/dataset/onetrainer_export.log",
    resources:
        mem_mb=500,
        runtime=10,
    conda:
        "../envs/charlora.yaml"
    script:
        "../scripts/onetrainer_export.py"
