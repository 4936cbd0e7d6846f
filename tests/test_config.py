"""The config schema fills defaults and names the key that is wrong; the library map is complete."""

import re
from pathlib import Path

import pytest
import yaml

from charlora.config import ConfigError, check_consent, schema_defaults, validate_config

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "config" / "schema.yaml"


def test_shipped_config_is_the_guides_run_and_the_demo_file_makes_it_the_demo():
    """config.yaml: the guide's settings for a real run, with dataset: demo; config/demo.yaml, which the
    Snakefile applies over it for the demo, holds the demo's small settings; the quick-look file too is valid."""
    from snakemake.utils import update_config

    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    demo = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    update_config(demo, yaml.safe_load((REPO / "config" / "demo.yaml").read_text()))
    validate_config(config, SCHEMA)
    validate_config(demo, SCHEMA)
    assert config["dataset"] == demo["dataset"] == "demo"
    assert config["dedup"] == {"method": "phash", "max_distance": 22, "mirrors": "duplicate"}
    assert config["ingest"]["min_side"] == 768 and config["ingest"]["max_megapixels"] == 100
    assert config["ingest"]["framing"]["targets"]["mid_shot"] == [40, 50]
    guide = (
        config["train"]["epochs"],
        config["train"]["resolution"],
        config["train"]["precision"],
        config["lora"]["rank"],
        config["validate"]["resolution"],
        config["validate"]["steps"],
    )
    assert guide == (100, 1024, "bf16", 64, 1024, 30)
    assert (config["captions"]["tagger"], config["masks"]["method"]) == ("wd14", "rembg") and config["select"]["clip"]
    assert (demo["base_model"], demo["captions"]["tagger"], demo["select"]["clip"]) == ("miniature", "demo", None)
    assert (demo["train"]["epochs"], demo["train"]["device"], demo["ingest"]["min_side"]) == (12, "cpu", 256)
    # the demo's intent replaces the example's lists one for one (a key only in config.yaml would leak in)
    assert set(demo["intent"]) == set(config["intent"])
    quick = yaml.safe_load((REPO / "config" / "quick-look.yaml").read_text())
    update_config(config, quick)
    assert validate_config(config, SCHEMA)["captions"]["tagger"] == "none"


def test_empty_config_gets_the_guides_defaults():
    config = validate_config({}, SCHEMA)
    assert config["ingest"]["min_side"] == 768 and config["strict"] is False
    assert schema_defaults(SCHEMA) == config  # the same, filled without jsonschema (for the GPU check)


@pytest.mark.parametrize(
    "config, key",
    [
        ({"ingest": {"min_side": "abc"}}, "ingest.min_side: 'abc' is not of type 'integer'"),
        ({"ingest": {"min_sid": 3}}, "ingest: Additional properties are not allowed ('min_sid' was unexpected)"),
        ({"dedup": {"method": "md5"}}, "dedup.method: 'md5' is not one of"),
        ({"strict": "maybe"}, "strict: 'maybe' is not of type 'boolean' (with --config, Snakemake reads only True"),
        ({"subject": {"real_person": True}}, "subject.consent: subject.real_person is true, so the written consent"),
    ],
)
def test_bad_key_is_named(config, key):
    with pytest.raises(ConfigError) as error:
        validate_config(config, SCHEMA)
    assert key in str(error.value)


def test_nested_config_values_given_as_strings_take_the_schemas_type():
    """`--config 'train={epochs: 6, lr: 1e-5}'` reaches the workflow as strings: they are read as the
    schema's types; a string the schema wants stays a string."""
    config = validate_config(
        {
            "train": {"epochs": "6", "lr": "1e-5", "ema_decay": "0"},
            "strict": "true",
            "run": "007",
            "validate": {"negative_prompt": "3"},
        },
        SCHEMA,
    )
    assert (config["train"]["epochs"], config["train"]["lr"], config["train"]["ema_decay"]) == (6, 1e-5, 0)
    assert config["strict"] is True and config["run"] == "007" and config["validate"]["negative_prompt"] == "3"
    assert config["lora"]["epoch"] == "auto"
    assert validate_config({"lora": {"epoch": "3"}}, SCHEMA)["lora"]["epoch"] == 3


def test_an_error_names_the_file_or_the_command_line_that_set_the_key(tmp_path):
    base, override = tmp_path / "config.yaml", tmp_path / "my run.yaml"
    base.write_text("train:\n  epochs: 4\n  lr: 0.001\n")
    override.write_text("train:\n  epochs: six\n")
    with pytest.raises(ConfigError) as error:
        validate_config({"train": {"epochs": "six", "lr": "fast"}}, SCHEMA, [base, override], {"train": {"lr": "fast"}})
    assert f"train.epochs: 'six' is not of type 'integer'  [set in {override}]" in str(error.value)
    assert "train.lr: 'fast' is not of type 'number'  [set in --config]" in str(error.value)


