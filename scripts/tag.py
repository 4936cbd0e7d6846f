"""Rule tag: auto-tags of one kept photo, with scores."""

from charlora import atomic, command_line, logs
from charlora.tags import tag_image

args = command_line.parse_args(__doc__, ["image", "record"], settings=["captions"])
log = logs.setup(args.log)
record = tag_image(args.image, args.captions)
log.info("%s: %d tags (%s)", args.id, len(record["tags"]), record["backend"])
atomic.write_json(args.record, record)
