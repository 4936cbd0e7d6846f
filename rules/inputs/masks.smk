# The masks stage's globals and input functions, for rules/masks.smk (which includes this file;
# Snakemake's linter keeps functions and rules in separate files).


# The rembg model file, an input of the photos' masks it makes (checked at the start of a run).
USES_REMBG = config["masks"]["method"] == "rembg"
REMBG_MODEL = [str(Path(config["masks"]["rembg"]["model"]).expanduser())] if USES_REMBG and config["masks"]["rembg"]["model"] else []


# Slurm: a GPU for the mask jobs when rembg is set to run on one (auto takes one where it finds it)
MASK_GPUS = 1 if USES_REMBG and config["masks"]["device"].startswith("cuda") else 0


def user_mask(wildcards):
    """The user's hand-fixed mask for an <id>, when there is one (it wins over generated masks)."""
    return [f"{DATASET}/masks/{wildcards.id}.png"] if wildcards.id in USER_MASKS else []


def rembg_model(wildcards):
    """The rembg model file, for the photos whose mask it makes."""
    return [] if wildcards.id in USER_MASKS else REMBG_MODEL
