# The captions stage's globals and input functions, for rules/captions.smk (which includes this file;
# Snakemake's linter keeps functions and rules in separate files).


def user_caption(wildcards):
    """The user's corrected caption for an <id>, when there is one (it wins, and is never rewritten)."""
    return [f"{DATASET}/captions/{wildcards.id}.txt"] if wildcards.id in USER_CAPTIONS else []
