"""Rule extract_lora: the LoRA of one saved epoch, in kohya's format (see charlora/lora.py)."""

import re
from pathlib import Path

from charlora import logs, lora

log = logs.setup(snakemake.log[0])
inp, params = snakemake.input, snakemake.params
settings = lora.Settings.from_config(params.settings)
epoch = int(re.search(r"epoch-(\d+)", Path(inp.weights).name).group(1))
base_hash = Path(inp.model_hash).read_text().strip()
metadata = lora.kohya_metadata(
    settings=settings,
    run=params.run,
    epoch=epoch,
    token=params.token,
    resolution=params.resolution,
    base_name=Path(inp.model).name,
    base_hash=base_hash,
    rights_holder=params.rights_holder,
    consent=Path(inp.consent[0]) if inp.consent else None,
)
result = lora.extract(Path(inp.model), Path(inp.weights), settings, Path(snakemake.output[0]), metadata, base_hash)
log.info(
    "wrote %s: %d layers (rank %d, conv rank %d, %s)%s%s",
    snakemake.output[0],
    result.layers,
    settings.rank,
    settings.conv_rank,
    settings.save_precision,
    f"; {result.narrower} layers are narrower than the rank and keep their full width" if result.narrower else "",
    f"; {len(result.skipped)} layers changed by at most lora.min_diff = {settings.min_diff:g} and are left out"
    if result.skipped
    else "",
)
