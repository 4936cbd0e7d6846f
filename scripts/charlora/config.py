"""Validate the workflow config against config/schema.yaml and fill in the schema's defaults.

The Snakefile calls `validate_config` before any rule is defined, so a wrong key stops the run
before any job, with a message that names the key (`ingest.min_side: ...`).
"""

from __future__ import annotations

import copy
from pathlib import Path

import jsonschema
import yaml


SCHEMA = Path(__file__).resolve().parents[2] / "config" / "schema.yaml"


class ConfigError(ValueError):
    pass


def _with_defaults(validator_class):
    """A validator that fills each missing property with its schema default (then validates it)."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, subschema in properties.items():
                if "default" in subschema and name not in instance:
                    instance[name] = copy.deepcopy(subschema["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


def _key_of(error: jsonschema.ValidationError) -> str:
    path = ".".join(str(p) for p in error.absolute_path)
    return path or "(top level)"


def require_file(path: str | None, key: str, what: str) -> Path:
    """A local file the config names (a model): it must exist; charlora never downloads one."""
    if not path:
        raise ConfigError(f"{key} is not set: give the path of {what} (charlora never downloads models)")
    file = Path(path).expanduser()
    if not file.is_file():
        raise ConfigError(f"{key}: {file} does not exist. Put {what} there (charlora never downloads "
                          f"models) or change {key} in config/config.yaml")
    return file


PICKLE_SUFFIXES = {".ckpt", ".pt", ".pth", ".bin", ".pkl"}


def pickle_refusal(path: Path) -> str | None:
    """Why a model file is not opened ("<path> " + this), where it is a Python pickle (by its suffix):
    unpickling runs code hidden in the file. None for any other file. Every reader of model files asks."""
    if path.suffix.lower() in PICKLE_SUFFIXES:
        return (f"is a Python pickle ({path.suffix}); loading one can run code hidden in it. "
                "Use the model's .safetensors file (or convert it once, in a sandbox)")
    return None


def base_model_path(value: str) -> Path:
    """config base_model: an existing .safetensors file or diffusers folder (checked fully by the job)."""
    path = Path(value).expanduser()
    if refusal := pickle_refusal(path):
        raise ConfigError(f"base_model: {path} {refusal}")
    if not path.exists():
        raise ConfigError(f"base_model: {path} does not exist. Give the path of an SDXL .safetensors file or "
                          "diffusers folder (charlora never downloads models), or `tiny` for the demo model")
    if path.is_file() and path.suffix.lower() != ".safetensors":
        raise ConfigError(f"base_model: {path} is not a .safetensors file")
    return path


def _message(error: jsonschema.ValidationError) -> str:
    # a subschema may carry `errorMessage:` to say in words what jsonschema says in types
    message = error.schema.get("errorMessage", error.message).strip()
    if error.validator == "type" and error.validator_value == "boolean" and isinstance(error.instance, str):
        message += " (with --config, Snakemake reads only True and False as booleans)"
    return f"  {_key_of(error)}: {message}"


def validate_config(config: dict, schema_path: str | Path) -> dict:
    """Fill defaults into `config` in place and check it; raise ConfigError naming every bad key."""
    schema = yaml.safe_load(Path(schema_path).read_text(encoding="utf-8"))
    validator = _with_defaults(jsonschema.Draft7Validator)(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        raise ConfigError(
            f"the config does not match {schema_path}:\n" + "\n".join(map(_message, errors))
            + "\nFix these keys in config/config.yaml (or the --config values) and run again."
        )
    return config


def defaults(schema_path: str | Path = SCHEMA) -> dict:
    """The whole config as the schema's defaults make it (for code that runs outside the workflow:
    tests and benchmarks); the defaults are written in the schema only."""
    return validate_config({}, schema_path)
