"""The curated dataset in OneTrainer's layout, for users who train there with our curation.

What OneTrainer reads (Nerogar/OneTrainer at 23df383, modules/dataLoader/mixin/DataLoaderText2ImageMixin.py
and modules/util/config/ConceptConfig.py):
- a concept is a folder of images; the caption of `<name>.png` is `<name>.txt` beside it (prompt
  source "sample"), its mask `<name>-masklabel.png` (white = trained, used with masked training);
  files ending in -masklabel are never taken for images;
- the concepts file (TrainConfig.concept_file_name, training_concepts/concepts.json by default) is
  a JSON list of ConceptConfig dicts; concepts of type VALIDATION are the validation set, STANDARD
  ones are trained on.

So the export is one folder per split (train/, val/) and concepts.json naming both. The keys are
every key of OneTrainer's ConceptConfig, in its order, with its defaults except where charlora
knows better (the names, paths, types, the seed, prompts from the caption files, the trigger token
kept first). Images, captions and masks are the curated files, copied byte for byte.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from charlora import atomic

MASK_SUFFIX = "-masklabel.png"

# ConceptConfig.default_values() of OneTrainer, in order ("__version" is BaseConfig.to_dict's).
IMAGE_DEFAULTS = {
    "__version": 0,
    "enable_crop_jitter": True,
    "enable_random_flip": False,
    "enable_fixed_flip": False,
    "enable_random_rotate": False,
    "enable_fixed_rotate": False,
    "random_rotate_max_angle": 0.0,
    "enable_random_brightness": False,
    "enable_fixed_brightness": False,
    "random_brightness_max_strength": 0.0,
    "enable_random_contrast": False,
    "enable_fixed_contrast": False,
    "random_contrast_max_strength": 0.0,
    "enable_random_saturation": False,
    "enable_fixed_saturation": False,
    "random_saturation_max_strength": 0.0,
    "enable_random_hue": False,
    "enable_fixed_hue": False,
    "random_hue_max_strength": 0.0,
    "enable_resolution_override": False,
    "resolution_override": "512",
    "enable_random_circular_mask_shrink": False,
    "enable_random_mask_rotate_crop": False,
}
TEXT_DEFAULTS = {
    "__version": 0,
    "prompt_source": "sample",
    "prompt_path": "",
    "enable_tag_shuffling": False,
    "tag_delimiter": ",",
    "keep_tags_count": 1,
    "tag_dropout_enable": False,
    "tag_dropout_mode": "FULL",
    "tag_dropout_probability": 0.0,
    "tag_dropout_special_tags_mode": "NONE",
    "tag_dropout_special_tags": "",
    "tag_dropout_special_tags_regex": False,
    "caps_randomize_enable": False,
    "caps_randomize_mode": "capslock, title, first, random",
    "caps_randomize_probability": 0.0,
    "caps_randomize_lowercase": False,
}
CONCEPT_DEFAULTS = {
    "__version": 2,
    "image": IMAGE_DEFAULTS,
    "text": TEXT_DEFAULTS,
    "name": "",
    "path": "",
    "seed": 0,
    "enabled": True,
    "type": "STANDARD",
    "include_subdirectories": False,
    "image_variations": 1,
    "text_variations": 1,
    "balancing": 1.0,
    "balancing_strategy": "REPEATS",
    "loss_weight": 1.0,
    "concept_stats": {},
}
FOLDERS = {"train": "STANDARD", "val": "VALIDATION"}
RESERVED_ENDINGS = ("-masklabel", "-condlabel")  # OneTrainer takes no image whose name ends so


def file_stem(image_id: str) -> str:
    """The export's name for a photo: its id, with '_' added where OneTrainer would skip the name."""
    return image_id + "_" if image_id.endswith(RESERVED_ENDINGS) else image_id


def concept(name: str, path: Path, concept_type: str, seed: int) -> dict:
    """One ConceptConfig dict: captions from the .txt files, the trigger token (first tag) never shuffled
    or dropped, mirroring off (it flips the character's asymmetric features)."""
    return CONCEPT_DEFAULTS | {
        "image": dict(IMAGE_DEFAULTS),
        "text": dict(TEXT_DEFAULTS),
        "name": name,
        "path": str(path),
        "type": concept_type,
        "seed": seed,
    }


def export(
    out_dir: str | Path, files: dict[str, dict[str, Path]], sides: dict[str, str], token: str, seed: int
) -> dict[str, int]:
    """Write the export folder whole (it appears complete or not at all). `files`: id -> {"image",
    "caption", optionally "mask"} curated files; `sides`: id -> train | val. Returns photos per folder."""
    out_dir = Path(out_dir)
    counts = {folder: 0 for folder in FOLDERS}
    with atomic.atomic_dir(out_dir) as tmp:
        for folder in FOLDERS:
            (tmp / folder).mkdir()
        for image_id in sorted(files):
            folder, stem = tmp / sides[image_id], file_stem(image_id)
            shutil.copyfile(files[image_id]["image"], folder / f"{stem}.png")
            shutil.copyfile(files[image_id]["caption"], folder / f"{stem}.txt")
            if "mask" in files[image_id]:
                shutil.copyfile(files[image_id]["mask"], folder / f"{stem}{MASK_SUFFIX}")
            counts[sides[image_id]] += 1
        concepts = [
            concept(
                f"{token} ({'validation' if folder == 'val' else 'train'})",
                out_dir.resolve() / folder,
                concept_type,
                seed,
            )
            for folder, concept_type in FOLDERS.items()
        ]
        (tmp / "concepts.json").write_text(json.dumps(concepts, indent=4, ensure_ascii=False) + "\n", encoding="utf-8")
    return counts
