"""Rule model_hash: SHA-256 of the base model's weights, the key of the training encoding cache."""

import hashlib
from pathlib import Path

from charlora import atomic, logs
from charlora.hashing import file_sha256

log = logs.setup(snakemake.log[0])
base = Path(snakemake.input.model)
if base.is_dir():  # a diffusers folder: the hash of its weight files' hashes, in path order
    files = sorted(base.rglob("*.safetensors"))
    digest = hashlib.sha256("".join(f"{f.relative_to(base)}:{file_sha256(f)}\n" for f in files).encode()).hexdigest()
else:
    digest = file_sha256(base)
log.info("%s: sha256 %s", base, digest)
atomic.write_text(snakemake.output[0], digest + "\n")
