"""Rule onetrainer_export: the curated dataset in OneTrainer's layout (charlora/onetrainer.py)."""

from charlora import logs, onetrainer, split
from charlora.dataset import files_by_id

log = logs.setup(snakemake.log[0])
inp, params = snakemake.input, snakemake.params
files = files_by_id(images=inp.images, captions=inp.captions, masks=inp.masks)
for image_id in files:
    if onetrainer.file_stem(image_id) != image_id:
        log.warning(
            "%s is exported as %s.png: OneTrainer skips images whose name ends with -masklabel or -condlabel",
            image_id,
            onetrainer.file_stem(image_id),
        )
counts = onetrainer.export(snakemake.output[0], files, split.read_table(inp.split), params.token, params.seed)
log.info(
    "%s: %d train and %d validation photos with captions%s, and concepts.json for OneTrainer",
    snakemake.output[0],
    counts["train"],
    counts["val"],
    " and masks" if inp.masks else "",
)
