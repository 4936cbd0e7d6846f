"""Training run for real through Snakemake on the demo: the chain of jobs, what it writes, what a
change of config or caption plans, and a kill -9 in the middle."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml
from safetensors import safe_open
from safetensors.torch import load_file

from charlora import demo
from workflow import copy_workspace, jobs_run, snakemake, snapshot

TRAIN = "results/runs/demo/train"
# the demo samples epoch 0 (the base model) and every 2nd saved epoch, 2 and 4, then 1 and 3 (within
# 4 epochs of the lowest validation loss)
VALIDATION = {
    ("validation_prompts", ""),
    ("prompt_embeddings", ""),
    ("refine_sampling", ""),
    ("compare_epochs", ""),
    ("loss_curves", ""),
    ("tiny_clip", ""),
    ("reference_photos", ""),
    ("select_epoch", ""),
} | {(rule, f"eee={e:03d}") for e in range(5) for rule in ("sample_epoch", "score_epoch")}
RECORD = {("run_record", ""), ("compare_runs", "")}  # the run record has the effective config: any change rewrites it


def metrics(path):
    rows = [line.split("\t") for line in path.read_text().splitlines()[1:]]
    return [r for r in rows if r[0] == "train"], {r[2]: float(r[3]) for r in rows if r[0] == "val"}


def test_demo_trains_in_a_chain_of_jobs(trained):
    ws, result = trained
    assert (
        jobs_run(result.stdout)
        == {
            ("tiny_model", ""),
            ("model_hash", ""),
            ("train_epochs_001_002", ""),
            ("train_epochs_003_004", ""),
            ("extract_lora", "eee=004"),
            ("verify_lora", "eee=004"),
            ("run_lora", ""),
            ("all", ""),
        }
        | VALIDATION
        | RECORD
    )
    train = ws / TRAIN
    base_keys = None
    for epoch in (1, 2, 3, 4):
        with safe_open(str(train / f"epoch-{epoch:03d}.safetensors"), "pt") as f:
            assert f.metadata()["charlora.epoch"] == str(epoch)
            base_keys = base_keys or set(f.keys())
            assert set(f.keys()) == base_keys and len(base_keys) == 1680  # the whole SDXL UNet, diffusers names
        steps, val = metrics(train / f"epoch-{epoch:03d}.metrics.tsv")
        assert len(steps) == 10  # 18 training photos in buckets, batch 2
        assert set(val) == {"62", "187", "312", "437", "562", "687", "812", "937", "mean"}
    for epoch in (2, 4):
        state = train / f"epoch-{epoch:03d}.state"
        assert {p.name for p in state.iterdir()} - {".snakemake_timestamp"} == {"optimizer.safetensors", "trainer.json"}
    assert not list(train.glob(".*"))  # no temp files left
    first, last = load_file(str(train / "epoch-001.safetensors")), load_file(str(train / "epoch-004.safetensors"))
    assert not torch.equal(first["conv_in.weight"], last["conv_in.weight"])
    assert metrics(train / "epoch-001.metrics.tsv")[1] != metrics(train / "epoch-004.metrics.tsv")[1]
    log1 = (ws / "logs/runs/demo/train/epochs-001-002.log").read_text()
    log2 = (ws / "logs/runs/demo/train/epochs-003-004.log").read_text()
    assert (
        "disk: the rest of the run writes 4 saved epoch(s) x 0.10 GB (the UNet in float32) + 2 training state(s)"
        in log1
        and "encoding" in log1
    )
    assert "disk: the rest of the run writes 2 saved epoch(s)" in log2
    assert "epoch 3: train loss" in log2 and "encoding" not in log2  # the second job found everything cached


def test_tensorboard_has_the_loss_curves(trained):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ws, _ = trained
    events = EventAccumulator(str(ws / "results/runs/demo/tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "train/lr", "val/loss", "val/loss_t062", "val/loss_t937"} <= tags
    assert [e.step for e in events.Scalars("train/loss")] == list(range(1, 41))
    assert len(events.Scalars("val/loss")) == 4


def test_the_cost_of_the_run_before_it_runs(trained):
    """`snakemake cost`: the demo's 4 saved epochs and 2 job states of the tiny model, and its samples, in
    the figures the training job's disk check uses (its log: "the rest of the run writes ...")."""
    ws, _ = trained
    printed = snakemake(ws, "cost").stdout
    assert "run 'demo': 25 photos, 4 epochs" in printed and "UNet checkpoints     4 saved epochs x " in printed
    assert "training states      2 jobs x " in printed and "validation samples   3 epochs (+ up to 2)" in printed
    log = (ws / "logs/runs/demo/train/epochs-001-002.log").read_text()
    per_epoch = printed.split("4 saved epochs x ")[1].split(" GB")[0]
    assert f"4 saved epoch(s) x {per_epoch} GB" in log
    # the start of a run that trains prints the same estimate (read from the checkpoint's header);
    # a dataset-only run does not
    started = snakemake(ws, "--forcerun", "loss_curves", "results/runs/demo/validate/losses.png").stdout
    table = printed[printed.index("run 'demo': 25 photos") :].split("\n[")[0]  # up to Snakemake's next log line
    assert (
        "total, at most about" in table
        and f"What this run costs, at most (`snakemake cost` prints it again):\n{table}" in started
    )