def test_settings_that_cannot_train_together_stop_the_run_before_any_job(tmp_path):
    """Each key is valid alone; the pair is not. The training job would fail only when it starts (hours
    into a queue on a cluster), so validation names both keys and where each was set."""
    run = tmp_path / "run.yaml"
    run.write_text("train:\n  optimizer: adamw\n  precision: fp16\n")
    with pytest.raises(ConfigError) as error:
        validate_config({"train": {"optimizer": "adamw", "precision": "fp16"}}, SCHEMA, [run])
    assert (
        "train.fused_backward: works with train.optimizer: adafactor only (got adamw); set it to false"
        f"  [train.optimizer set in {run}]" in str(error.value)
    )
    with pytest.raises(ConfigError) as error:
        validate_config({"train": {"optimizer": "adamw", "fused_backward": False}}, SCHEMA, [run], {})
    assert "train.precision: bf16 keeps the weights in bf16" in str(error.value)
    assert "fused_backward" not in str(error.value)
    fine = {"train": {"optimizer": "adamw", "fused_backward": False, "precision": "fp16"}}
    assert validate_config(fine, SCHEMA)["train"]["optimizer"] == "adamw"


def test_a_real_person_needs_a_consent_record_that_exists_and_is_not_empty(tmp_path):
    record = tmp_path / "consent (signed).pdf"
    assert check_consent({"real_person": False, "consent": None}) is None
    for problem in ("does not exist", "is empty"):
        if problem == "is empty":
            record.write_bytes(b"")
        with pytest.raises(ConfigError) as error:
            check_consent({"real_person": True, "consent": str(record)})
        assert f"subject.consent: {record} {problem}" in str(error.value)
        assert "written consent is mandatory" in str(error.value)  # the guide's words
    record.write_bytes(b"%PDF signed")
    assert check_consent({"real_person": True, "consent": str(record)}) == record


def test_the_library_map_lists_every_module_under_one_stage():
    """scripts/charlora/__init__.py maps each rules/<stage>.smk to its modules, and lists those that serve
    every stage: each module is listed exactly once (words in parentheses and backquotes are remarks)."""
    import charlora

    package = Path(charlora.__file__).parent
    listed: dict[str, list[str]] = {}
    for group in re.split(r"\n(?=rules/\w+\.smk|every stage)", charlora.__doc__)[1:]:
        stage, body = re.match(r"(rules/\w+\.smk|every stage)\s+(.*)", group, re.S).groups()
        for name in re.findall(r"\w+", re.sub(r"\([^)]*\)|`[^`]*`", "", body)):
            listed.setdefault(name, []).append(stage)
    modules = sorted(p.stem for p in package.glob("*.py") if p.stem != "__init__")
    assert {m: listed.get(m, []) for m in modules if len(listed.get(m, [])) != 1} == {}
    assert sorted(listed) == modules  # and nothing listed that is not a module


def schema_keys(node: dict, prefix: str = "") -> list[str]:
    """Every key of the schema by dotted path (`intent`, free-form lists, counts as one key)."""
    if "properties" not in node or prefix == "intent":
        return [prefix]
    return [
        k
        for name, child in node["properties"].items()
        for k in schema_keys(child, f"{prefix}.{name}" if prefix else name)
    ]


def test_every_setting_reruns_the_stages_that_read_it_or_none():
    """The rerun-trigger table (charlora/triggers.py): every key of the schema is a trigger (of one stage
    or more), a key of the plan, or a scheduler request, exactly one of the three; every entry of the
    table names a key or section of the schema; the typed settings read exactly their stage's keys."""
    from charlora import lora, plan, sample, train, triggers

    keys = schema_keys(yaml.safe_load(SCHEMA.read_text()))
    entries = {e for stage in triggers.TRIGGERS.values() for e in stage if e != triggers.EVERY_KEY}
    places = {"trigger": entries, "plan": set(triggers.PLAN), "scheduler": set(triggers.SCHEDULER)}
    for key in keys:
        found = [name for name, group in places.items() if any(triggers.covers(key, e) for e in group)]
        assert len(found) == 1, f"{key}: in {found or 'no place'} of charlora/triggers.py"
    for entry in set().union(*places.values()):
        assert any(triggers.covers(key, entry) for key in keys), f"{entry}: not a key of config/schema.yaml"

    def section_keys(stage, section):
        return {e.removeprefix(section + ".") for e in triggers.TRIGGERS[stage] if e.startswith(section + ".")}

    assert set(sample.Settings.__dataclass_fields__) == section_keys("sample_epoch", "validate")
    assert (
        set(lora.Settings.__dataclass_fields__)
        == section_keys("extract_lora", "lora")
        == section_keys("verify_lora", "lora")
    )
    assert set(train.Settings.__dataclass_fields__) == set(plan.WEIGHT_KEYS) | {"device"}  # device: no trigger
    assert "train.device" in triggers.READ_WITHOUT_RERUN["train"] and "train.device" in triggers.PLAN


