# Shared by the stages: config validation and each stage's settings (charlora/triggers.py),
# dataset discovery (the <id>s) and the kept files (input functions that read the dedup checkpoint), the
# model files, the run's plan, GPU placement and the final target list. Each stage's own globals and
# input functions are in rules/inputs/<stage>.smk, included by its rules/<stage>.smk (Snakemake's linter
# wants functions and rules in separate files). Parse-time work stays cheap (a listdir),
# because cluster jobs parse this file again on their node.

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "scripts"))

from charlora import demo, dedup, model_files, plan, refinement, run_cost, scorecard, selection, summary, triggers
from charlora.config import ConfigError, check_consent, validate_config
from charlora.dataset import SUPPORTED_SUFFIXES, DatasetListing, list_dataset_images, stray_files

# The per-photo rules (audit, ingest, mask, tag, caption: five jobs a photo) run their script as a
# plain command, not through `script:`: Snakemake's script preamble imports Snakemake into every job,
# 0.13 core-seconds each, more than most of these jobs' own work. The script is an input of its rule
# (`rule_script`: editing it reruns its jobs, as with `script:`). The job's Python is Snakemake's own,
# or the `python` of the job's environment when Snakemake deploys one (--sdm conda): an environment
# variable, so that the command, which Snakemake compares to tell whether a job's code changed, is the
# same with another Python.
os.environ.update(CHARLORA_PYTHON="python" if workflow.deployment_settings.deployment_method else sys.executable)


def rule_script(name):
    """scripts/`name`, relative to the working directory (so a moved project reruns nothing)."""
    return os.path.relpath(Path(workflow.basedir) / "scripts" / name)


def python_script(arguments):
    """The shell command running the rule's script (its input `script`) with `arguments`: Snakemake
    placeholders, each quoted with :q, settings as JSON (`as_json`)."""
    return f'"$CHARLORA_PYTHON" {{input.script:q}} {arguments}'


def as_json(value):
    """A setting as the per-photo scripts' command lines take it."""
    return json.dumps(value, ensure_ascii=False)


# The config files in the order Snakemake merges them (the Snakefile's, then each --configfile), and the
# --config values, which win: errors name where a bad key was set.
CLI_CONFIGFILES = [Path(f) for f in workflow.config_settings.configfiles]
validate_config(config, Path(workflow.basedir) / "config" / "schema.yaml",
                [Path(f) for f in workflow.configfiles if Path(f).absolute() not in CLI_CONFIGFILES] + CLI_CONFIGFILES,
                dict(workflow.config_settings.config))
# The caption vocabulary: the folder's own config/caption_slots.yaml when it has one (a character's
# folder may keep an edited copy), else the checkout's.
VOCABULARY = Path(config["captions"]["vocabulary"])
if not VOCABULARY.exists() and (Path(workflow.basedir) / VOCABULARY).exists():
    config["captions"]["vocabulary"] = os.path.relpath(Path(workflow.basedir) / VOCABULARY)
CONSENT = check_consent(config["subject"])  # a real person: no job runs without the written consent record


def settings_of(stage):
    """The settings a stage's jobs read and rerun for, and nothing else: its rule's params (the table in
    charlora/triggers.py). Scheduler keys never rerun a job; a key of another stage never reruns this one."""
    return triggers.settings(config, stage)


# The local model files the config names (charlora/model_files.py): inputs of the jobs that use them,
# so a new model reruns those jobs. They are checked at the start of a run (check_models, from the
# Snakefile's onstart), before any job; `snakemake models` lists them.
TAGGER = config["captions"]["tagger"]
TAGGER_DIR = config["captions"].get(TAGGER, {}).get("folder")
TAGGER_FILES = [f"{TAGGER_DIR}/{name}" for name in model_files.TAGGER_FILES.get(TAGGER, {})] if TAGGER_DIR else []


wildcard_constraints:
    id="[^/]+",
    eee="[0-9]{3}",


