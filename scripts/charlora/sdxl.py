"""SDXL models from local files only: load a base model, write the tiny demo model, export a checkpoint.

A base model is one of
- a single-file checkpoint (.safetensors in the LDM layout that model hubs share), read with
  diffusers' single-file converters and the component configs shipped in config/models/;
- a diffusers folder (model_index.json, unet/, vae/, text_encoder/, text_encoder_2/ with
  .safetensors weights).
Nothing is fetched: configs come from config/models/, both CLIP tokenizers are built from the
vocabulary file open-clip-torch ships (tokenizer.py), and the Hugging Face hub is switched off.
Pickled formats (.ckpt, .pt, .bin) are refused: unpickling runs code from the file.

`tiny` is the SDXL module tree with small widths (config/models/tiny): the same blocks, layers and
transformer depths, so every state-dict key is real SDXL's. It is random with a fixed seed and
written as a single-file checkpoint, so the demo and the tests load it like a real model.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from charlora import ldm_layout
from charlora.atomic import atomic_path
from charlora.config import pickle_refusal

MODEL_CONFIGS = Path(__file__).resolve().parents[2] / "config" / "models"
# Two UNet weights whose shapes tell the shipped configs apart: conv_in's output channels (the first
# block's width) and the middle block's first conv (the last block's width).
CONV_IN, MIDDLE_CONV = "input_blocks.0.0.weight", "middle_block.0.in_layers.2.weight"


def shipped_configs() -> dict[tuple[int, int], str]:
    """(first block width, last block width) -> the name of the shipped config folder with that UNet."""
    widths = {}
    for folder in sorted(MODEL_CONFIGS.iterdir()):
        channels = json.loads((folder / "unet" / "config.json").read_text())["block_out_channels"]
        widths[channels[0], channels[-1]] = folder.name
    return widths


class ModelError(Exception):
    """A base model that cannot be used; the message names the path and what is wrong."""


@dataclass
class SDXL:
    unet: torch.nn.Module  # UNet2DConditionModel
    vae: torch.nn.Module  # AutoencoderKL
    text_encoder: torch.nn.Module  # CLIPTextModel (ViT-L)
    text_encoder_2: torch.nn.Module  # CLIPTextModelWithProjection (ViT-bigG)
    tokenizer: object
    tokenizer_2: object


def _offline() -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")


def pick_device(name: str) -> torch.device:
    """config `device`: auto (CUDA when present, else the CPU), cpu, cuda or cuda:N."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def tokenizers():
    """SDXL's two tokenizers: same vocabulary; the first pads with the end token, the second with '!'."""
    from charlora.tokenizer import clip_tokenizer

    return clip_tokenizer("<|endoftext|>"), clip_tokenizer("!")


def check_base_model(path: str | os.PathLike) -> str:
    """Which shipped config fits the model at `path` ('sdxl', 'tiny' or 'miniature'); ModelError if it
    cannot be used."""
    path = Path(path)
    if not path.exists():
        raise ModelError(f"base model {path}: no such file or folder")
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise ModelError(f"base model {path}: a folder must be a diffusers model (model_index.json missing)")
        if not list((path / "unet").glob("*.safetensors")):
            raise ModelError(
                f"base model {path}: unet/ has no .safetensors weights (pickled .bin weights "
                "are refused: loading a pickle runs code from the file)"
            )
        return "sdxl"
    if refusal := pickle_refusal(path):
        raise ModelError(f"base model {path} {refusal}")
    try:
        with safe_open(str(path), framework="pt") as f:
            keys = set(f.keys())
            conv_in, middle = (
                f.get_slice(ldm_layout.UNET_PREFIX + name).get_shape()[0]
                if ldm_layout.UNET_PREFIX + name in keys
                else None
                for name in (CONV_IN, MIDDLE_CONV)
            )
    except Exception as exc:  # safetensors raises its own error types for bad headers
        raise ModelError(f"base model {path}: not a readable .safetensors file ({exc})") from None
    if not any(k.startswith(ldm_layout.TEXT_ENCODER_2_PREFIX) for k in keys):
        kind = (
            "an SDXL refiner"
            if any(k.startswith("conditioner.embedders.0.model.") for k in keys)
            else "an SD 1.x/2.x checkpoint"
            if any(k.startswith("cond_stage_model.") for k in keys)
            else "a LoRA or partial file"
            if conv_in is None
            else "not an SDXL base checkpoint"
        )
        raise ModelError(
            f"base model {path}: {kind} (no {ldm_layout.TEXT_ENCODER_2_PREFIX}* keys); "
            "charlora fine-tunes SDXL base models"
        )
    configs = shipped_configs()
    if (conv_in, middle) not in configs:
        raise ModelError(
            f"base model {path}: a UNet {conv_in} channels wide at its input and {middle} in its middle "
            f"matches no shipped config ({', '.join(configs.values())}) in {MODEL_CONFIGS}"
        )
    return configs[conv_in, middle]


