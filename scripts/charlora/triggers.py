"""Which settings rerun which jobs: one table, stage (a rule, or the training blocks) -> the config keys
that change its outputs.

A rule is given `settings(config, stage)` as its params and nothing else from the config, so Snakemake
reruns its jobs exactly when one of these keys changes (params are a rerun trigger) and never for
another. A key is named by its dotted path; a section's name stands for every key in it. Every key of
config/schema.yaml is in exactly one of three places (tests/test_config.py checks it):

- TRIGGERS: read by the jobs of one or more stages, whose outputs it changes;
- PLAN: read when Snakemake plans the run: which jobs and files exist (the epochs and their blocks,
  which epochs are sampled, the LoRA's epoch, an export) or where a job runs (the training's, the masks'
  and the taggers' device: a run may move between GPU nodes, and the last bits of a float may differ
  between devices as between any two GPU models). A job given part of the plan (the refinement and the
  selection get the saved and sampled epochs) reruns when that part changes, not for the key;
- SCHEDULER: what a job asks the scheduler for (memory, time, partition), never a rerun.

A stage's typed settings (train.Settings, sample.Settings, lora.Settings) read exactly its keys.
Settings of an option not chosen (masks.rembg with the colour_key method, captions.vlm with wd14) and
the tagger as the scorecard's fallback where a CLIP model scores adherence are left out of a job's
settings (`unused`): changing them reruns nothing.
"""

from __future__ import annotations

import copy

EVERY_KEY = "*"  # the run record keeps the whole config but the scheduler's keys and the options not chosen

# fmt: off
LORA_KEYS = ("lora.rank", "lora.conv_rank", "lora.clamp_quantile", "lora.min_diff", "lora.save_precision",
             "lora.device")

TRIGGERS: dict[str, tuple[str, ...]] = {
    # dataset stage (rules/dataset.smk, masks.smk, captions.smk)
    "demo_dataset": (),
    "audit": ("ingest.min_side", "ingest.max_megapixels", "ingest.alpha_background", "ingest.min_sharpness",
              "ingest.max_highlight_clip", "ingest.max_shadow_clip", "ingest.min_jpeg_quality",
              "ingest.framing.close_up_min_face", "ingest.framing.full_body_max_face"),
    "dedup": ("dedup", "ingest.max_megapixels", "ingest.alpha_background", "strict"),
    "ingest": ("ingest.max_megapixels", "ingest.alpha_background"),
    "split": ("ingest.val_fraction",),
    "prune_dataset": (),
    "mask": ("masks.method", "masks.rembg", "masks.colour_key", "masks.threshold", "masks.fill_holes",
             "masks.dilate_px", "masks.feather_px", "masks.coverage_range", "strict"),
    "tag": ("captions.tagger", "captions.wd14", "captions.vlm"),
    "caption": ("subject.token", "captions.vocabulary", "captions.generic_tags", "strict"),
    "caption_lint": ("subject.token", "captions.vocabulary", "captions.generic_tags", "captions.max_tokens",
                     "strict"),
    "dataset_report": ("dataset", "intent", "captions.vocabulary", "ingest.framing.targets",
                       "ingest.max_years_from_median", "ingest.max_skin_shift"),
    "onetrainer_export": ("subject.token", "train.seed"),
    # training (rules/train.smk): what the weights depend on, also the fingerprint kept with every epoch
    "model_hash": ("base_model",),
    "train": ("train.lr", "train.batch_size", "train.grad_accum", "train.gpus", "train.optimizer",
              "train.fused_backward", "train.precision", "train.gradient_checkpointing", "train.resolution",
              "train.bucket_step", "train.save_every", "train.masked_training", "train.unmasked_weight",
              "train.normalize_masked_area_loss", "train.caption_dropout", "train.noise_offset",
              "train.min_snr_gamma", "train.ema_decay", "train.val_timesteps", "train.seed",
              "masks.method"),  # masked training needs masks
    # validation (rules/validate.smk)
    "validation_prompts": ("subject.token", "intent", "captions.vocabulary", "validate.prompts",
                           "validate.extra_prompts", "validate.train_captions"),
    "prompt_embeddings": ("validate.negative_prompt",),  # on the CPU in fp32, whatever validate.device
    "sample_epoch": ("run", "validate.sampler", "validate.steps", "validate.cfg", "validate.negative_prompt",
                     "validate.resolution", "validate.seeds", "validate.batch", "validate.device"),  # fp16 on CUDA
    "refine_sampling": (),
    "compare_epochs": ("run", "base_model", "validate.seeds"),
    "loss_curves": ("run",),
    "reference_photos": ("select.min_face", "validate.resolution"),
    "score_epoch": ("base_model", "subject.token", "validate.seeds", "select.clip", "select.face_threshold",
                    "select.device", "captions.tagger", "captions.wd14", "captions.vlm", "captions.vocabulary"),
    "select_epoch": ("select.copy_bits",),
    # the LoRA and the run's record (rules/lora.smk, runs.smk)
    "extract_lora": ("run", "subject.token", "subject.rights_holder", "subject.consent", "train.resolution",
                     *LORA_KEYS),
    "verify_lora": ("subject.token", *LORA_KEYS),
    "run_record": (EVERY_KEY, "rationale"),  # the rationale is read by nothing else
}