# The base model, the run and its chain of blocks of epochs: training, validation and the LoRA read them.
MODEL_FILES = {m.key: m for m in model_files.model_files(config)}  # the files the user supplies
# base_model: miniature's pretrained UNet and VAE, committed beside its config (docs/miniature.md)
MINIATURE_WEIGHTS = os.path.relpath(Path(workflow.basedir) / "config" / "models" / "miniature" / "miniature.safetensors")
# What the log says the demo's base is (onstart), for each built-in base.
DEMO_BASES = {
    "miniature": "the miniature base, pretrained on drawn people who are not mira: the fine-tune learns her "
    "magenta hair, which the base never drew (docs/miniature.md)",
    "tiny": "its samples are noise by design (a random tiny model)",
}


def base_model(wildcards=None):
    """The base model (input function; check_models checks it at the start of a run that goes beyond the
    dataset stage, so that `snakemake dataset`, a first look at one's photos, needs no checkpoint)."""
    if config["base_model"] in model_files.BUILT_IN_BASES:
        return f"results/models/{config['base_model']}.safetensors"
    return str(model_files.check(MODEL_FILES["base_model"])[0])


RUN = config["run"]
RUN_DIR = plan.run_dir(RUN)  # the results layout is the plan's (charlora/plan.py)
TRAIN_DIR, VALIDATE_DIR, LORA_DIR, EXPORT_DIR = (plan.train_dir(RUN), plan.validate_dir(RUN), plan.lora_dir(RUN),
                                                 plan.export_dir(RUN))
TRAIN = config["train"]
TRAIN_BLOCKS = plan.blocks(TRAIN["epochs"], TRAIN["epochs_per_job"])
USES_MASKS = config["masks"]["method"] != "none"
SAVED_EPOCHS = [e for first, last in TRAIN_BLOCKS for e in plan.saved_epochs(first, last, TRAIN["save_every"])]


DEMO_DIR = plan.DEMO_DIR
IS_DEMO = config["dataset"] == "demo"
if TAGGER == "demo" and not IS_DEMO:
    raise ConfigError("captions.tagger: demo knows only the embedded demo's photos; for your own photos use "
                      "wd14, vlm or none")
DATASET = DEMO_DIR if IS_DEMO else config["dataset"].rstrip("/")

if IS_DEMO:
    # The demo's files are outputs of rule demo_dataset, so their names come from the generator.
    LISTING = DatasetListing(images={Path(name).stem: name for name in demo.IMAGE_FILES})
    USER_MASKS = {Path(name).stem for name in demo.MASK_FILES}
    USER_CAPTIONS = {Path(name).stem for name in demo.CAPTION_FILES}
else:
    LISTING = list_dataset_images(Path(DATASET) / "images")
    USER_MASKS = {p.stem for p in Path(DATASET, "masks").glob("*.png")}
    USER_CAPTIONS = {p.stem for p in Path(DATASET, "captions").glob("*.txt")}
# Where the masks' and the taggers' models run, and the user's masks (photos rembg need not batch), for
# the per-photo jobs through the environment like CHARLORA_PYTHON: changing them reruns nothing.
os.environ.update(
    CHARLORA_MASKS_DEVICE=config["masks"]["device"],
    CHARLORA_CAPTIONS_DEVICE=config["captions"]["device"],
    CHARLORA_USER_MASKS=str(Path(DATASET, "masks")),
)
IDS = sorted(LISTING.images)
if not IDS:
    raise ValueError(f"no photos found in {DATASET}/images (supported: {' '.join(SUPPORTED_SUFFIXES)})")
# Captions and masks that match no photo: reported (dedup's log, the report), and fatal with strict: true.
STRAYS = {} if IS_DEMO else stray_files(DATASET, set(IDS))


def source_image(wildcards):
    """The user's file for an <id> (any supported extension)."""
    try:
        return f"{DATASET}/images/{LISTING.images[wildcards.id]}"
    except KeyError:
        raise ValueError(f"no photo with id {wildcards.id!r} in {DATASET}/images") from None


def all_source_images(wildcards=None):
    return [f"{DATASET}/images/{LISTING.images[i]}" for i in IDS]


