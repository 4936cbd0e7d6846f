"""Validation for real through Snakemake on the demo: which epochs are sampled, what the files hold,
what a change of prompts reruns, and that a rebuild gives the same bytes."""

import numpy as np
from PIL import Image

from charlora import sample, split
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
    # the demo: 0 (the base model) and validate.every 2 of the saved epochs 1-4; then, the losses known,
    # the saved epochs within 4 of the lowest validation loss (4: the demo's loss falls throughout)
    assert (validate / "refine.tsv").read_text().splitlines()[1:] == [
        f"{e}\t4 or fewer epochs from the lowest validation loss (epoch 4); 4 or fewer epochs from the knee of the "
        "smoothed training loss (epoch 2)" for e in (1, 3)]
    for epoch in range(5):
        folder = validate / f"epoch-{epoch:03d}"
        samples = sorted(f.name for f in folder.iterdir() if not f.name.startswith("."))  # not Snakemake's stamp
        assert samples == [f"{p.name}-s0.png" for p in prompts]  # validate.seeds 1
        with Image.open(folder / "p01-s0.png") as image:
            assert image.size == (64, 64)
            model = f"demo-epoch-{epoch:03d}" if epoch else "demo-base"
            assert image.text["parameters"] == ("mira\nSteps: 4, Sampler: Euler, CFG scale: 5, Seed: 0, Size: 64x64, "
                                                f"Model: {model}, Version: charlora")
        assert (validate / f"epoch-{epoch:03d}.png").stat().st_size > 5_000
    base, last = (np.asarray(Image.open(validate / f"epoch-{e}/p01-s0.png"), dtype=float) for e in ("000", "004"))
    assert np.abs(base - last).mean() > 0.5  # training changed what the token draws
    assert (validate / "compare.png").stat().st_size > 5_000 and (validate / "losses.png").stat().st_size > 20_000


def test_a_new_intent_or_prompt_resamples_every_epoch_and_never_retrains(trained, tmp_path):
    ws = copy_workspace(trained[0], tmp_path / "ws")
    resampled = {("validation_prompts", ""), ("compare_epochs", ""), ("all", "")} | {
        ("sample_epoch", f"eee={e:03d}") for e in range(5)}
    (ws / "prompts.yaml").write_text("validate:\n  extra_prompts: ['mira, in the rain, umbrella']\n")
    assert jobs_run(snakemake(ws, "-n", "--configfile", "prompts.yaml").stdout) == resampled
    (ws / "intent.yaml").write_text("intent:\n  poses: [jumping]\n  scenes: [snow]\n")
    result = snakemake(ws, "--configfile", "intent.yaml", "--until", "validation_prompts", "dataset_report")
    assert jobs_run(snakemake(ws, "-n", "--configfile", "intent.yaml").stdout) == resampled - {("validation_prompts", "")}
    assert jobs_run(result.stdout) == {("validation_prompts", ""), ("dataset_report", "")}
    prompts = sample.read_prompts(ws / VALIDATE / "prompts.tsv")
    # a --configfile is merged into config.yaml: the new lists replace the demo's poses and scenes
    composed = [split_caption(p.text) for p in prompts if p.origin == "intent"]
    assert len(composed) == 4 and all(parts[1] == "jumping" and "snow" in parts for parts in composed)
    log = (ws / "logs/dataset/report.log").read_text()
    assert "intent: no kept photo's caption shows jumping, snow" in log  # the warning names what no photo shows


def test_any_saved_epoch_on_request_and_samples_rebuild_byte_identical(trained, tmp_path):
    ws = copy_workspace(trained[0], tmp_path / "ws")
    (ws / "more.yaml").write_text("train:\n  epochs: 6\n")  # a sixth epoch, not in the coarse pass
    assert jobs_run(snakemake(ws, "-n", f"{VALIDATE}/epoch-005.png", "--configfile", "more.yaml").stdout) == {
        ("train_epochs_005_006", ""), ("sample_epoch", "eee=005")}
    before = snapshot(ws / VALIDATE / "epoch-004")
    ran = jobs_run(snakemake(ws, f"{VALIDATE}/epoch-004.png", "--force").stdout)
    assert ran == {("sample_epoch", "eee=004")}
    assert snapshot(ws / VALIDATE / "epoch-004") == before