def config_dir(path: str | os.PathLike) -> Path:
    """The diffusers-layout config folder for a base model: its own folder, or the shipped one that fits."""
    path = Path(path)
    return path if path.is_dir() else MODEL_CONFIGS / check_base_model(path)


def load_sdxl(path: str | os.PathLike, with_unet: bool = True) -> SDXL:
    """SDXL's components from a single file or diffusers folder, on the CPU, with no network.
    `with_unet=False` leaves the UNet out (encoding images and captions needs only the others)."""
    _offline()
    from diffusers import StableDiffusionXLPipeline
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.disable_progress_bar()
    diffusers_logging.set_verbosity_error()
    path = Path(path)
    configs = config_dir(path)
    tokenizer, tokenizer_2 = tokenizers()
    common = dict(tokenizer=tokenizer, tokenizer_2=tokenizer_2, local_files_only=True)
    if not with_unet:
        common["unet"] = None
    if path.is_dir():
        pipe = StableDiffusionXLPipeline.from_pretrained(path, use_safetensors=True, **common)
    else:
        pipe = StableDiffusionXLPipeline.from_single_file(str(path), config=str(configs), **common)
    return SDXL(pipe.unet, pipe.vae, pipe.text_encoder, pipe.text_encoder_2, tokenizer, tokenizer_2)


@torch.no_grad()
def encode_prompt(model: SDXL, prompt: str, device) -> dict[str, torch.Tensor]:
    """SDXL's prompt encoding, as diffusers' StableDiffusionXLPipeline.encode_prompt does it: both
    encoders' penultimate hidden states side by side (77, 2048) and text_encoder_2's pooled output."""
    hidden = []
    for tokenizer, encoder in ((model.tokenizer, model.text_encoder), (model.tokenizer_2, model.text_encoder_2)):
        ids = tokenizer(
            prompt, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
        ).input_ids
        out = encoder(ids.to(device), output_hidden_states=True)
        hidden.append(out.hidden_states[-2][0])
    return {"prompt_embeds": torch.cat(hidden, dim=-1).float().cpu(), "pooled": out.text_embeds[0].float().cpu()}


def unet_config(base_model: str | os.PathLike) -> dict:
    """The UNet config (diffusers) of a base model: its folder's own, or the shipped one that fits."""
    return json.loads((config_dir(base_model) / "unet" / "config.json").read_text())


def load_unet(base_model: str | os.PathLike) -> torch.nn.Module:
    """The base model's UNet alone (UNet2DConditionModel, fp32, CPU); the rest of the file is not read."""
    from diffusers import UNet2DConditionModel

    return _load_part(UNet2DConditionModel, "unet", base_model)


def load_vae(base_model: str | os.PathLike) -> torch.nn.Module:
    """The base model's VAE alone (AutoencoderKL, fp32, CPU); the rest of the file is not read."""
    from diffusers import AutoencoderKL

    return _load_part(AutoencoderKL, "vae", base_model)


def _load_part(model_class, subfolder: str, base_model: str | os.PathLike) -> torch.nn.Module:
    """One component of a base model: its diffusers folder's `subfolder`, or its part of a single file."""
    _offline()
    base_model = Path(base_model)
    if base_model.is_dir():
        return model_class.from_pretrained(base_model, subfolder=subfolder, use_safetensors=True, local_files_only=True)
    return model_class.from_single_file(
        str(base_model), config=str(config_dir(base_model)), subfolder=subfolder, local_files_only=True
    )


