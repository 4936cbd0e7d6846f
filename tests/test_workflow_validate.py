"""Validation for real through Snakemake on the demo: which epochs are sampled, what the files hold,
what a change of prompts reruns, that a rebuild gives the same bytes, the scorecard, the selection and
the user's review files."""

import json
import re
import zipfile

import numpy as np
from PIL import Image
from safetensors import safe_open

from charlora import sample, sample_metrics, scorecard, split, validate_prompts
from charlora.captions import split_caption
from workflow import copy_workspace, jobs_run, snakemake, snapshot

VALIDATE = "results/runs/demo/validate"


def test_the_run_samples_the_base_and_every_second_saved_epoch(trained):
    ws, _ = trained
    validate = ws / VALIDATE
    prompts = sample.read_prompts(validate / "prompts.tsv")
    val_ids = sorted(i for i, side in split.read_table(ws / "results/dataset/split.tsv").items() if side == split.VAL)
    assert prompts[0] == sample.Prompt("p01", "token", "mira")
    origins = [p.origin for p in prompts]
    assert origins[1:5] == ["intent"] * 4  # the demo's intent lists 4 poses and 4 expressions
    assert all(o.startswith("variant of p0") for o in origins[5:8])
    from_photos = [p for p in prompts if p.origin.startswith("validation photo ")]
    assert [p.origin for p in from_photos] == [f"validation photo {i}" for i in val_ids]
    for p, photo in zip(from_photos, val_ids):
        assert p.text == (ws / f"results/dataset/captions/{photo}.txt").read_text().strip()
    # last, the memorisation probe: validate.train_captions (3) training photos' captions
    train_ids = sorted(
        i for i, side in split.read_table(ws / "results/dataset/split.tsv").items() if side == split.TRAIN
    )
    assert origins[-3:] == [f"training photo {i}" for i in validate_prompts.spread(train_ids, 3)]
    # the demo: 0 (the base model) and validate.every 2 of the saved epochs 1-4; then, the losses known,
    # the saved epochs within 8 of the selection's start (4: the demo's validation loss falls throughout)
    assert (validate / "refine.tsv").read_text().splitlines()[1:] == [
        f"{e}\t{4 - e} from the selection's start, epoch 4: a candidate of the selection" for e in (1, 3)
    ]
    for epoch in range(5):
        folder = validate / f"epoch-{epoch:03d}"
        samples = sorted(f.name for f in folder.iterdir() if not f.name.startswith("."))  # not Snakemake's stamp
        assert samples == [f"{p.name}-s{seed}.png" for p in prompts for seed in (0, 1)]  # the demo's validate.seeds 2
        with Image.open(folder / "p01-s0.png") as image:
            assert image.size == (64, 64)
            model = f"demo-epoch-{epoch:03d}" if epoch else "demo-base"
            assert image.text["parameters"] == (
                f"mira\nSteps: 4, Sampler: Euler, CFG scale: 5, Seed: 0, Size: 64x64, Model: {model}, Version: charlora"
            )
            comfy = {n["class_type"]: n["inputs"] for n in json.loads(image.text["prompt"]).values()}
        # ComfyUI's test of the epoch: the base checkpoint's file name and the epoch's LoRA as
        # <run>/epoch-<eee>.safetensors, the name it has in ComfyUI/models/loras/ once the run's lora/ is copied there
        assert comfy["CheckpointLoaderSimple"]["ckpt_name"] == "tiny.safetensors"
        if epoch:
            assert comfy["LoraLoader"]["lora_name"] == f"demo/epoch-{epoch:03d}.safetensors"
        else:
            assert "LoraLoader" not in comfy
        assert (comfy["KSampler"]["seed"], comfy["KSampler"]["steps"], comfy["EmptyLatentImage"]["width"]) == (0, 4, 64)
        assert (validate / f"epoch-{epoch:03d}.png").stat().st_size > 5_000
    base, last = (np.asarray(Image.open(validate / f"epoch-{e}/p01-s0.png"), dtype=float) for e in ("000", "004"))
    assert np.abs(base - last).mean() > 0.5  # training changed what the token draws
    assert (validate / "compare.png").stat().st_size > 5_000 and (validate / "losses.png").stat().st_size > 20_000
    # the demo's sheet says its samples are noise (a random tiny model)
    assert "every sample is colour noise by design" in (ws / "logs/runs/demo/validate/compare.log").read_text()