def test_raising_epochs_plans_only_the_new_block(trained):
    ws, _ = trained
    (ws / "more.yaml").write_text("train:\n  epochs: 6\n")
    assert (
        jobs_run(snakemake(ws, "-n", "--configfile", "more.yaml").stdout)
        == {
            ("train_epochs_005_006", ""),
            ("run_lora", ""),
            ("refine_sampling", ""),
            ("compare_epochs", ""),
            ("select_epoch", ""),
            ("loss_curves", ""),
            ("all", ""),
        }
        | RECORD
    )
    # which epochs are sampled is known once the refine_sampling checkpoint has read the new losses, and
    # which epoch's LoRA is extracted once the select_epoch checkpoint has scored their samples


def test_a_section_on_the_command_line_a_bad_override_file_and_the_consent_gate(trained):
    ws, _ = trained
    planned = jobs_run(snakemake(ws, "-n", "--config", "train={epochs: 6}").stdout)  # '6' read as the integer 6
    assert ("train_epochs_005_006", "") in planned
    (ws / "my run.yaml").write_text("train:\n  epochs: six\n")
    failed = snakemake(ws, "-n", "--configfile", "my run.yaml", check=False)
    assert failed.returncode != 0 and jobs_run(failed.stdout) == set()
    assert "train.epochs: 'six' is not of type 'integer'  [set in " in failed.stdout and "my run.yaml]" in failed.stdout
    # a real person without the written consent record: nothing runs
    failed = snakemake(ws, "-n", "--config", "subject={real_person: true, consent: consent.pdf}", check=False)
    assert "subject.consent: consent.pdf does not exist" in failed.stdout and jobs_run(failed.stdout) == set()


def test_gpu_jobs_ask_for_their_gpus_partition_and_model(trained):
    ws, _ = trained
    planned = snakemake(
        ws,
        "-n",
        "--forceall",
        "--config",
        "train={device: cuda, gpus: 2}",
        "gpu_jobs={slurm_partition: gpu, gpu_model: a100}",
        "--",
        "results/runs/demo/train/epoch-002.safetensors",
        "results/dataset/split.tsv",
    ).stdout
    blocks = {block.split(":", 1)[0]: block for block in planned.split("\nrule ")[1:]}
    assert "gpu=2, slurm_partition=gpu, gpu_model=a100," in blocks["train_epochs_001_002"]
    assert "gpu" not in blocks["split"] and "slurm_partition" not in blocks["split"]  # a CPU job asks for none


def test_editing_a_caption_plans_training_from_epoch_1(trained, tmp_path):
    ws = copy_workspace(trained[0], tmp_path / "ws")
    caption = ws / "results/demo/captions" / demo.CAPTION_FILES[0]
    caption.write_text(caption.read_text().strip() + ", smiling\n")
    planned = jobs_run(snakemake(ws, "-n").stdout)
    image_id = demo.CAPTION_FILES[0].rsplit(".", 1)[0]
    assert {("caption", f"id={image_id}"), ("train_epochs_001_002", ""), ("train_epochs_003_004", "")} <= planned
    assert not {job for job in planned if job[0] in ("mask", "tag", "audit", "ingest", "tiny_model")}


