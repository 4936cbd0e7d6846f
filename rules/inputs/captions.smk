# The captions stage's globals and input functions, for rules/captions.smk (which includes this file;
# Snakemake's linter keeps functions and rules in separate files).


def user_caption(wildcards):
    """The user's corrected caption for an <id>, when there is one (it wins, and is never rewritten)."""
    return [f"{DATASET}/captions/{wildcards.id}.txt"] if wildcards.id in USER_CAPTIONS else []


# Slurm: a GPU for the tag jobs when the tagger is set to run on one (auto takes one where it finds it)
TAG_GPUS = 1 if TAGGER in model_files.TAGGER_FILES and config["captions"]["device"].startswith("cuda") else 0
