"""Auto-tagging one photo: a WD14-style ONNX tagger or a vision-language model, both from a local
folder, or none.

A WD14 tagger folder holds `model.onnx` (input: batch x H x W x 3, BGR, float 0-255, white-padded
square; output: one sigmoid score per tag) and `selected_tags.csv` (tag_id, name, category,
count; category 0 = general, 4 = character, 9 = rating). charlora reads both locally, never
downloads, and keeps general tags above `general_threshold` and character tags above
`character_threshold`; rating tags are not captions.

A vision-language model folder is anything transformers loads with AutoProcessor and
AutoModelForImageTextToText (BLIP, Florence-2, Qwen2-VL, Gemma 3, ...). It is asked `prompt` and its
answer, split at commas, gives the tags (they carry no score). Loading is local only.

Either is loaded once per batch of photos (model_pass.py: a cache by content), on the CPU or a GPU
(`captions.device`: devices.py); each photo's job writes its record from its cache entry.
"""

from __future__ import annotations

import csv
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from charlora import devices
from charlora.config import ConfigError, require_file

CATEGORIES = {0: "general", 4: "character", 9: "rating"}
KAOMOJI = {
    "^_^",
    "o_o",
    "0_0",
    "(o)_(o)",
    "+_+",
    "+_-",
    "._.",
    "<o>_<o>",
    "<|>_<|>",
    "=_=",
    ">_<",
    "3_3",
    "6_9",
    ">_o",
    "@_@",
    "^_^;",
    "u_u",
    "x_x",
    "|_|",
    "||_||",
}


@dataclass
class Tag:
    name: str
    category: str
    score: float | None  # None: the backend gives no score (a vision-language model's answer)


def tag_name(raw: str) -> str:
    """WD14 writes tags with underscores ('long_hair'); captions use spaces. Kaomoji stay as they are."""
    return raw if raw in KAOMOJI else raw.replace("_", " ")