def test_a_new_intent_or_prompt_resamples_every_epoch_and_never_retrains(trained, tmp_path):
    ws = copy_workspace(trained[0], tmp_path / "ws")
    resampled = {
        ("validation_prompts", ""),
        ("prompt_embeddings", ""),
        ("compare_epochs", ""),
        ("select_epoch", ""),
        ("loss_curves", ""),
        ("run_lora", ""),
        ("run_record", ""),
        ("compare_runs", ""),
        ("all", ""),
    } | {(rule, f"eee={e:03d}") for e in range(5) for rule in ("sample_epoch", "score_epoch")}
    (ws / "prompts.yaml").write_text("validate:\n  extra_prompts: ['mira, in the rain, umbrella']\n")
    assert jobs_run(snakemake(ws, "-n", "--configfile", "prompts.yaml").stdout) == resampled
    (ws / "intent.yaml").write_text("intent:\n  poses: [jumping]\n  scenes: [snow]\n")
    result = snakemake(ws, "--configfile", "intent.yaml", "--until", "validation_prompts", "dataset_report")
    assert jobs_run(snakemake(ws, "-n", "--configfile", "intent.yaml").stdout) == resampled - {
        ("validation_prompts", "")
    }
    assert jobs_run(result.stdout) == {("validation_prompts", ""), ("dataset_report", "")}
    prompts = sample.read_prompts(ws / VALIDATE / "prompts.tsv")
    # a --configfile is merged into config.yaml: the new lists replace the demo's poses and scenes
    composed = [split_caption(p.text) for p in prompts if p.origin == "intent"]
    assert len(composed) == 4 and all(parts[1] == "jumping" and "snow" in parts for parts in composed)
    log = (ws / "logs/dataset/report.log").read_text()
    assert "intent: no kept photo's caption shows jumping, snow" in log  # the warning names what no photo shows


def test_a_setting_reruns_only_the_jobs_that_read_it(trained):
    """The rerun-trigger table (charlora/triggers.py) in dry runs: a scheduler request plans nothing, the
    selection's threshold re-selects without re-scoring, the sampling device and batch resample every epoch
    without encoding the prompts again, a negative prompt encodes and resamples, the
    caption length limit re-lints without re-tagging, the settings of a method not chosen change nothing."""
    ws, _ = trained

    def planned(*settings):
        return {rule for rule, _ in jobs_run(snakemake(ws, "-n", "--config", *settings).stdout)}

    assert (
        planned(
            "select={mem_mb: 12345, runtime: 99}",
            "train={mem_mb: 9999}",
            "validate={runtime: 7}",
            "gpu_jobs={slurm_partition: big}",
        )
        == set()
    )
    assert planned("masks={rembg: {session: u2net}}", "captions={vlm: {max_new_tokens: 7}}") == set()
    copy_bits = planned("select={copy_bits: 10}")
    assert "select_epoch" in copy_bits and "score_epoch" not in copy_bits and "sample_epoch" not in copy_bits
    resampled = jobs_run(snakemake(ws, "-n", "--config", "validate={device: auto}").stdout)
    assert {("sample_epoch", f"eee={e:03d}") for e in range(5)} <= resampled
    assert not {rule for rule, _ in resampled} & {
        "validation_prompts",
        "prompt_embeddings",  # encoded on the CPU whatever the sampling device
        "train_epochs_001_002",
        "reference_photos",
    }
    assert {"prompt_embeddings", "sample_epoch"} <= planned("validate={negative_prompt: blurry}")
    batched = planned("validate={batch: 4}")
    assert "sample_epoch" in batched and "prompt_embeddings" not in batched
    linted = planned("captions={max_tokens: 70}")
    assert "caption_lint" in linted and not linted & {"tag", "caption", "train_epochs_001_002"}


