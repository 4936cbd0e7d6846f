"""Rule run_lora: the run's LoRA, results/runs/<run>/<run>.safetensors: a copy of the chosen epoch's."""

import json
import shutil
from pathlib import Path

from charlora import atomic, logs

log = logs.setup(snakemake.log[0])
source, record = Path(snakemake.input.lora), json.loads(Path(snakemake.input.record).read_text())
with atomic.atomic_path(snakemake.output[0]) as tmp:
    shutil.copyfile(source, tmp)
log.info(
    "the run's LoRA: %s (from %s; it reproduces %.1f %% of the fine-tune's effect on the UNet output)",
    Path(snakemake.output[0]).resolve(),
    source,
    100 * record["reproduced"],
)