PLAN = ("subject.real_person", "train.epochs", "train.epochs_per_job", "train.device", "train.export", "lora.epoch",
        "validate.every", "validate.epochs", "masks.device", "captions.device")

SCHEDULER = ("gpu_jobs", "train.mem_mb", "train.runtime", "validate.mem_mb", "validate.runtime",
             "select.mem_mb", "select.runtime")
# fmt: on

# What a stage's job reads without rerunning for it (from PLAN): the training's device, and the rest of
# the run's chain for its disk check ("the rest of the run writes ..."). The masks' and the taggers'
# devices reach their jobs through the environment (rules/common.smk).
READ_WITHOUT_RERUN: dict[str, tuple[str, ...]] = {
    "train": ("train.device", "train.epochs", "train.epochs_per_job"),
}

CHOICES = {"masks": "method", "captions": "tagger"}  # section -> the key that picks one of its options
OPTIONS = {"masks": ("rembg", "colour_key"), "captions": ("wd14", "vlm")}


def covers(key: str, entry: str) -> bool:
    """Whether a table entry (a key or a section) covers the dotted `key`."""
    return key == entry or key.startswith(entry + ".")


def unused(config: dict, stage: str) -> set[str]:
    """Keys of this stage that this config does not use: the options not chosen, and the tagger in the
    scorecard when a CLIP model scores adherence."""
    keys = {
        f"{section}.{option}"
        for section, options in OPTIONS.items()
        for option in options
        if config[section][CHOICES[section]] != option
    }
    if stage == "score_epoch" and config["select"]["clip"]:
        keys |= {"captions.tagger", "captions.wd14", "captions.vlm", "captions.vocabulary"}
    return keys


def _pick(config: dict, entries) -> dict:
    out: dict = {}
    for entry in entries:
        *sections, key = entry.split(".")
        source, target = config, out
        for section in sections:
            source, target = source[section], target.setdefault(section, {})
        target[key] = copy.deepcopy(source[key])
    return out


def settings(config: dict, stage: str) -> dict:
    """The part of the config a stage's jobs read and rerun for, nested as in the config (keys in the
    table's order): the params of its rule."""
    skip = unused(config, stage)
    if EVERY_KEY in TRIGGERS[stage]:  # keys sorted: a --config section merged in another order is no change
        return _sorted(without(config, [*SCHEDULER, *skip]))
    return _pick(config, [e for e in TRIGGERS[stage] if not any(covers(e, s) for s in skip)])


def _sorted(value):
    return {k: _sorted(value[k]) for k in sorted(value)} if isinstance(value, dict) else value


def read_without_rerun(config: dict, stage: str) -> dict:
    """The PLAN keys a stage's job reads without rerunning for them (READ_WITHOUT_RERUN), nested."""
    return _pick(config, READ_WITHOUT_RERUN.get(stage, ()))


def without(config: dict, entries) -> dict:
    """A copy of the config without these keys or sections (an emptied section is dropped)."""
    out = copy.deepcopy(config)
    for entry in entries:
        *sections, key = entry.split(".")
        parent = out
        for section in sections:
            parent = parent.get(section, {})
        parent.pop(key, None)
    return out


def section(stage_settings: dict, name: str) -> dict:
    """One section of a stage's settings (empty when the stage reads none of it)."""
    return stage_settings.get(name, {})