def test_any_saved_epoch_on_request_and_samples_rebuild_byte_identical(trained, tmp_path):
    ws = copy_workspace(trained[0], tmp_path / "ws")
    (ws / "more.yaml").write_text("train:\n  epochs: 6\n")  # a sixth epoch, not in the coarse pass
    assert jobs_run(snakemake(ws, "-n", f"{VALIDATE}/epoch-005.png", "--configfile", "more.yaml").stdout) == {
        ("train_epochs_005_006", ""),
        ("sample_epoch", "eee=005"),
    }
    before = snapshot(ws / VALIDATE / "epoch-004")
    ran = jobs_run(snakemake(ws, f"{VALIDATE}/epoch-004.png", "--force").stdout)
    assert ran == {("sample_epoch", "eee=004")}
    assert snapshot(ws / VALIDATE / "epoch-004") == before


def test_every_sampled_epoch_is_measured_scored_and_one_selected(trained):
    ws, result = trained
    validate = ws / VALIDATE
    prompts = sample.read_prompts(validate / "prompts.tsv")
    reference = sample_metrics.read_reference(ws / "results/dataset/reference.json")
    train_ids = sorted(
        i for i, side in split.read_table(ws / "results/dataset/split.tsv").items() if side == split.TRAIN
    )
    assert [p.id for p in reference.photos] == train_ids
    for epoch in range(5):
        scores = sample_metrics.read_scores(validate / f"epoch-{epoch:03d}.scores.json")
        assert scores.adherence_method == "CLIP score (results/models/tiny-clip)"
        assert [(s.prompt, s.seed) for s in scores.samples] == [(p.name, seed) for p in prompts for seed in (0, 1)]
        assert [s.origin for s in scores.samples[::2]] == [p.origin for p in prompts]
        assert [s.unseen for s in scores.samples[::2]] == [
            p.origin.startswith(("token", "intent", "variant", "extra")) for p in prompts
        ]
        for s in scores.samples:
            assert s.adherence is not None and s.copy_bits is not None and s.nearest.split(" (")[0] in train_ids
            assert not s.face  # 64-pixel samples: no face of 40 px to measure
        assert 0 < scores.diversity_seeds <= 1.5 and 0 < scores.diversity_prompts <= 1.5
    rows = scorecard.read_scorecard(validate / "scorecard.tsv")
    assert [r.epoch for r in rows] == [1, 2, 3, 4]
    for row in rows:
        assert all(row.levels[k] in scorecard.LEVELS[k] + ["n/a"] for k in scorecard.CRITERIA)
        assert all(row.evidence.values())
        # the random tiny CLIP scores epoch 0 no closer to its own prompts than to shuffled ones
        assert row.evidence["prompt_accuracy"].startswith("adherence n/a: the base model does not follow prompts")
        # 64-pixel samples: no face to measure, so no verdict of resemblance (n/a, or a flag that says why)
        assert row.levels["visual_fidelity"] not in ("excellent", "good")
        assert "identity n/a" in row.evidence["visual_fidelity"]
        assert row.method == (
            "adherence: CLIP score (results/models/tiny-clip); identity: "
            f"{sample_metrics.read_scores(validate / f'epoch-{row.epoch:03d}.scores.json').identity_method}"
        )
        assert row.val_loss > 0 and len(row.val_per_timestep) == 8 and row.train_loss_smoothed > 0
    selection = json.loads((validate / "selected.json").read_text())
    # the demo: the validation loss falls to the last epoch; the random model's training loss per epoch
    # is noise around 1.09, with no knee; the samples show no signs
    assert (selection["epoch"], selection["lowest_validation_loss_smoothed"], selection["start"]) == (4, 4, 4)
    assert selection["knee"] is None and not selection["flat"] and selection["to_sample"] == []
    assert [s["action"] for s in selection["steps"]] == ["best candidate", "stop"]
    assert selection["reasons"][-1] == "epoch 4: no overtraining or undertraining signs"
    with safe_open(str(ws / "results/runs/demo/demo.safetensors"), "pt") as f:
        assert f.metadata()["charlora.epoch"] == str(selection["epoch"])
    snakemake(ws, "--report", "run-report.zip")  # the run's report holds all of it
    names = zipfile.ZipFile(ws / "run-report.zip").namelist()
    for name in (
        "scorecard.tsv",
        "selected.json",
        "losses.png",
        "compare.png",
        "epoch-002.png",
        "epoch-004.verify.png",
        "runs.tsv",
    ):
        assert any(n.endswith("/" + name) for n in names), name
    # the landing page says what to read first; every result sits in a named category and subcategory
    page = zipfile.ZipFile(ws / "run-report.zip").read(
        next(n for n in names if n.count("/") == 1 and n.endswith("/report.html"))
    )
    page = page.decode()
    description = json.loads(re.search(r"var workflow_desc = (.*);$", page, re.M).group(1))
    assert "What to look at first" in description and "Selection / Selected epoch" in description
    assert "random tiny network" in description  # the demo says what it is
    categories = json.loads(re.search(r"var categories = (.*);$", page, re.M).group(1))
    assert sorted(categories) == ["1. Selection", "2. Samples", "3. Dataset", "4. LoRA", "5. Runs"]
    assert sorted(categories["1. Selection"]) == ["Comparison sheet", "Losses", "Scorecard", "Selected epoch"]
    assert all(sub != "Other" for subs in categories.values() for sub in subs)


