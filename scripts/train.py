"""Rule train_epochs_<first>_<last>: one block of the chained fine-tune (see charlora/train.py)."""

from pathlib import Path

from charlora import logs, plan, split, triggers
from charlora.train import Sample, Settings, train_block

log = logs.setup(snakemake.log[0])
inp, params = snakemake.input, snakemake.params
# the device and the run's chain: read, never a rerun trigger (charlora/triggers.py, READ_WITHOUT_RERUN)
chain = triggers.read_without_rerun(snakemake.config, "train")["train"]
settings = Settings.from_config(params.settings, device=chain["device"])
masks = {Path(p).stem: Path(p) for p in inp.masks}
samples = [
    Sample(
        id=Path(image).stem,
        image=Path(image),
        caption=Path(caption).read_text(encoding="utf-8").strip(),
        mask=masks.get(Path(image).stem),
    )
    for image, caption in zip(inp.images, inp.captions)
]
if settings.masked_training:
    for s in samples:
        if s.mask is None:
            log.warning("%s has no mask: trained unmasked", s.id)
sides = split.read_table(inp.split)
val_ids = [s.id for s in samples if sides.get(s.id) == split.VAL]
later_blocks = [
    (first, last) for first, last in plan.blocks(chain["epochs"], chain["epochs_per_job"]) if first >= params.first
]  # this job's and the ones after it: what the disk must still hold
still_to_write = (
    sum(len(plan.saved_epochs(first, last, settings.save_every)) for first, last in later_blocks),
    len(later_blocks),
)
train_block(
    base_model=Path(inp.model),
    model_hash=Path(inp.model_hash).read_text().strip(),
    samples=samples,
    val_ids=val_ids,
    settings=settings,
    first=params.first,
    last=params.last,
    out_dir=Path(params.train_dir),
    previous_state=Path(inp.state) if "state" in inp.keys() else None,
    cache_dir=Path(params.cache),
    tensorboard_dir=Path(params.tensorboard),
    still_to_write=still_to_write,
)
