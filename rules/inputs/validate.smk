# The validation stage's globals and input functions, for rules/validate.smk (which includes this file;
# Snakemake's linter keeps functions and rules in separate files).


# Validation (rules/validate.smk): every prompt x seed, from epoch 0 (the base model), the coarse pass (with
# the user's validate.epochs) and the epochs the refinement adds.
VALIDATE = config["validate"]
UNSAVED = sorted(set(VALIDATE["epochs"]) - set(SAVED_EPOCHS))
if UNSAVED:
    raise ConfigError(f"validate.epochs: {', '.join(map(str, UNSAVED))} not a saved epoch of run {RUN!r}; the saved "
                      f"epochs are {', '.join(map(str, SAVED_EPOCHS))} (train.epochs {TRAIN['epochs']}, "
                      f"save_every {TRAIN['save_every']})")
COARSE_EPOCHS = sorted({*plan.sampled_epochs(SAVED_EPOCHS, VALIDATE["every"]), *VALIDATE["epochs"]})
VALIDATE_GPUS = 0 if VALIDATE["device"] == "cpu" else 1


def sample_inputs(wildcards):
    """What an epoch's samples are made from: the base model's VAE and noise schedule, the prompts' embeddings,
    and the epoch's UNet unless it is 0 (the base model's)."""
    files = dict(
        model=base_model(wildcards),
        prompts=f"{VALIDATE_DIR}/prompts.tsv",
        embeddings=f"{VALIDATE_DIR}/prompts.safetensors",
    )
    if int(wildcards.eee) > 0:
        files["weights"] = f"{TRAIN_DIR}/epoch-{wildcards.eee}.safetensors"
    return files


def all_sampled_epochs(wildcards):
    """Every epoch the validation samples: the coarse pass (COARSE_EPOCHS) and, once the losses are
    known, the refinement's (evaluating this makes Snakemake run the refine_sampling checkpoint first)."""
    extra = refinement.read_table(checkpoints.refine_sampling.get().output[0])
    return sorted({*COARSE_EPOCHS, *extra})


def sample_folders(wildcards):
    return [f"{VALIDATE_DIR}/epoch-{e:03d}" for e in all_sampled_epochs(wildcards)]


def validation_targets():
    return [f"{VALIDATE_DIR}/compare.png", f"{VALIDATE_DIR}/losses.png", f"{VALIDATE_DIR}/scorecard.tsv"]


# Scorecard and selection (rules/validate.smk): every sampled epoch measured against the training photos
# and epoch 0; the user's review files win.
SELECT = config["select"]


def clip_model(wildcards):
    """The CLIP model folder of select.clip (input function, checked when an epoch is scored), or nothing."""
    if SELECT["clip"] == "tiny":
        return ["results/models/tiny-clip"]
    if SELECT["clip"]:
        return [str(model_files.check(MODEL_FILES["select.clip"])[0].parent)]
    return []


REVIEW_DIR = f"{DATASET}/review/{RUN}"
REVIEWS = scorecard.review_files(Path(REVIEW_DIR))  # epoch -> the user's review file
for review_file in REVIEWS.values():
    scorecard.read_review(review_file)  # a wrong key or level stops the run before any job


def epoch_scores(wildcards):
    return [f"{VALIDATE_DIR}/epoch-{e:03d}.scores.json" for e in all_sampled_epochs(wildcards)]