def test_a_review_overrides_cells_and_a_rejection_moves_the_lora(trained, tmp_path):
    ws = copy_workspace(trained[0], tmp_path / "ws")
    review = ws / "results/demo/review/demo"
    review.mkdir(parents=True)
    (review / "epoch-004.yaml").write_text("reject: true\nnote: the hands are wrong\n")
    (review / "epoch-003.yaml").write_text("visual_fidelity: excellent\n")
    ran = jobs_run(snakemake(ws).stdout)
    assert ran == {
        ("select_epoch", ""),
        ("loss_curves", ""),
        ("extract_lora", "eee=003"),
        ("verify_lora", "eee=003"),
        ("run_lora", ""),
        ("compare_runs", ""),
        ("all", ""),
    }
    rows = {r.epoch: r for r in scorecard.read_scorecard(ws / VALIDATE / "scorecard.tsv")}
    assert rows[4].reject and rows[4].note == "the hands are wrong"
    assert rows[3].levels["visual_fidelity"] == "excellent" and rows[3].reviewed == ["visual_fidelity"]
    assert rows[3].evidence["visual_fidelity"].startswith("set by the review (measured: n/a;")
    selection = json.loads((ws / VALIDATE / "selected.json").read_text())
    assert selection["epoch"] == 3 and selection["reasons"][0] == "rejected by review: epoch 4"
    with safe_open(str(ws / "results/runs/demo/demo.safetensors"), "pt") as f:
        assert f.metadata()["charlora.epoch"] == "3"
    (review / "epoch-003.yaml").write_text("visual_fidelity: superb\n")
    failed = snakemake(ws, check=False)
    assert failed.returncode != 0
    assert "results/demo/review/demo/epoch-003.yaml: visual_fidelity: 'superb' is not a level" in failed.stdout
    assert jobs_run(failed.stdout) == set()  # stopped before any job
    for epoch in range(1, 5):  # every sampled epoch rejected: the run says so, and keeps the scorecard
        (review / f"epoch-{epoch:03d}.yaml").write_text("reject: true\n")
    failed = snakemake(ws, check=False)
    assert (
        failed.returncode != 0
        and (
            "results/runs/demo/validate/selected.json: no epoch selected: no epoch can be "
            "selected: every sampled epoch is rejected"
        )
        in failed.stdout
    )
    assert json.loads((ws / VALIDATE / "selected.json").read_text())["epoch"] is None
    assert all(r.reject for r in scorecard.read_scorecard(ws / VALIDATE / "scorecard.tsv"))


def test_validate_epochs_must_be_saved_epochs(trained, tmp_path):
    (tmp_path / "extra.yaml").write_text("validate:\n  epochs: [3, 7]\n")
    failed = snakemake(trained[0], "-n", "--configfile", str(tmp_path / "extra.yaml"), check=False)
    assert failed.returncode != 0
    assert "validate.epochs: 7 not a saved epoch of run 'demo'; the saved epochs are 1, 2, 3, 4" in failed.stdout
