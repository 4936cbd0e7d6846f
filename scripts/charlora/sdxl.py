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

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from charlora import ldm_layout
from charlora.atomic import atomic_path
from charlora.config import PICKLE_SUFFIXES

MODEL_CONFIGS = Path(__file__).resolve().parents[2] / "config" / "models"
UNET_CHANNELS = {320: "sdxl", 32: "tiny"}  # conv_in output channels -> shipped config


class ModelError(Exception):
    """A base model that cannot be used; the message names the path and what is wrong."""


@dataclass
class SDXL:
    unet: torch.nn.Module            # UNet2DConditionModel
    vae: torch.nn.Module             # AutoencoderKL
    text_encoder: torch.nn.Module    # CLIPTextModel (ViT-L)
    text_encoder_2: torch.nn.Module  # CLIPTextModelWithProjection (ViT-bigG)
    tokenizer: object
    tokenizer_2: object
    scheduler_config: dict
    config_dir: Path


def _offline() -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")


def tokenizers():
    """SDXL's two tokenizers: same vocabulary; the first pads with the end token, the second with '!'."""
    from charlora.tokenizer import clip_tokenizer
    return clip_tokenizer("<|endoftext|>"), clip_tokenizer("!")


def check_base_model(path: str | os.PathLike) -> str:
    """Which shipped config fits the model at `path` ('sdxl' or 'tiny'); ModelError if it cannot be used."""
    path = Path(path)
    if not path.exists():
        raise ModelError(f"base model {path}: no such file or folder")
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise ModelError(f"base model {path}: a folder must be a diffusers model (model_index.json missing)")
        if not list((path / "unet").glob("*.safetensors")):
            raise ModelError(f"base model {path}: unet/ has no .safetensors weights (pickled .bin weights "
                             "are refused: loading a pickle runs code from the file)")
        return "sdxl"
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise ModelError(f"base model {path}: {path.suffix} files are Python pickles, and loading one can run "
                         "code hidden in it; use the .safetensors version of the model (or convert it once "
                         "in a sandbox)")
    try:
        with safe_open(str(path), framework="pt") as f:
            keys = set(f.keys())
            conv_in = f.get_slice(ldm_layout.UNET_PREFIX + "input_blocks.0.0.weight").get_shape() \
                if ldm_layout.UNET_PREFIX + "input_blocks.0.0.weight" in keys else None
    except Exception as exc:  # safetensors raises its own error types for bad headers
        raise ModelError(f"base model {path}: not a readable .safetensors file ({exc})") from None
    if not any(k.startswith(ldm_layout.TEXT_ENCODER_2_PREFIX) for k in keys):
        kind = ("an SDXL refiner" if any(k.startswith("conditioner.embedders.0.model.") for k in keys)
                else "an SD 1.x/2.x checkpoint" if any(k.startswith("cond_stage_model.") for k in keys)
                else "a LoRA or partial file" if conv_in is None else "not an SDXL base checkpoint")
        raise ModelError(f"base model {path}: {kind} (no {ldm_layout.TEXT_ENCODER_2_PREFIX}* keys); "
                         "charlora fine-tunes SDXL base models")
    if conv_in is None or conv_in[0] not in UNET_CHANNELS:
        raise ModelError(f"base model {path}: UNet input channels {conv_in and conv_in[0]} match no shipped "
                         f"config ({', '.join(UNET_CHANNELS.values())}) in {MODEL_CONFIGS}")
    return UNET_CHANNELS[conv_in[0]]


def config_dir(path: str | os.PathLike) -> Path:
    """The diffusers-layout config folder for a base model: its own folder, or the shipped one that fits."""
    path = Path(path)
    return path if path.is_dir() else MODEL_CONFIGS / check_base_model(path)


def load_sdxl(path: str | os.PathLike, dtype: torch.dtype = torch.float32, with_unet: bool = True) -> SDXL:
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
    common = dict(tokenizer=tokenizer, tokenizer_2=tokenizer_2, dtype=dtype, local_files_only=True)
    if not with_unet:
        common["unet"] = None
    if path.is_dir():
        pipe = StableDiffusionXLPipeline.from_pretrained(path, use_safetensors=True, **common)
    else:
        pipe = StableDiffusionXLPipeline.from_single_file(str(path), config=str(configs), **common)
    return SDXL(pipe.unet, pipe.vae, pipe.text_encoder, pipe.text_encoder_2, tokenizer, tokenizer_2,
                dict(pipe.scheduler.config), configs)


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
    """safetensors save, atomically (temp file, then rename)."""
    state = {k: v.detach().contiguous().cpu() for k, v in state.items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=metadata)


def write_tiny(path: str | os.PathLike, seed: int = 0) -> None:
    """The tiny SDXL model as a single-file checkpoint, fp32."""
    state = to_ldm(*build_random("tiny", seed))
    save_safetensors(state, path, metadata={"charlora": "tiny SDXL topology, random init", "seed": str(seed)})


def export_checkpoint(base_model: str | os.PathLike, unet_state: dict[str, torch.Tensor], out: str | os.PathLike,
                      dtype: torch.dtype = torch.float16) -> None:
    """A full single-file checkpoint for ComfyUI: the base's text encoders and VAE with a tuned UNet."""
    import json

    base_model = Path(base_model)
    unet_config = json.loads((config_dir(base_model) / "unet" / "config.json").read_text())
    state = ldm_layout.unet_to_ldm(unet_state, unet_config)
    if base_model.is_dir():
        base = load_sdxl(base_model)
        others = to_ldm(base.unet, base.vae, base.text_encoder, base.text_encoder_2)
        state |= {k: v for k, v in others.items() if not k.startswith(ldm_layout.UNET_PREFIX)}
    else:
        state |= {k: v for k, v in load_file(str(base_model)).items() if not k.startswith(ldm_layout.UNET_PREFIX)}
    state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    save_safetensors(state, out, metadata={"charlora": "SDXL checkpoint: base text encoders and VAE, tuned UNet"})
