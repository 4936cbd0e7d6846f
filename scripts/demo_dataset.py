"""Rule demo_dataset: draw the embedded demo photo set into results/demo/."""

from pathlib import Path

from tqdm import tqdm

from charlora import demo, demo_render, logs

log = logs.setup(snakemake.log[0])
out_dir = Path(snakemake.params.folder)
demo_render.build_demo(out_dir, progress=tqdm)
log.info("wrote %d demo photos and %d captions to %s", len(demo.IMAGE_FILES), len(demo.CAPTION_FILES), out_dir)