def noise_scheduler(base_model: str | os.PathLike):
    """The base model's training noise schedule (DDPMScheduler: 1000 steps, SDXL's scaled-linear betas)."""
    from diffusers import DDPMScheduler

    return DDPMScheduler.from_pretrained(config_dir(base_model), subfolder="scheduler")


def unet_with(weights: dict[str, torch.Tensor], config: dict) -> torch.nn.Module:
    """A UNet2DConditionModel of `config` holding `weights` (built on the meta device: no random init,
    no second copy of the weights)."""
    from diffusers import UNet2DConditionModel

    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(config)
    unet.load_state_dict(weights, assign=True)
    return unet


def unet_parameter_shapes(base_model: str | os.PathLike) -> list[tuple[int, ...]]:
    """The shapes of the UNet's parameters, from its config alone (built on the meta device: nothing read)."""
    from diffusers import UNet2DConditionModel

    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(unet_config(base_model))
    return [tuple(p.shape) for p in unet.parameters()]


def load_epoch_unet(epoch_file: str | os.PathLike, base_model: str | os.PathLike) -> torch.nn.Module:
    """A saved epoch's UNet (diffusers names), built with the base model's config, fp32, CPU."""
    with safe_open(str(epoch_file), framework="pt") as f:  # tensor by tensor: never the file's copy and fp32's at once
        weights = {k: f.get_tensor(k).float() for k in f.keys()}
    return unet_with(weights, unet_config(base_model))


def unet_shapes(config: dict) -> dict[str, tuple[int, ...]]:
    """Every UNet weight's diffusers name and shape for a config (built on the meta device: no memory)."""
    from diffusers import UNet2DConditionModel

    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(config)
    return {k: tuple(v.shape) for k, v in unet.state_dict().items()}


class UNetWeights:
    """A UNet's weights read one tensor at a time by diffusers name, from a base model (single file in
    LDM names, or a diffusers folder) or a saved epoch file (diffusers names). safe_open maps the files
    into memory, so two full-size UNets can be compared without holding either."""

    def __init__(self, path: str | os.PathLike, config: dict):
        self.path = Path(path)
        self.config = config
        files = [self.path]
        if self.path.is_dir():  # unet/: one file or shards; a .fp16 variant only when it is all there is
            found = sorted((self.path / "unet").glob("*.safetensors"))
            files = [f for f in found if f.name.count(".") == 1] or found
        self._handles = [safe_open(str(f), framework="pt") for f in files]
        self._where = {key: handle for handle in self._handles for key in handle.keys()}
        self.ldm = any(k.startswith(ldm_layout.UNET_PREFIX) for k in self._where)

    def _key(self, name: str) -> str:
        return ldm_layout.UNET_PREFIX + ldm_layout.unet_key(name, self.config) if self.ldm else name

    def __contains__(self, name: str) -> bool:
        return self._key(name) in self._where

    def shape(self, name: str) -> tuple[int, ...]:
        key = self._key(name)
        return tuple(self._where[key].get_slice(key).get_shape())

    def get(self, name: str) -> torch.Tensor:
        key = self._key(name)
        return self._where[key].get_tensor(key)

    def mismatch(self, expected: dict[str, tuple[int, ...]]) -> str | None:
        """What differs from the expected names and shapes (the first few), or None."""
        missing = [n for n in expected if n not in self]
        if missing:
            return f"{len(missing)} UNet weights missing, e.g. {', '.join(map(self._key, missing[:3]))}"
        wrong = [
            f"{self._key(n)} is {list(self.shape(n))}, expected {list(s)}"
            for n, s in expected.items()
            if self.shape(n) != s and math.prod(self.shape(n)) != math.prod(s)
        ]
        return f"{len(wrong)} UNet weights of other shapes, e.g. {'; '.join(wrong[:3])}" if wrong else None

    def metadata(self) -> dict[str, str]:
        return self._handles[0].metadata() or {}


