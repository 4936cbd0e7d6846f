"""The config schema fills defaults and names the key that is wrong."""

from pathlib import Path

import pytest
import yaml

from charlora.config import ConfigError, validate_config

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "config" / "schema.yaml"


def test_shipped_config_is_valid_and_defaults_are_filled():
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    validate_config(config, SCHEMA)
    assert config["dataset"] == "demo"
    assert config["dedup"] == {"method": "phash", "max_distance": 10}
    assert config["ingest"]["min_side"] == 256 and config["ingest"]["max_megapixels"] == 100
    assert config["ingest"]["framing"]["targets"]["mid_shot"] == [40, 50]


def test_empty_config_gets_the_guides_defaults():
    config = validate_config({}, SCHEMA)
    assert config["ingest"]["min_side"] == 768 and config["strict"] is False


@pytest.mark.parametrize("config, key", [
    ({"ingest": {"min_side": "abc"}}, "ingest.min_side: 'abc' is not of type 'integer'"),
    ({"ingest": {"min_sid": 3}}, "ingest: Additional properties are not allowed ('min_sid' was unexpected)"),
    ({"dedup": {"method": "md5"}}, "dedup.method: 'md5' is not one of"),
    ({"strict": "true"}, "strict: 'true' is not of type 'boolean' (with --config, Snakemake reads only True"),
    ({"subject": {"real_person": True}}, "subject.consent: subject.real_person is true, so the written consent"),
])
def test_bad_key_is_named(config, key):
    with pytest.raises(ConfigError) as error:
        validate_config(config, SCHEMA)
    assert key in str(error.value)
