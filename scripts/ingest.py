"""Rule ingest: decode one kept photo to 8-bit sRGB RGB (EXIF rotation applied) and save it as PNG."""

from charlora import atomic, logs
from charlora.images import decode_rgb

log = logs.setup(snakemake.log[0])
settings = snakemake.params.ingest
decoded = decode_rgb(snakemake.input[0], settings["max_megapixels"], settings["alpha_background"])
atomic.save_image(decoded.image, snakemake.output[0], compress_level=4)
log.info("%s (%s %s) -> %s", snakemake.input[0], decoded.source_format, decoded.source_mode, snakemake.output[0])
