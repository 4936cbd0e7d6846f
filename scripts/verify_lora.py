"""Rule verify_lora: how closely base + LoRA (loaded by diffusers) reproduces the epoch's UNet."""

from pathlib import Path

from charlora import atomic, logs, lora, lora_verify

log = logs.setup(snakemake.log[0])
inp, out, params = snakemake.input, snakemake.output, snakemake.params
record = lora_verify.verify(
    Path(inp.model), Path(inp.weights), Path(inp.lora), lora.Settings.from_config(params.settings), params.token
)
atomic.write_json(out.record, record)
lora_verify.plot(record, Path(out.plot))
