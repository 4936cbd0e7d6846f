"""Rule mask: the subject mask of one kept photo and its record (source, coverage, flags)."""

from PIL import Image

from charlora import atomic, command_line, logs, masks

args = command_line.parse_args(
    __doc__, ["image", "mask", "record"], settings=["masks", "strict"], optional_files=["user-mask"]
)
log = logs.setup(args.log)
mask, record = masks.make_mask(args.image, args.user_mask, args.masks, args.strict)
log.info("%s: %s mask, %.0f%% subject", args.id, record["source"], 100 * record["coverage"])
for flag in record["flags"]:
    log.warning("%s: %s", args.id, flag)
atomic.save_image(Image.fromarray(mask, "L"), args.mask)
atomic.write_json(args.record, record)
