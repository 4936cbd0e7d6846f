"""Rule caption: the final caption of one kept photo (the user's, or composed from its tags)."""

import json
from pathlib import Path

from charlora import atomic, logs
from charlora.captions import Vocabulary, make_caption

log = logs.setup(snakemake.log[0])
tags = json.loads(Path(snakemake.input.tags).read_text(encoding="utf-8"))["tags"]
audit = json.loads(Path(snakemake.input.audit).read_text(encoding="utf-8"))
user_path = snakemake.input.user_caption[0] if snakemake.input.user_caption else None
caption = make_caption(user_path, snakemake.params.token, tags, audit["framing"]["label"],
                       Vocabulary.load(snakemake.input.vocabulary), snakemake.params.generic, snakemake.params.strict)
log.info("%s (%s): %s", snakemake.wildcards.id, caption.source, caption.text)
for flag in caption.flags:
    log.warning("%s: %s", snakemake.wildcards.id, flag)
atomic.write_text(snakemake.output.text, caption.text + "\n")
atomic.write_json(snakemake.output.record, caption.record())