def dedup_rows(wildcards):
    """The rows of dedup.tsv; evaluating this makes Snakemake run the dedup checkpoint first."""
    return dedup.read_table(checkpoints.dedup.get().output.table)


def kept_ids(wildcards):
    return [row.id for row in dedup_rows(wildcards) if row.status == dedup.KEPT]


def kept_images(wildcards):
    return expand("results/dataset/images/{id}.png", id=kept_ids(wildcards))


def kept_masks(wildcards):
    return expand("results/dataset/masks/{id}.{ext}", id=kept_ids(wildcards), ext=["png", "json"])


def kept_captions(wildcards):
    return expand("results/dataset/captions/{id}.txt", id=kept_ids(wildcards))


def kept_mask_images(wildcards):
    """The masks the training reads (none with masks.method: none)."""
    return expand("results/dataset/masks/{id}.png", id=kept_ids(wildcards)) if USES_MASKS else []


def kept_caption_records(wildcards):
    return expand("results/dataset/captions/{id}.json", id=kept_ids(wildcards))


def duplicate_sources(wildcards):
    """Originals of the photos set aside as duplicates (the report shows them beside the kept one)."""
    ids = [row.id for row in dedup_rows(wildcards) if row.status == dedup.DUPLICATE]
    return [f"{DATASET}/images/{LISTING.images[i]}" for i in ids]


def gpu_job(gpus):
    """The resources of a job on `gpus` GPUs beyond memory and time: the count, and config `gpu_jobs`
    (the cluster partition and GPU model of every GPU job); nothing for a CPU job."""
    if not gpus:
        return {}
    return {"gpu": gpus} | {name: value for name, value in config["gpu_jobs"].items() if value}


DATASET_TARGETS = {"dataset", "onetrainer"}  # targets that need no base model or CLIP model


def check_models(targets):
    """Raise ConfigError, naming the key, the path and where to get it, for a model file the run needs
    that is missing or unsafe (called at the start of a run, before any job; the training rules are
    planned only after the dedup checkpoint, too late to stop the run). The dataset stage needs the mask
    and tagger models, a run beyond it the SDXL checkpoint and the CLIP folder too; `snakemake models`
    checks nothing and lists them all."""
    targets = set(targets or ())
    if targets and targets <= {"models"}:
        return
    model_files.check_all(config, {"dataset"} if dataset_only(targets) else {"dataset", "run"})


def dataset_only(targets):
    """Whether the targets are the dataset stage's alone (its target names, or files it makes)."""
    targets = set(targets or ())
    dataset_files = {t for t in targets if t.startswith(f"{plan.DATASET_DIR}/")}
    return bool(targets) and targets - dataset_files <= DATASET_TARGETS | {"models"}


def cost_at_start(targets):
    """The whole run's cost as `snakemake cost` prints it, for the start of a run that goes beyond the
    dataset stage (read from the checkpoint's header: a fraction of a second); None when the base model
    is not at hand yet (the demo's tiny model before its first build)."""
    if dataset_only(targets) or targets and set(targets) <= {"cost"} or not Path(base_model()).exists():
        return None
    return run_cost.describe(config, run_cost.header_shapes(base_model()), len(LISTING.images))


def dataset_targets(wildcards=None):
    # Plain paths, no checkpoint: the report needs every kept photo, and Snakemake resolves the
    # validation's refine_sampling checkpoint only where the target list does not itself wait for dedup.
    return ["results/dataset/report.html", "results/dataset/lint.tsv", "results/dataset/split.tsv"]


def all_targets(wildcards):
    targets = dataset_targets(wildcards) + all_epoch_files() + validation_targets() + [f"{RUN_DIR}/{RUN}.safetensors"]
    targets += [f"{RUN_DIR}/run.yaml", f"{RUN_DIR}/runs.tsv"]
    if TRAIN["export"]:
        targets.append(f"{EXPORT_DIR}/epoch-{TRAIN['epochs']:03d}.safetensors")
    return targets
