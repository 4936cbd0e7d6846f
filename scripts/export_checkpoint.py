"""Rule export_checkpoint: base text encoders and VAE + a tuned UNet, one single-file checkpoint (ComfyUI)."""

from pathlib import Path

from safetensors.torch import load_file

from charlora import logs, sdxl

log = logs.setup(snakemake.log[0])
base = Path(snakemake.input.model)
sdxl.export_checkpoint(base, load_file(snakemake.input.weights), snakemake.output[0])
log.info("wrote %s: %s + the UNet of %s", snakemake.output[0], base, snakemake.input.weights)
