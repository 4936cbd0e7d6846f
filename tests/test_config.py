"""The config schema fills defaults and names the key that is wrong; the library map is complete."""

import re
from pathlib import Path

import pytest
import yaml

from charlora.config import ConfigError, check_consent, validate_config

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "config" / "schema.yaml"


def test_shipped_config_is_valid_and_defaults_are_filled():
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    validate_config(config, SCHEMA)
    assert config["dataset"] == "demo"
    assert config["dedup"] == {"method": "phash", "max_distance": 22, "mirrors": "duplicate"}
    assert config["ingest"]["min_side"] == 256 and config["ingest"]["max_megapixels"] == 100
    assert config["ingest"]["framing"]["targets"]["mid_shot"] == [40, 50]


def test_empty_config_gets_the_guides_defaults():
    config = validate_config({}, SCHEMA)
    assert config["ingest"]["min_side"] == 768 and config["strict"] is False


@pytest.mark.parametrize("config, key", [
    ({"ingest": {"min_side": "abc"}}, "ingest.min_side: 'abc' is not of type 'integer'"),
    ({"ingest": {"min_sid": 3}}, "ingest: Additional properties are not allowed ('min_sid' was unexpected)"),
    ({"dedup": {"method": "md5"}}, "dedup.method: 'md5' is not one of"),
    ({"strict": "maybe"}, "strict: 'maybe' is not of type 'boolean' (with --config, Snakemake reads only True"),
    ({"subject": {"real_person": True}}, "subject.consent: subject.real_person is true, so the written consent"),
])
def test_bad_key_is_named(config, key):
    with pytest.raises(ConfigError) as error:
        validate_config(config, SCHEMA)
    assert key in str(error.value)


def test_nested_config_values_given_as_strings_take_the_schemas_type():
    """`--config 'train={epochs: 6, lr: 1e-5}'` reaches the workflow as strings: they are read as the
    schema's types; a string the schema wants stays a string."""
    config = validate_config({"train": {"epochs": "6", "lr": "1e-5", "ema_decay": "0"}, "strict": "true",
                              "run": "007", "validate": {"negative_prompt": "3"}}, SCHEMA)
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


def test_the_library_map_names_every_module():
    """scripts/charlora/__init__.py maps each rules/<stage>.smk to its modules: none may be left out."""
    import charlora
    package = Path(charlora.__file__).parent
    words = set(re.findall(r"\w+", charlora.__doc__))
    assert sorted(p.stem for p in package.glob("*.py") if p.stem != "__init__" and p.stem not in words) == []
