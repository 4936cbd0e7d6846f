# The LoRA stage's globals and input functions, for rules/lora.smk (which includes this file;
# Snakemake's linter keeps functions and rules in separate files).


# LoRA (rules/lora.smk): the run's LoRA is the LoRA of one saved epoch, `lora.epoch`.
LORA = config["lora"]
LORA_EPOCH = None if LORA["epoch"] == "auto" else LORA["epoch"]  # None: the selection's (selected.json)
if LORA_EPOCH is not None and LORA_EPOCH not in SAVED_EPOCHS:
    raise ConfigError(f"lora.epoch: {LORA_EPOCH} is not a saved epoch of run {RUN!r}; with train.epochs "
                      f"{TRAIN['epochs']}, save_every {TRAIN['save_every']} and epochs_per_job "
                      f"{TRAIN['epochs_per_job']} the saved epochs are {', '.join(map(str, SAVED_EPOCHS))}")
LORA_GPUS = 0 if LORA["device"] == "cpu" else 1


def selected_epoch(wildcards):
    """The epoch of the run's LoRA: lora.epoch, or the selection's (the select_epoch checkpoint runs first)."""
    if LORA_EPOCH is not None:
        return LORA_EPOCH
    path = checkpoints.select_epoch.get().output.selection
    epoch = selection.read_selection(path)
    if epoch is None:
        raise ConfigError(f"{path}: no epoch selected: {selection.read_reasons(path)[-1]}")
    return epoch


def run_lora_inputs(wildcards):
    epoch = selected_epoch(wildcards)
    return dict(lora=f"{LORA_DIR}/epoch-{epoch:03d}.safetensors",
                record=f"{LORA_DIR}/epoch-{epoch:03d}.verify.json")