def build_random(name: str = "tiny", seed: int = 0, device: str = "cpu"):
    """UNet, VAE and both text encoders from a shipped config, random with `seed`."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config_dir = MODEL_CONFIGS / name
    torch.manual_seed(seed)
    with torch.device(device):
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(config_dir / "unet"))
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(config_dir / "vae"))
        te = CLIPTextModel(CLIPTextConfig.from_json_file(config_dir / "text_encoder" / "config.json"))
        te2 = CLIPTextModelWithProjection(CLIPTextConfig.from_json_file(config_dir / "text_encoder_2" / "config.json"))
    return unet, vae, te, te2


def to_ldm(unet, vae, text_encoder, text_encoder_2) -> dict[str, torch.Tensor]:
    """The four components as one state dict in the single-file (LDM) layout."""
    state = ldm_layout.unet_to_ldm(unet.state_dict(), dict(unet.config))
    state |= ldm_layout.vae_to_ldm(vae.state_dict(), dict(vae.config))
    state |= ldm_layout.text_encoder_to_ldm(text_encoder.state_dict())
    state |= ldm_layout.text_encoder_2_to_ldm(text_encoder_2.state_dict())
    return state


def save_safetensors(state: dict[str, torch.Tensor], path: str | os.PathLike, metadata: dict | None = None) -> None:
    """safetensors save, atomically (temp file, then rename), metadata in sorted key order."""
    state = {k: v.detach().contiguous().cpu() for k, v in state.items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=metadata)
        if metadata:
            write_metadata(tmp, metadata)


def write_metadata(path: str | os.PathLike, metadata: dict[str, str]) -> None:
    """Replace the metadata of a safetensors file with `metadata`, keys in sorted order.

    safetensors writes its metadata from a hash map, in an order that changes from process to process,
    so the same tensors and metadata would give different bytes. The header is JSON (its length as 8
    little-endian bytes, then the JSON padded with spaces to a multiple of 8); tensor offsets count from
    its end, so a header of another length only moves the data section.
    """
    path = Path(path)
    with open(path, "rb") as f:
        length = int.from_bytes(f.read(8), "little")
        tensors = {k: v for k, v in json.loads(f.read(length)).items() if k != "__metadata__"}
    header = json.dumps(
        {"__metadata__": dict(sorted(metadata.items())), **tensors}, separators=(",", ":"), ensure_ascii=False
    ).encode()
    header += b" " * (-len(header) % 8)
    if len(header) == length:  # the usual case: the same metadata, reordered
        with open(path, "r+b") as f:
            f.seek(8)
            f.write(header)
        return
    moved = path.with_name(path.name + ".header")
    try:
        with open(path, "rb") as src, open(moved, "wb") as dst:
            src.seek(8 + length)
            dst.write(len(header).to_bytes(8, "little") + header)
            shutil.copyfileobj(src, dst, 1 << 24)
        os.replace(moved, path)
    finally:
        moved.unlink(missing_ok=True)


def write_tiny(path: str | os.PathLike, seed: int = 0) -> None:
    """The tiny SDXL model as a single-file checkpoint, fp32."""
    state = to_ldm(*build_random("tiny", seed))
    save_safetensors(state, path, metadata={"charlora": "tiny SDXL topology, random init", "seed": str(seed)})


def export_checkpoint(
    base_model: str | os.PathLike,
    unet_state: dict[str, torch.Tensor],
    out: str | os.PathLike,
    dtype: torch.dtype = torch.float16,
) -> None:
    """A full single-file checkpoint for ComfyUI: the base's text encoders and VAE with a tuned UNet."""
    base_model = Path(base_model)
    state = ldm_layout.unet_to_ldm(unet_state, unet_config(base_model))
    if base_model.is_dir():
        base = load_sdxl(base_model)
        others = to_ldm(base.unet, base.vae, base.text_encoder, base.text_encoder_2)
        state |= {k: v for k, v in others.items() if not k.startswith(ldm_layout.UNET_PREFIX)}
    else:
        state |= {k: v for k, v in load_file(str(base_model)).items() if not k.startswith(ldm_layout.UNET_PREFIX)}
    state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    save_safetensors(state, out, metadata={"charlora": "SDXL checkpoint: base text encoders and VAE, tuned UNet"})
