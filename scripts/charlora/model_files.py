"""The local model files a config names: what each is for, whether it is in place, and where to get it.

charlora never downloads a model. `snakemake models` prints this table (rule `models`), and the start
of a run checks the same list (rules/common.smk `check_models`): the dataset stage needs the mask and
tagger models, a run beyond it the SDXL checkpoint and the CLIP folder too. Standard library only: it
runs in the Snakemake process.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from charlora.config import ConfigError, base_model_path, require_file
from charlora.hashing import file_sha256

# Where the models the guide's run uses come from (charlora downloads nothing: fetch them yourself,
# and read each licence). Sizes are the published files', approximately.
SOURCES = {
    "base_model": "SDXL base 1.0: huggingface.co/stabilityai/stable-diffusion-xl-base-1.0, file "
    "sd_xl_base_1.0.safetensors (6.9 GB; CreativeML Open RAIL++-M licence)",
    "masks.rembg.model": "BiRefNet general (rembg session birefnet-general): BiRefNet-general-epoch_244.onnx "
    "from github.com/danielgatis/rembg/releases (about 0.9 GB; MIT licence); or "
    "BRIA RMBG 1.4 (session bria-rmbg; non-commercial licence)",
    "captions.wd14.folder": "WD EVA02-Large tagger v3: huggingface.co/SmilingWolf/wd-eva02-large-tagger-v3, "
    "files model.onnx and selected_tags.csv in one folder (about 1.2 GB; Apache-2.0)",
    "captions.vlm.folder": "a vision-language model folder that transformers loads (e.g. a Qwen2-VL or "
    "Florence-2 checkpoint from Hugging Face; read its licence)",
    "select.clip": "CLIP ViT-L/14: huggingface.co/openai/clip-vit-large-patch14, the whole folder "
    "(config.json, model.safetensors, tokenizer and processor files; about 1.7 GB; MIT)",
}


@dataclass
class ModelFile:
    key: str  # the config key that names it
    path: str  # as the config gives it
    purpose: str  # what charlora uses it for
    files: dict[str, str]  # a folder's files it must hold -> what each is; for a file: {"": what it is}
    stage: str  # "dataset" (curation needs it) or "run" (training, sampling, scoring)

    @property
    def source(self) -> str:
        return SOURCES.get(self.key, "")


BUILT_IN_BASES = ("tiny", "miniature")  # base_model values the workflow builds itself (rules/train.smk)

TAGGER_FILES = {  # file in the tagger's folder -> what it is
    "wd14": {"model.onnx": "a WD14 tagger's model.onnx", "selected_tags.csv": "the tagger's selected_tags.csv"},
    "vlm": {"config.json": "a transformers model folder"},
}


def model_files(config: dict) -> list[ModelFile]:
    """The model files this config uses, in the order the stages need them (the demo's built-in models
    are not files the user supplies, and are left out)."""
    found = []
    if config["masks"]["method"] == "rembg":
        found.append(
            ModelFile(
                "masks.rembg.model",
                config["masks"]["rembg"]["model"] or "",
                f"subject masks (rembg session {config['masks']['rembg']['session']})",
                {"": "the ONNX model for masks.method: rembg"},
                "dataset",
            )
        )
    tagger = config["captions"]["tagger"]
    if tagger in TAGGER_FILES:
        found.append(
            ModelFile(
                f"captions.{tagger}.folder",
                config["captions"][tagger]["folder"] or "",
                "tags for the captions"
                + (" and tag recall when there is no CLIP model" if not config["select"]["clip"] else ""),
                TAGGER_FILES[tagger],
                "dataset",
            )
        )
    if config["base_model"] not in BUILT_IN_BASES:
        found.append(
            ModelFile(
                "base_model",
                config["base_model"],
                "the SDXL model that is fine-tuned and sampled",
                {"": "an SDXL .safetensors file or diffusers folder"},
                "run",
            )
        )
    if config["select"]["clip"] and config["select"]["clip"] != "tiny":
        found.append(
            ModelFile(
                "select.clip",
                config["select"]["clip"],
                "prompt adherence (CLIP score) in the scorecard",
                {"config.json": "a transformers CLIP model folder"},
                "run",
            )
        )
    return found


def check(model: ModelFile) -> list[Path]:
    """The model's files, checked (ConfigError naming the key, the path and where to get it)."""
    try:
        if model.key == "base_model":
            return [base_model_path(model.path)]
        return [
            require_file(model.path and (f"{model.path}/{name}" if name else model.path), model.key, what)
            for name, what in model.files.items()
        ]
    except ConfigError as error:
        raise ConfigError(f"{error}. Where to get it: {model.source}" if model.source else str(error)) from None


def check_all(config: dict, stages: set[str]) -> None:
    """Check every model file of these stages ("dataset", "run"): the first missing one stops the run."""
    for model in model_files(config):
        if model.stage in stages:
            check(model)


def describe(model: ModelFile, hash_files: bool = True) -> str:
    """One model as `snakemake models` prints it: key, path, purpose; size and SHA-256 when it is in place,
    what is missing and where to get it when not."""
    head = f"{model.key}: {model.path or '(not set)'}\n  for: {model.purpose}"
    try:
        files = check(model)
    except ConfigError as error:
        return f"{head}\n  MISSING: {error}"
    folder = Path(model.path).expanduser()
    everything = sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else files
    size = sum(p.stat().st_size for p in everything)
    lines = [head, f"  in place: {len(everything)} file(s), {size / 1e9:.2f} GB"]
    if hash_files:
        main = max(everything, key=lambda p: p.stat().st_size)
        lines.append(f"  sha256 of {main.name}: {file_sha256(main)}")
    return "\n".join(lines)


def report(config: dict, hash_files: bool = True) -> str:
    """The whole table, with a last line saying whether a run can start."""
    models = model_files(config)
    if not models:
        return "No model files to supply: this config uses the demo's built-in models" + (
            " (dataset: demo applies config/demo.yaml; set `dataset:` to your photo folder to check "
            "the model files config/config.yaml names)."
            if config.get("dataset") == "demo"
            else "."
        )
    parts = [describe(m, hash_files) for m in models]
    missing = sum("\n  MISSING: " in p for p in parts)
    parts.append(
        f"{len(models) - missing} of {len(models)} model files in place"
        + (
            "."
            if not missing
            else "; charlora never downloads them: put each where the config says, "
            "or change the key in config/config.yaml."
        )
    )
    return "\n\n".join(parts)
