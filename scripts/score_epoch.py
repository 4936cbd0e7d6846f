"""Rule score_epoch: every sample of one epoch measured against the training photos (charlora/sample_metrics.py)."""

from pathlib import Path

from tqdm import tqdm

from charlora import logs, sample, sample_metrics, sdxl

log = logs.setup(snakemake.log[0])
inp, params = snakemake.input, snakemake.params
settings = params.settings
prompts = sample.read_prompts(Path(inp.prompts))
seeds = list(range(params.seeds))
reference = sample_metrics.read_reference(Path(inp.reference))
with tqdm(total=len(prompts) * len(seeds), desc=f"scoring epoch {snakemake.wildcards.eee}", unit="sample") as bar:
    scores = sample_metrics.score_epoch(
        int(snakemake.wildcards.eee),
        Path(inp.samples),
        prompts,
        seeds,
        reference,
        Path(params.training_photos),
        settings["face_threshold"],
        inp.clip[0] if inp.clip else None,
        params.captions,
        params.token,
        str(sdxl.pick_device(settings["device"])),
        progress=bar,
        base_model=params.base_model,
    )
sample_metrics.write_scores(Path(snakemake.output[0]), scores)
log.info(
    "adherence: %s; identity: %s; diversity across seeds %s, across prompts %s",
    scores.adherence_method,
    scores.identity_method,
    scores.diversity_seeds,
    scores.diversity_prompts,
)
