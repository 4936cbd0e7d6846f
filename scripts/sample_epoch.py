"""Rule sample_epoch: every evaluation prompt x seed from one epoch (0: the base model), and its grid."""

from pathlib import Path

from charlora import logs, sample, validate_plots

log = logs.setup(snakemake.log[0])
inp, out, params = snakemake.input, snakemake.output, snakemake.params
epoch = int(snakemake.wildcards.eee)
settings = sample.Settings.from_config(params.settings)
prompts = sample.read_prompts(Path(inp.prompts))
model = f"{params.run}-epoch-{epoch:03d}" if epoch else f"{params.run}-base"
lora_name = f"{params.run}/epoch-{epoch:03d}.safetensors" if epoch else None  # ComfyUI/models/loras/<run>/
sample.sample_epoch(
    Path(inp.model),
    Path(inp.weights) if epoch else None,
    prompts,
    Path(inp.embeddings),
    settings,
    Path(out.images),
    model,
    lora_name,
)
title = f"{params.run}: " + (f"epoch {epoch}" if epoch else "the base model (epoch 0)")
validate_plots.epoch_grid(Path(out.images), prompts, settings.seed_values, title, Path(out.grid))
log.info("wrote %d samples to %s and the grid %s", len(prompts) * settings.seeds, out.images, out.grid)
