"""Rule caption: the final caption of one kept photo (the user's, or composed from its tags)."""

import json
from pathlib import Path

from charlora import atomic, command_line, logs
from charlora.captions import Vocabulary, make_caption

args = command_line.parse_args(
    __doc__,
    ["tags", "audit", "text", "record"],
    settings=["token", "generic", "strict"],
    optional_files=["user-caption"],
    named_files=["vocabulary"],
)
log = logs.setup(args.log)
tags = json.loads(Path(args.tags).read_text(encoding="utf-8"))["tags"]
audit = json.loads(Path(args.audit).read_text(encoding="utf-8"))
caption = make_caption(
    args.user_caption,
    args.token,
    tags,
    audit["framing"]["label"],
    Vocabulary.load(args.vocabulary),
    args.generic,
    args.strict,
)
log.info("%s (%s): %s", args.id, caption.source, caption.text)
for flag in caption.flags:
    log.warning("%s: %s", args.id, flag)
atomic.write_text(args.text, caption.text + "\n")
atomic.write_json(args.record, caption.record())