def test_a_job_gets_only_the_settings_it_reads():
    """triggers.settings: the stage's keys, nested as in the config; never a scheduler key; an option not
    chosen and the tagger where a CLIP model scores adherence left out; the run record all but the
    scheduler's keys and the options not chosen, in sorted order."""
    from charlora import config as config_module
    from charlora import triggers

    config = config_module.defaults()
    config["masks"]["method"], config["select"]["clip"] = "colour_key", "models/clip"
    assert triggers.settings(config, "select_epoch") == {"select": {"copy_bits": config["select"]["copy_bits"]}}
    assert triggers.settings(config, "mask")["masks"].keys() == {
        "method",
        "colour_key",
        "threshold",
        "fill_holes",
        "dilate_px",
        "feather_px",
        "coverage_range",
    }
    assert "captions" not in triggers.settings(config, "score_epoch")
    config["select"]["clip"] = ""
    assert triggers.settings(config, "score_epoch")["captions"].keys() == {"tagger", "wd14", "vocabulary"}
    record = triggers.settings(config, "run_record")
    assert "gpu_jobs" not in record and "mem_mb" not in record["train"] and record["train"]["epochs"] == 100
    assert "rembg" not in record["masks"] and "vlm" not in record["captions"] and list(record) == sorted(record)
    for stage in triggers.TRIGGERS:
        assert "mem_mb" not in str(triggers.settings(config, stage)), stage


def test_the_model_files_a_config_names_are_listed_checked_and_described(tmp_path):
    """snakemake models and the start of a run read the same list: what each file is for, whether it is
    in place (size, SHA-256), and where to get a missing one; the dataset stage needs only its own."""
    import hashlib

    from charlora import model_files

    config = validate_config(
        {
            "base_model": str(tmp_path / "sdxl.safetensors"),
            "masks": {"rembg": {"model": str(tmp_path / "mask model.onnx")}},
            "captions": {"wd14": {"folder": str(tmp_path / "tagger")}},
            "select": {"clip": str(tmp_path / "clip")},
        },
        SCHEMA,
    )
    assert [m.key for m in model_files.model_files(config)] == [
        "masks.rembg.model",
        "captions.wd14.folder",
        "base_model",
        "select.clip",
    ]
    (tmp_path / "mask model.onnx").write_bytes(b"onnx" * 100)
    (tmp_path / "tagger").mkdir()
    (tmp_path / "tagger" / "model.onnx").write_bytes(b"x" * 1000)
    (tmp_path / "tagger" / "selected_tags.csv").write_text("tag_id,name\n")
    model_files.check_all(config, {"dataset"})  # the dataset stage's two are in place
    with pytest.raises(ConfigError) as missing:
        model_files.check_all(config, {"dataset", "run"})
    assert "base_model: " in str(missing.value) and "Where to get it: SDXL base 1.0" in str(missing.value)
    table = model_files.report(config)
    assert f"sha256 of mask model.onnx: {hashlib.sha256(b'onnx' * 100).hexdigest()}" in table
    assert "in place: 2 file(s)" in table and "MISSING: select.clip: " in table
    assert table.endswith(
        "2 of 4 model files in place; charlora never downloads them: put each where the config "
        "says, or change the key in config/config.yaml."
    )
    demo = validate_config(
        {
            "base_model": "tiny",
            "captions": {"tagger": "demo"},
            "masks": {"method": "colour_key"},
            "select": {"clip": "tiny"},
        },
        SCHEMA,
    )
    assert model_files.report(demo).startswith("No model files to supply")


def test_the_gpu_requirements_are_the_cpu_ones_with_onnxruntime_gpu():
    def pins(name):
        text = (REPO / "envs" / name).read_text()
        return [line for line in text.splitlines() if line and not line.startswith("#")]

    cpu, gpu = pins("requirements.txt"), pins("requirements-gpu.txt")
    swapped = {"rembg[cpu]==2.0.86": "rembg[gpu]==2.0.86", "onnxruntime==1.32.0": "onnxruntime-gpu==1.31.1"}
    assert gpu == [swapped.get(line, line) for line in cpu]
    assert not any(line.startswith("onnxruntime==") for line in gpu)  # the two cannot be installed together
