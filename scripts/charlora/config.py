"""Validate the workflow config against config/schema.yaml and fill in the schema's defaults.

The Snakefile calls `validate_config` before any rule is defined, so a wrong key stops the run
before any job, with a message that names the key (`ingest.min_side: ...`).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

# jsonschema (0.07 s to import) is imported where a config is validated: per-photo jobs import this
# module only for ConfigError and require_file.
if TYPE_CHECKING:
    import jsonschema


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

    import jsonschema

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
        raise ConfigError(
            f"{key}: {file} does not exist. Put {what} there (charlora never downloads "
            f"models) or change {key} in config/config.yaml"
        )
    return file


PICKLE_SUFFIXES = {".ckpt", ".pt", ".pth", ".bin", ".pkl"}


def pickle_refusal(path: Path) -> str | None:
    """Why a model file is not opened ("<path> " + this), where it is a Python pickle (by its suffix):
    unpickling runs code hidden in the file. None for any other file. Every reader of model files asks."""
    if path.suffix.lower() in PICKLE_SUFFIXES:
        return (
            f"is a Python pickle ({path.suffix}); loading one can run code hidden in it. "
            "Use the model's .safetensors file (or convert it once, in a sandbox)"
        )
    return None


def base_model_path(value: str) -> Path:
    """config base_model: an existing .safetensors file or diffusers folder (checked fully by the job)."""
    path = Path(value).expanduser()
    if refusal := pickle_refusal(path):
        raise ConfigError(f"base_model: {path} {refusal}")
    if not path.exists():
        raise ConfigError(
            f"base_model: {path} does not exist. Give the path of an SDXL .safetensors file or "
            "diffusers folder (charlora never downloads models), or `tiny` (random) or `miniature` (pretrained on"
            " drawn people) for the demo's built-in models"
        )
    if path.is_file() and path.suffix.lower() != ".safetensors":
        raise ConfigError(f"base_model: {path} is not a .safetensors file")
    return path


def _message(error: jsonschema.ValidationError) -> str:
    # a subschema may carry `errorMessage:` to say in words what jsonschema says in types
    message = error.schema.get("errorMessage", error.message).strip()
    if error.validator == "type" and error.validator_value == "boolean" and isinstance(error.instance, str):
        message += " (with --config, Snakemake reads only True and False as booleans)"
    return f"  {_key_of(error)}: {message}"


def _number_or_boolean(text: str):
    for convert in (int, float):  # float, not YAML: YAML 1.1 reads 1e-5 (no dot) as a string
        try:
            return convert(text)
        except ValueError:
            pass
    parsed = yaml.safe_load(text) if text.strip().lower() in ("true", "false", "yes", "no", "on", "off") else None
    return parsed if isinstance(parsed, bool) else None


def coerce_strings(value, schema: dict, root: dict):
    """`value` with the strings that `--config 'train={epochs: 6}'` makes of every nested value (Snakemake
    reads only top-level values as numbers) turned into what the schema asks for: '6' -> 6, 'true' -> True,
    '1e-5' -> 1e-05. A string the schema accepts as it is, or one that reads as nothing it accepts, stays."""
    schema = dict(schema, definitions=root.get("definitions", {}))
    if "$ref" in schema:
        schema = dict(root["definitions"][schema["$ref"].rsplit("/", 1)[-1]], definitions=schema["definitions"])
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        return {k: coerce_strings(v, properties[k], root) if k in properties else v for k, v in value.items()}
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [coerce_strings(v, schema["items"], root) for v in value]
    if isinstance(value, str):
        import jsonschema

        validator = jsonschema.Draft7Validator(schema)
        if not validator.is_valid(value):
            parsed = _number_or_boolean(value)
            if parsed is not None and validator.is_valid(parsed):
                return parsed
    return value


def key_source(path: list, configfiles: list[Path], overrides: dict | None) -> str:
    """Where a config key was set: the --config values, else the last config file that has it."""

    def has(tree, keys):
        for key in keys:
            if not isinstance(tree, dict) or key not in tree:
                return False
            tree = tree[key]
        return True

    if overrides and has(overrides, path):
        return "--config"
    for file in reversed(configfiles):
        try:
            if has(yaml.safe_load(Path(file).read_text(encoding="utf-8")), path):
                return str(file)
        except (OSError, yaml.YAMLError):
            continue
    return ""


GUIDE_CONSENT = (
    "If the model is based on a real individual, written consent is mandatory. This consent must "
    "include permission to use their images, to train the model, and to generate content using "
    "their likeness."
)


def check_consent(subject: dict) -> Path | None:
    """subject.real_person: true needs subject.consent naming a file that exists and is not empty (the
    guide's ethical requirement, quoted in the message). Returns the consent record's path."""
    if not subject["real_person"]:
        return None
    path = Path(subject["consent"]).expanduser()
    problem = (
        "does not exist"
        if not path.exists()
        else "is not a file"
        if not path.is_file()
        else "is empty"
        if path.stat().st_size == 0
        else None
    )
    if problem:
        raise ConfigError(
            f"subject.consent: {path} {problem}. subject.real_person is true, and the guide says: "
            f'"{GUIDE_CONSENT}" Put the written consent record (or a copy of it) at that path.'
        )
    return path


def train_conflicts(train: dict) -> list[tuple[str, str, str]]:
    """Combinations of `train` settings that cannot train, each as (the key to change, the key it clashes
    with, why): the schema checks each key alone; these need two. validate_config stops a run on them
    before any job, and the training job checks them again (train.Settings.check)."""
    optimizer, precision, fused = train["optimizer"], train["precision"], train["fused_backward"]
    conflicts = []
    if fused and optimizer != "adafactor":
        conflicts.append(
            (
                "fused_backward",
                "optimizer",
                f"works with train.optimizer: adafactor only (got {optimizer}); set it to false",
            )
        )
    if fused and precision == "fp16":
        conflicts.append(
            (
                "fused_backward",
                "precision",
                "cannot be used with train.precision: fp16 (the loss scaler needs all gradients before any "
                "step); use precision bf16",
            )
        )
    if precision == "bf16" and optimizer != "adafactor":
        conflicts.append(
            (
                "precision",
                "optimizer",
                f"bf16 keeps the weights in bf16, and only adafactor rounds its updates stochastically; "
                f"{optimizer} would lose 4e-6 updates. Use precision fp16 (fp32 weights) with it",
            )
        )
    return conflicts


def validate_config(
    config: dict, schema_path: str | Path, configfiles: list[Path] = (), overrides: dict | None = None
) -> dict:
    """Fill defaults into `config` in place and check it; raise ConfigError naming every bad key and the
    file it came from (`configfiles` in the order Snakemake merged them; `overrides`: the --config values)."""
    schema = yaml.safe_load(Path(schema_path).read_text(encoding="utf-8"))
    config.update(coerce_strings(config, schema, schema))
    import jsonschema

    validator = _with_defaults(jsonschema.Draft7Validator)(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    lines = []
    for error in errors:
        source = key_source(list(error.absolute_path), list(configfiles), overrides)
        lines.append(_message(error) + (f"  [set in {source}]" if source else ""))
    if not errors:
        for key, other, why in train_conflicts(config["train"]):
            sources = [(k, key_source(["train", k], list(configfiles), overrides)) for k in (key, other)]
            where = "; ".join(f"train.{k} set in {source}" for k, source in sources if source)
            lines.append(f"  train.{key}: {why}" + (f"  [{where}]" if where else ""))
    if lines:
        files = ", ".join(map(str, configfiles)) or "config/config.yaml"
        raise ConfigError(
            f"the config does not match {schema_path}:\n"
            + "\n".join(lines)
            + f"\nFix these keys where they are set ({files}, or the --config values) and run again."
        )
    return config


def schema_defaults(schema_path: str | Path = SCHEMA) -> dict:
    """The schema's defaults alone, filled as the validator fills them (a missing property gets its
    default, then its own properties theirs), without checking anything: for a machine without
    jsonschema (benchmarks/gpu_check.py). tests/test_config.py checks that it equals `defaults()`."""

    def fill(instance, node: dict) -> None:
        if not isinstance(instance, dict):
            return
        for name, subschema in node.get("properties", {}).items():
            if "default" in subschema and name not in instance:
                instance[name] = copy.deepcopy(subschema["default"])
            if name in instance:
                fill(instance[name], subschema)

    config: dict = {}
    fill(config, yaml.safe_load(Path(schema_path).read_text(encoding="utf-8")))
    return config


def defaults(schema_path: str | Path = SCHEMA) -> dict:
    """The whole config as the schema's defaults make it (for code that runs outside the workflow:
    tests and benchmarks); the defaults are written in the schema only."""
    return validate_config({}, schema_path)
