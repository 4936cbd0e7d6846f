"""Rule audit: measure one photo and write its audit record."""

from charlora import atomic, command_line, logs
from charlora.audit import audit_image

args = command_line.parse_args(__doc__, ["photo", "record"], settings=["ingest"])
log = logs.setup(args.log)
record = audit_image(args.photo, args.id, args.ingest)
if record["status"] == "ok":
    log.info("%s: %dx%d, %s", record["file"], record["width"], record["height"], record["framing"]["label"])
    for flag in record["flags"]:
        log.warning("%s: %s", record["file"], flag)
else:
    log.warning("%s rejected: %s", record["file"], record["reason"])
atomic.write_json(args.record, record)
