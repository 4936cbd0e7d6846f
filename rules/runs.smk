# The run's record and the comparison of runs: what the run was made from and why (run.yaml), and every
# run under results/runs/ side by side (runs.tsv, in the run's report).


include: "inputs/runs.smk"


rule run_record:
    input:
        unpack(run_record_inputs),
    output:
        f"{RUN_DIR}/run.yaml",
    params:
        config=settings_of("run_record"),  # the whole config but the scheduler's keys
        dataset=DATASET,
        base_model=config["base_model"],
    log:
        f"logs/runs/{RUN}/run_record.log",
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        "../envs/charlora.yaml"
    script:
        "../scripts/run_record.py"


rule compare_runs:
    input:
        record=f"{RUN_DIR}/run.yaml",
        metrics=[plan.epoch_file(RUN, e, "metrics.tsv") for e in range(1, TRAIN["epochs"] + 1)],
        selection=[] if LORA_EPOCH is not None else f"{VALIDATE_DIR}/selected.json",
    output:
        report(f"{RUN_DIR}/runs.tsv", caption="report/runs.rst", category="5. Runs", subcategory="All runs side by side"),
    params:
        runs=lambda wildcards, output: os.path.dirname(os.path.dirname(output[0])),  # the runs, this one's beside the others
    log:
        f"logs/runs/{RUN}/compare_runs.log",
    resources:
        mem_mb=500,
        runtime=5,
    conda:
        "../envs/charlora.yaml"
    script:
        "../scripts/compare_runs.py"
