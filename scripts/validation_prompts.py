"""Rule validation_prompts: the fixed prompts every sampled epoch is judged by (charlora/validate_prompts.py)."""

from pathlib import Path

from charlora import logs, sample, split, validate_prompts
from charlora.captions import Vocabulary
from charlora.intent import Intent

log = logs.setup(snakemake.log[0])
inp, params = snakemake.input, snakemake.params
vocabulary = Vocabulary.load(inp.vocabulary)
sides = split.read_table(inp.split)
captions = {Path(path).stem: Path(path).read_text(encoding="utf-8") for path in inp.captions}
val_captions = {i: text for i, text in captions.items() if sides.get(i) == split.VAL}
train_captions = {i: text for i, text in captions.items() if sides.get(i) == split.TRAIN}
prompts, missed = validate_prompts.compose(
    params.token,
    Intent.from_config(params.intent, vocabulary),
    vocabulary,
    params.cap,
    val_captions,
    list(params.extra),
    train_captions,
    params.probe,
)
sample.write_prompts(Path(snakemake.output[0]), prompts)
for p in prompts:
    log.info("%s (%s): %s", p.name, p.origin, p.text)
if missed:
    log.warning(
        "validate.prompts (%d) leaves these intent values unsampled: %s; raise it to sample them",
        params.cap,
        ", ".join(missed),
    )
