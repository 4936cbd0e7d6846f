"""Rule ingest: decode one kept photo to 8-bit sRGB RGB (EXIF rotation applied) and save it as PNG."""

from charlora import atomic, command_line, logs
from charlora.images import decode_rgb

args = command_line.parse_args(__doc__, ["photo", "image"], settings=["ingest"])
log = logs.setup(args.log)
decoded = decode_rgb(args.photo, args.ingest["max_megapixels"], args.ingest["alpha_background"])
atomic.save_image(decoded.image, args.image, compress_level=4)
log.info("%s (%s %s) -> %s", args.photo, decoded.source_format, decoded.source_mode, args.image)
