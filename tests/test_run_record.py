"""The run record (run.yaml) and the table of runs, on records written here."""

import hashlib

import yaml

from charlora import config, run_record


def write_run(root, name, changes, val_losses, selected=None):
    settings = config.defaults()
    settings["run"], settings["rationale"] = name, f"why {name}"
    for key, value in changes.items():
        section, leaf = key.split(".")
        settings[section][leaf] = value
    run_dir = root / name
    (run_dir / "train").mkdir(parents=True)
    photo = root / f"{name}.png"
    photo.write_bytes(b"png")
    (root / "split.tsv").write_text("id\tsplit\n")
    record = run_record.make_record(
        config=settings,
        dataset="photos",
        files={"a": {"image": photo}},
        split=root / "split.tsv",
        base_model="base.safetensors",
        base_hash="ab" * 32,
        consent=None,
        checkout=root,
    )
    run_record.write_record(run_dir / "run.yaml", record)
    for epoch, loss in val_losses.items():
        (run_dir / "train" / f"epoch-{epoch:03d}.metrics.tsv").write_text(
            f"kind\tstep\ttimestep\tloss\tlr\ntrain\t1\t\t0.5\t1e-05\nval\t\t62\t{loss * 3}\t\nval\t\tmean\t{loss}\t\n"
        )
    if selected:
        (run_dir / "validate").mkdir()
        (run_dir / "validate" / "selected.json").write_text(f'{{"epoch": {selected}}}')
    return run_dir


def test_runs_side_by_side_show_only_the_settings_that_differ(tmp_path):
    root = tmp_path / "runs"
    write_run(root, "base", {}, {1: 0.3, 2: 0.2, 3: 0.25}, selected=2)
    write_run(root, "low lr", {"train.lr": 1e-6, "lora.rank": 32}, {1: 0.31, 2: 0.29})
    write_run(root, "fixed", {"lora.epoch": 1}, {1: 0.4})
    (root / "killed").mkdir()  # a run without a record (its first job never finished): left out
    table = tmp_path / "runs.tsv"
    runs = run_record.write_comparison(table, root)
    assert [r.run for r in runs] == ["base", "fixed", "low lr"]
    rows = [line.split("\t") for line in table.read_text().splitlines()]
    # raw and smoothed minima under their own names: base's raw low is epoch 2, but the line through its
    # 3 epochs (0.275, 0.25, 0.225) is lowest at epoch 3, where the selection starts
    assert rows == [
        ["run", "rationale", "lowest validation loss (raw)", "lowest validation loss (smoothed)", "selected epoch"]
        + ["lora.epoch", "lora.rank", "train.lr"],
        ["base", "why base", "0.2 (epoch 2)", "0.225 (epoch 3)", "2 (scorecard)", "auto", "64", "4e-06"],
        ["fixed", "why fixed", "0.4 (epoch 1)", "0.4 (epoch 1)", "1 (lora.epoch)", "1", "64", "4e-06"],
        ["low lr", "why low lr", "0.29 (epoch 2)", "0.29 (epoch 2)", "not yet", "auto", "32", "1e-06"],
    ]


def test_the_record_is_the_same_bytes_each_time_and_changes_with_any_file(tmp_path):
    run_dir = write_run(tmp_path / "one", "r", {}, {})
    again = write_run(tmp_path / "two", "r", {}, {})
    first = (run_dir / "run.yaml").read_text()
    assert first == (again / "run.yaml").read_text()
    record = yaml.safe_load(first)
    assert list(record)[:5] == ["run", "rationale", "rights_holder", "consent", "base_model"]
    assert record["config"] == yaml.safe_load(yaml.safe_dump(record["config"]))  # the effective config, whole
    assert record["dataset"]["files"]["a"]["image"] == hashlib.sha256(b"png").hexdigest()
    assert record["charlora"] == "unknown (not a git checkout)" and record["packages"]["torch"].startswith("2.")
    before = record["dataset"]["sha256"]
    (tmp_path / "one" / "r.png").write_bytes(b"png, edited")
    changed = run_record.dataset_fingerprint(
        {"a": {"image": tmp_path / "one" / "r.png"}}, tmp_path / "one" / "split.tsv"
    )
    assert changed["sha256"] != before
