# The training stage's globals and input functions, for rules/train.smk (which includes this file;
# Snakemake's linter keeps functions and rules in separate files).


# What the weights depend on (the table's "train" stage): a change reruns the training blocks.
TRAIN_SETTINGS = plan.weight_settings(TRAIN, masks_made=USES_MASKS)
# A training job's processes (train.gpus; `all` asks the scheduler for one GPU and uses what it gets):
# a GPU each unless on the CPU, and a thread each (torchrun's one thread per process)
TRAIN_PROCESSES = 1 if TRAIN["gpus"] == "all" else TRAIN["gpus"]
TRAIN_GPUS = 0 if TRAIN["device"] == "cpu" else TRAIN_PROCESSES


def saved_epochs(first, last):
    """Epochs of a block whose UNet is saved (plan.is_saved)."""
    return plan.saved_epochs(first, last, TRAIN["save_every"])


def train_inputs(first):
    """Input function of the block starting at epoch `first`: the dataset, and the previous block's state."""

    def inputs(wildcards):
        files = dict(
            images=kept_images(wildcards),
            captions=kept_captions(wildcards),
            masks=kept_mask_images(wildcards),
            split="results/dataset/split.tsv",
            model=base_model(wildcards),
            model_hash="results/models/base_model.sha256",
        )
        if first > 1:
            previous = first - 1
            files["state"] = plan.epoch_file(RUN, previous, "state")
            files["weights"] = plan.epoch_file(RUN, previous, "safetensors")
        return files

    return inputs


def all_epoch_files():
    return [plan.epoch_file(RUN, e, kind) for first, last in TRAIN_BLOCKS
            for e in range(first, last + 1) for kind in ("safetensors", "metrics.tsv")
            if kind != "safetensors" or e in saved_epochs(first, last)]