class WD14Tagger:
    def __init__(self, folder: str | Path, general_threshold: float, character_threshold: float, device: str = "cpu"):
        folder = Path(folder) if folder else None
        model = require_file(folder and folder / "model.onnx", "captions.wd14.folder", "a WD14 tagger's model.onnx")
        table = require_file(folder / "selected_tags.csv", "captions.wd14.folder", "the tagger's selected_tags.csv")
        import onnxruntime as ort

        try:
            providers = devices.onnx_providers(device, "captions.device")
            self.session = ort.InferenceSession(str(model), providers=providers)
        except Exception as exc:  # onnxruntime raises its own types for corrupt or foreign files
            raise ConfigError(f"{model}: onnxruntime cannot load this tagger model ({exc})") from None
        self.tags = self._read_table(table)
        shape = self.session.get_inputs()[0].shape
        self.size = int(shape[1]) if isinstance(shape[1], int) else 448
        outputs = self.session.get_outputs()[0].shape[-1]
        if isinstance(outputs, int) and outputs != len(self.tags):
            raise ConfigError(
                f"{model} scores {outputs} tags but {table} lists {len(self.tags)}: "
                "the model and the tag list do not belong together"
            )
        self.thresholds = {"general": general_threshold, "character": character_threshold}
        self.runs_on = devices.onnx_words(self.session)

    @staticmethod
    def _read_table(path: Path) -> list[tuple[str, str]]:
        try:
            with open(path, newline="", encoding="utf-8") as fh:
                rows = list(csv.DictReader(fh))
            return [(row["name"], CATEGORIES.get(int(row["category"]), "other")) for row in rows]
        except (KeyError, ValueError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: not a WD14 tag list (needs name and category columns): {exc}") from None

    def preprocess(self, image: Image.Image) -> np.ndarray:
        side = max(image.size)
        square = Image.new("RGB", (side, side), (255, 255, 255))
        square.paste(image, ((side - image.width) // 2, (side - image.height) // 2))
        square = square.resize((self.size, self.size), Image.BICUBIC)
        bgr = np.asarray(square, dtype=np.float32)[:, :, ::-1]
        return np.ascontiguousarray(bgr[None])

    def __call__(self, image: Image.Image) -> list[Tag]:
        inputs = {self.session.get_inputs()[0].name: self.preprocess(image)}
        scores = self.session.run(None, inputs)[0][0]
        found = [
            Tag(tag_name(name), category, round(float(score), 4))
            for (name, category), score in zip(self.tags, scores)
            if category in self.thresholds and score >= self.thresholds[category]
        ]
        return sorted(found, key=lambda t: (-t.score, t.name))


class VLMTagger:
    def __init__(self, folder: str | Path, prompt: str, max_new_tokens: int, device: str = "cpu"):
        folder = Path(folder) if folder else None
        require_file(
            folder and folder / "config.json",
            "captions.vlm.folder",
            "a transformers model folder (config.json, weights, processor files)",
        )
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach a hub, whatever the folder says
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.device = devices.torch_device(device, "captions.device")
        self.runs_on = str(self.device)
        try:
            self.processor = AutoProcessor.from_pretrained(folder, local_files_only=True)
            model = AutoModelForImageTextToText.from_pretrained(folder, local_files_only=True)
            self.model = model.to(self.device).eval()
        except (OSError, ValueError, KeyError) as exc:
            raise ConfigError(f"captions.vlm.folder: transformers cannot load {folder} ({exc})") from None
        self.prompt, self.max_new_tokens = prompt, max_new_tokens

    def _inputs(self, image: Image.Image):
        if getattr(self.processor, "chat_template", None):
            messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": self.prompt}]}]
            text = self.processor.apply_chat_template(messages, add_generation_prompt=True)
        else:
            text = self.prompt
        return self.processor(images=image, text=text, return_tensors="pt").to(self.device)

    def __call__(self, image: Image.Image) -> list[Tag]:
        import torch

        inputs = self._inputs(image)
        with torch.no_grad():
            out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
        prompt_ids = inputs.get("input_ids")
        if (
            prompt_ids is not None
            and out.shape[1] >= prompt_ids.shape[1]
            and torch.equal(out[0, : prompt_ids.shape[1]], prompt_ids[0])
        ):
            out = out[:, prompt_ids.shape[1] :]  # decoder-only models repeat the prompt
        answer = self.processor.batch_decode(out, skip_special_tokens=True)[0]
        seen, tags = set(), []
        for phrase in answer.replace("\n", ",").split(","):
            name = " ".join(phrase.strip(" .;:").lower().split())
            if name and name not in seen:
                seen.add(name)
                tags.append(Tag(name, "general", None))
        return tags


def make_tagger(captions_config: dict) -> WD14Tagger | VLMTagger:
    """The wd14 or vlm tagger the config names, loaded once (a job that tags many pictures reuses it),
    on `captions.device`."""
    backend, settings = captions_config["tagger"], captions_config[captions_config["tagger"]]
    device = captions_config.get("device", "cpu")
    if backend == "vlm":
        tagger = VLMTagger(settings["folder"], settings["prompt"], settings["max_new_tokens"], device)
    else:
        tagger = WD14Tagger(settings["folder"], settings["general_threshold"], settings["character_threshold"], device)
    logging.getLogger("charlora.tags").info("%s tagger on %s", backend, tagger.runs_on)
    return tagger


def model_settings(captions_config: dict) -> dict:
    """What a tagger's record depends on beyond the photo and the model's bytes (the cache key, model_pass.py)."""
    backend = captions_config["tagger"]
    return {"tagger": backend, **captions_config[backend]}


def model_files(captions_config: dict) -> list[Path]:
    """The files that make the tagger: WD14's model and tag list; every file of a VLM's folder."""
    backend = captions_config["tagger"]
    folder = Path(captions_config[backend]["folder"])
    if backend == "wd14":
        return [folder / "model.onnx", folder / "selected_tags.csv"]
    return sorted(p for p in folder.rglob("*") if p.is_file())


def tagger_of(captions_config: dict):
    """The tagger loaded once: photo file -> its tags record."""
    tagger = make_tagger(captions_config)
    return lambda path: tag_image(path, captions_config, tagger)


def tag_image(image_path: str | Path, captions_config: dict, tagger: WD14Tagger | VLMTagger | None = None) -> dict:
    """The tags record of one photo: backend, model and tags (with scores where the backend has them);
    `tagger`: one already loaded by make_tagger."""
    backend = captions_config["tagger"]
    if backend == "none":
        return {"backend": "none", "tags": []}
    if backend == "demo":
        from charlora import demo

        return {
            "backend": "demo",
            "tags": [asdict(Tag(name, "general", None)) for name in demo.scene_tags(Path(image_path).stem)],
        }
    tagger = tagger or make_tagger(captions_config)
    with Image.open(image_path) as im:
        tags = tagger(im.convert("RGB"))
    return {"backend": backend, "model": str(captions_config[backend]["folder"]), "tags": [asdict(t) for t in tags]}