def test_kill_9_mid_chain_then_rerun_gives_the_same_weights(trained, tmp_path):
    ws = copy_workspace(trained[0], tmp_path / "ws")
    # the chain only (no samples, no LoRA); the target first: --config and --configfile take several values
    args = ["results/runs/killed/train/epoch-004.safetensors", "--config", "run=killed", "--configfile", "chain.yaml"]
    (ws / "chain.yaml").write_text("train:\n  epochs_per_job: 1\n")
    train = ws / "results/runs/killed/train"
    job = subprocess.Popen(
        [sys.executable, "-m", "snakemake", "--cores", "2", *args],
        cwd=ws,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 600
    while not (ws / "logs/runs/killed/train/epochs-003-003.log").exists():  # the third job has started
        assert job.poll() is None and time.time() < deadline
        time.sleep(0.5)
    time.sleep(4)  # into its model loading or first steps
    os.killpg(job.pid, signal.SIGKILL)
    job.wait()
    for weights in train.glob("epoch-*.safetensors"):  # whatever is there is whole
        load_file(str(weights))
    snakemake(ws, "--unlock", *args)
    ran = jobs_run(snakemake(ws, *args).stdout)
    assert ("train_epochs_004_004", "") in ran
    assert not {"train_epochs_001_001", "train_epochs_002_002"} & {rule for rule, _ in ran}  # at most one block redone
    assert not list(train.glob(".*"))
    for epoch in (1, 2, 3, 4):  # four jobs of one epoch = two jobs of two epochs, bit for bit
        chained = load_file(str(train / f"epoch-{epoch:03d}.safetensors"))
        reference = load_file(str(trained[0] / TRAIN / f"epoch-{epoch:03d}.safetensors"))
        assert all(torch.equal(chained[k], reference[k]) for k in reference), f"epoch {epoch}"
        # and the same bytes: safetensors' metadata order changes between processes unless we fix it
        assert (train / f"epoch-{epoch:03d}.safetensors").read_bytes() == (
            trained[0] / TRAIN / f"epoch-{epoch:03d}.safetensors"
        ).read_bytes()


def test_two_training_processes_give_the_weights_of_one_accumulating_two_batches(trained, tmp_path):
    """train.gpus: 2 with device cpu: the block's job starts two processes (DDP over gloo) from the rule
    script. tests/test_train.py says why the comparison can be bit for bit."""
    ws = copy_workspace(trained[0], tmp_path / "ws")
    (ws / "two.yaml").write_text("train:\n  gpus: 2\n")
    (ws / "accumulating.yaml").write_text("train:\n  grad_accum: 2\n")
    for run in ("two", "accumulating"):  # the first block of each run
        snakemake(
            ws,
            f"results/runs/{run}/train/epoch-002.safetensors",
            "--config",
            f"run={run}",
            "--configfile",
            f"{run}.yaml",
        )
    log = (ws / "logs/runs/two/train/epochs-001-002.log").read_text()
    assert "training on 2 processes (cpu)" in log and "2 batch(es) of 2 per step (2 processes x 1)" in log
    assert "epoch 2: train loss" in log  # rank 0 logs into the job's log
    two, accumulating = (ws / f"results/runs/{run}/train" for run in ("two", "accumulating"))
    for epoch in (1, 2):
        a = load_file(str(two / f"epoch-{epoch:03d}.safetensors"))
        b = load_file(str(accumulating / f"epoch-{epoch:03d}.safetensors"))
        assert all(torch.equal(a[k], b[k]) for k in a), f"epoch {epoch}"
        assert (two / f"epoch-{epoch:03d}.metrics.tsv").read_text() == (
            accumulating / f"epoch-{epoch:03d}.metrics.tsv"
        ).read_text()
    steps, _ = metrics(two / "epoch-001.metrics.tsv")
    demo_steps, _ = metrics(trained[0] / TRAIN / "epoch-001.metrics.tsv")
    assert len(steps) == -(-len(demo_steps) // 2)  # two batches a step
    assert json.loads((two / "epoch-002.state/trainer.json").read_text())["processes"] == 2


def test_export_target_writes_a_checkpoint_comfyui_and_diffusers_load(trained):
    from charlora import sdxl

    ws, _ = trained
    snakemake(ws, "results/runs/demo/export/epoch-004.safetensors")
    exported = sdxl.load_sdxl(ws / "results/runs/demo/export/epoch-004.safetensors")
    tuned = load_file(str(ws / TRAIN / "epoch-004.safetensors"))
    unet = exported.unet.state_dict()
    assert all(torch.equal(unet[k], tuned[k].to(torch.float16).float()) for k in tuned)  # exported in fp16


def test_the_run_ends_with_a_verified_lora_of_the_selected_epoch(trained):
    ws, result = trained
    run_lora, epoch_lora = (
        ws / "results/runs/demo/demo.safetensors",
        ws / "results/runs/demo/lora/epoch-004.safetensors",
    )
    assert run_lora.read_bytes() == epoch_lora.read_bytes()
    with safe_open(str(run_lora), "pt") as f:
        metadata, keys = f.metadata(), set(f.keys())
    assert len(keys) == 3 * 788 and all(k.startswith("lora_unet_") for k in keys)  # the demo's rank 8, conv rank 8
    assert (metadata["ss_network_dim"], metadata["modelspec.trigger_phrase"], metadata["charlora.epoch"]) == (
        "8",
        "mira",
        "4",
    )
    assert metadata["charlora.base_model_sha256"] == (ws / "results/models/base_model.sha256").read_text().strip()
    record = json.loads((ws / "results/runs/demo/lora/epoch-004.verify.json").read_text())
    assert record["loaded_by_diffusers"] == {"layers_in_file": 788, "layers_adapted": 788, "warnings": []}
    assert record["layers"]["left_out_by_min_diff"] == []  # the demo's small changes are all kept
    # rank 8 of layers 32-128 wide truncates for real: most, but not all, of the effect
    assert 0.5 < record["reproduced"] < 0.99
    assert 0 < record["layers"]["relative_error"]["median"] < 0.6
    assert (ws / "results/runs/demo/lora/epoch-004.verify.png").stat().st_size > 10_000
    assert "the run's LoRA: " in result.stdout and str(run_lora.resolve()) in result.stdout
    # the end of the run says where everything is
    summary = result.stdout.split("charlora: done. Where to look:\n", 1)[1]
    assert summary.startswith("  note            the demo trains a random tiny model: its samples are colour noise")
    assert "  the LoRA        results/runs/demo/demo.safetensors\n" in summary
    assert (
        "  dataset report  results/dataset/report.html  (19 of 25 files kept, 4 near-duplicates, 2 rejected" in summary
    )
    assert "  TensorBoard     .venv/bin/tensorboard --logdir results/runs\n" in summary
    assert "(selected: epoch 4, why: results/runs/demo/validate/selected.json)" in summary
    assert "  the runs        results/runs/demo/runs.tsv  (this run's record: results/runs/demo/run.yaml)\n" in summary


def test_any_saved_epochs_lora_on_request_and_a_lora_setting_reruns_only_extraction(trained, tmp_path):
    ws = copy_workspace(trained[0], tmp_path / "ws")
    ran = jobs_run(snakemake(ws, "results/runs/demo/lora/epoch-003.safetensors").stdout)
    assert ran == {("extract_lora", "eee=003")}
    (ws / "rank.yaml").write_text("lora:\n  rank: 4\n")
    assert (
        jobs_run(snakemake(ws, "-n", "--configfile", "rank.yaml").stdout)
        == {("extract_lora", "eee=004"), ("verify_lora", "eee=004"), ("run_lora", ""), ("all", "")} | RECORD
    )
    (ws / "third.yaml").write_text("lora:\n  epoch: 3\n")
    assert (
        jobs_run(snakemake(ws, "-n", "--configfile", "third.yaml").stdout)
        == {("verify_lora", "eee=003"), ("run_lora", ""), ("all", "")} | RECORD
    )


def test_lora_rebuilds_byte_identical(trained, tmp_path):
    ws = copy_workspace(trained[0], tmp_path / "ws")
    lora_dir = ws / "results/runs/demo/lora"
    before = snapshot(lora_dir)
    ran = jobs_run(snakemake(ws, "--forcerun", "extract_lora", "verify_lora").stdout)
    assert {("extract_lora", "eee=004"), ("verify_lora", "eee=004")} <= ran
    assert snapshot(lora_dir) == before


@pytest.fixture(scope="module")
def second_run(trained, tmp_path_factory):
    """A copy of the demo with a second run, `again`: the same training settings, its first job only,
    built after the tiny model, the captions and the split were made again; a real person with a
    consent record and a rights holder; its run record and its epoch 2 LoRA."""
    ws = copy_workspace(trained[0], tmp_path_factory.mktemp("again") / "ws")
    before = {
        "model": snapshot(ws / "results/models"),
        "captions": snapshot(ws / "results/dataset/captions"),
        "split": snapshot(ws / "results/dataset")["split.tsv"],
    }
    (ws / "consent.pdf").write_bytes(b"%PDF signed by the person pictured")
    (ws / "again.yaml").write_text(
        "run: again\nrationale: the demo again, from scratch\nsubject:\n  real_person: true\n"
        "  consent: consent.pdf\n  rights_holder: Mira Example\nlora:\n  rank: 4\n"
    )
    (ws / "results/models/tiny.safetensors").unlink()  # a second build of the model, in another process
    targets = [
        "results/runs/again/train/epoch-002.safetensors",
        "results/runs/again/run.yaml",
        "results/runs/again/lora/epoch-002.safetensors",
    ]
    result = snakemake(ws, *targets, "--configfile", "again.yaml", "--forcerun", "caption", "split")
    return ws, before, jobs_run(result.stdout)


def test_the_model_captions_split_and_training_rebuild_byte_identical(second_run):
    ws, before, ran = second_run
    dataset = ws / "results/dataset"
    assert {("tiny_model", ""), ("model_hash", ""), ("split", ""), ("train_epochs_001_002", "")} <= ran
    assert snapshot(ws / "results/models") == before["model"]
    assert snapshot(dataset / "captions") == before["captions"] and snapshot(dataset)["split.tsv"] == before["split"]
    again = {
        name: digest
        for name, digest in snapshot(ws / "results/runs/again/train").items()
        if not name.endswith(".snakemake_timestamp")
    }  # TensorBoard's files are beside train/, not in it
    assert sorted(again) == [
        "epoch-001.metrics.tsv",
        "epoch-001.safetensors",
        "epoch-002.metrics.tsv",
        "epoch-002.safetensors",
        "epoch-002.state/optimizer.safetensors",
        "epoch-002.state/trainer.json",
    ]
    assert again == {name: digest for name, digest in snapshot(ws / TRAIN).items() if name in again}


def test_the_run_record_and_the_comparison_of_runs(second_run):
    from charlora import loss_trend, run_record

    ws, _, _ = second_run
    record = yaml.safe_load((ws / "results/runs/again/run.yaml").read_text())
    consent_hash = hashlib.sha256(b"%PDF signed by the person pictured").hexdigest()
    assert (record["run"], record["rationale"], record["rights_holder"]) == (
        "again",
        "the demo again, from scratch",
        "Mira Example",
    )
    assert record["consent"] == {"record": "consent.pdf", "sha256": consent_hash}
    assert record["base_model"]["sha256"] == (ws / "results/models/base_model.sha256").read_text().strip()
    assert record["config"]["train"]["lr"] == 4e-6 and record["config"]["lora"]["rank"] == 4  # defaults and overrides
    kept = sorted(p.stem for p in (ws / "results/dataset/images").glob("*.png"))
    files = record["dataset"]["files"]
    assert sorted(files) == kept and record["dataset"]["photos"] == len(kept) == 19
    caption = ws / "results/dataset/captions" / f"{kept[0]}.txt"
    assert files[kept[0]]["caption"] == hashlib.sha256(caption.read_bytes()).hexdigest()
    assert record["packages"]["torch"] == torch.__version__.split("+")[0]
    # the LoRA carries the rights holder and the consent record's hash
    with safe_open(str(ws / "results/runs/again/lora/epoch-002.safetensors"), "pt") as f:
        metadata = f.metadata()
    assert metadata["charlora.rights_holder"] == "Mira Example" and metadata["charlora.consent_sha256"] == consent_hash
    # both runs side by side: the demo's record is the trained fixture's; again has trained 2 epochs, selected none
    header, rows = run_record.compare([run_record.read_run(ws / "results/runs", r) for r in ("demo", "again")])
    assert header[:5] == ["run", "rationale", *run_record.LOSS_COLUMNS, "selected epoch"]
    assert set(header[5:]) == {"lora.rank", "subject.consent", "subject.real_person", "subject.rights_holder"}
    demo_losses = {e: metrics(ws / TRAIN / f"epoch-{e:03d}.metrics.tsv")[1]["mean"] for e in (1, 2, 3, 4)}
    best = min(demo_losses, key=demo_losses.get)
    smoothed = loss_trend.smooth(demo_losses)
    low = min(smoothed, key=smoothed.get)  # where the selection starts: the same epoch in selected.json
    assert (
        low
        == json.loads((ws / "results/runs/demo/validate/selected.json").read_text())["lowest_validation_loss_smoothed"]
    )
    assert rows[0][:5] == [
        "demo",
        "The demo, to see every stage run on the CPU in minutes.",
        f"{demo_losses[best]:.6g} (epoch {best})",
        f"{smoothed[low]:.6g} (epoch {low})",
        "4 (scorecard)",
    ]
    assert rows[1][4] == "not yet" and rows[1][2].endswith(f"(epoch {min((1, 2), key=demo_losses.get)})")
    shown = (ws / "results/runs/demo/runs.tsv").read_text().splitlines()  # written when the demo finished
    assert shown[1].startswith("demo\tThe demo")
