"""Key names of an SDXL single-file checkpoint (the original "LDM" layout) from diffusers' names.

Model hubs share SDXL as one .safetensors file in the layout of Stability's original code:

    model.diffusion_model.*              the UNet
    first_stage_model.*                  the VAE
    conditioner.embedders.0.transformer.* CLIP ViT-L, keys as in transformers (text_model.*)
    conditioner.embedders.1.model.*       OpenCLIP ViT-bigG, open_clip's own names

Reading that layout is diffusers' job (its single-file converters, used by `sdxl.py`). This module
is the other direction, for writing: the tiny demo model and the export of a tuned checkpoint for
ComfyUI. Each function maps a diffusers/transformers state dict to LDM keys; the tables below are
the whole mapping. The tests prove it by a round trip through diffusers' own reader.
"""

from __future__ import annotations

import math

import torch

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
TEXT_ENCODER_PREFIX = "conditioner.embedders.0.transformer."
TEXT_ENCODER_2_PREFIX = "conditioner.embedders.1.model."

# Inside a ResNet block (UNet).
UNET_RESNET = [
    ("norm1", "in_layers.0"),
    ("conv1", "in_layers.2"),
    ("time_emb_proj", "emb_layers.1"),
    ("norm2", "out_layers.0"),
    ("conv2", "out_layers.3"),
    ("conv_shortcut", "skip_connection"),
]
# Top-level UNet modules.
UNET_TOP = [
    ("time_embedding.linear_1", "time_embed.0"),
    ("time_embedding.linear_2", "time_embed.2"),
    ("add_embedding.linear_1", "label_emb.0.0"),
    ("add_embedding.linear_2", "label_emb.0.2"),
    ("conv_in", "input_blocks.0.0"),
    ("conv_norm_out", "out.0"),
    ("conv_out", "out.2"),
]
# VAE: ResNet shortcut, mid block, attention (diffusers Linear -> LDM 1x1 conv).
VAE_RESNET = [("conv_shortcut", "nin_shortcut")]
VAE_ATTENTION = [("group_norm", "norm"), ("to_q", "q"), ("to_k", "k"), ("to_v", "v"), ("to_out.0", "proj_out")]
VAE_TOP = [("encoder.conv_norm_out", "encoder.norm_out"), ("decoder.conv_norm_out", "decoder.norm_out")]
# OpenCLIP text transformer, per layer and top level.
OPEN_CLIP_LAYER = [
    ("self_attn.out_proj", "attn.out_proj"),
    ("layer_norm1", "ln_1"),
    ("layer_norm2", "ln_2"),
    ("mlp.fc1", "mlp.c_fc"),
    ("mlp.fc2", "mlp.c_proj"),
]
OPEN_CLIP_TOP = [
    ("text_model.embeddings.token_embedding.weight", "token_embedding.weight"),
    ("text_model.embeddings.position_embedding.weight", "positional_embedding"),
    ("text_model.final_layer_norm", "ln_final"),
]


def _rename(key: str, table: list[tuple[str, str]]) -> str:
    for diffusers_name, ldm_name in table:
        if key == diffusers_name or key.startswith(diffusers_name + "."):
            return ldm_name + key[len(diffusers_name) :]
    return key


def _block_prefix(key: str, depth: int) -> tuple[str, str]:
    """Split 'down_blocks.1.resnets.0.conv1.weight' at `depth` dots: ('down_blocks.1.resnets.0', rest)."""
    parts = key.split(".")
    return ".".join(parts[:depth]), ".".join(parts[depth:])


def unet_key(key: str, config: dict) -> str:
    """One UNet2DConditionModel key -> its LDM name (without the model.diffusion_model. prefix)."""
    layers = config["layers_per_block"]
    if key.startswith("down_blocks."):
        _, block, kind, index = key.split(".")[:4]
        block, index, rest = int(block), int(index), ".".join(key.split(".")[4:])
        if kind == "downsamplers":  # the first input block of the next level
            return f"input_blocks.{(block + 1) * (layers + 1)}.0.op.{rest.removeprefix('conv.')}"
        slot = block * (layers + 1) + index + 1
        return (
            f"input_blocks.{slot}.0.{_rename(rest, UNET_RESNET)}"
            if kind == "resnets"
            else f"input_blocks.{slot}.1.{rest}"
        )
    if key.startswith("up_blocks."):
        _, block, kind, index = key.split(".")[:4]
        block, index, rest = int(block), int(index), ".".join(key.split(".")[4:])
        has_attention = config["up_block_types"][block].startswith("CrossAttn")
        if kind == "upsamplers":  # the last module of the level's last output block
            return f"output_blocks.{block * (layers + 1) + layers}.{2 if has_attention else 1}.{rest}"
        slot = block * (layers + 1) + index
        return (
            f"output_blocks.{slot}.0.{_rename(rest, UNET_RESNET)}"
            if kind == "resnets"
            else f"output_blocks.{slot}.1.{rest}"
        )
    if key.startswith("mid_block."):
        _, kind, index = key.split(".")[:3]
        rest = ".".join(key.split(".")[3:])
        return (
            f"middle_block.{2 * int(index)}.{_rename(rest, UNET_RESNET)}"
            if kind == "resnets"
            else f"middle_block.1.{rest}"
        )
    return _rename(key, UNET_TOP)


def unet_to_ldm(state_dict: dict[str, torch.Tensor], config: dict) -> dict[str, torch.Tensor]:
    return {UNET_PREFIX + unet_key(k, config): v for k, v in state_dict.items()}


def vae_key(key: str, num_blocks: int) -> str:
    if ".mid_block." in key:
        coder, _, kind, index, rest = key.split(".", 4)
        name = f"block_{int(index) + 1}" if kind == "resnets" else "attn_1"
        return f"{coder}.mid.{name}.{_rename(rest, VAE_ATTENTION if kind == 'attentions' else VAE_RESNET)}"
    for coder, blocks, level_name in (("encoder", "down_blocks", "down"), ("decoder", "up_blocks", "up")):
        if key.startswith(f"{coder}.{blocks}."):
            _, _, block, kind, index, rest = key.split(".", 5)
            level = int(block) if coder == "encoder" else num_blocks - 1 - int(block)  # LDM counts up from the top
            if kind in ("downsamplers", "upsamplers"):
                return f"{coder}.{level_name}.{level}.{kind.removesuffix('rs')}.{rest}"
            return f"{coder}.{level_name}.{level}.block.{index}.{_rename(rest, VAE_RESNET)}"
    return _rename(key, VAE_TOP)


def vae_to_ldm(state_dict: dict[str, torch.Tensor], config: dict) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state_dict.items():
        new = vae_key(key, len(config["block_out_channels"]))
        if ".mid.attn_1." in new and new.endswith(".weight") and value.ndim == 2:
            value = value[:, :, None, None]  # Linear -> 1x1 conv
        out[VAE_PREFIX + new] = value
    return out


def text_encoder_to_ldm(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CLIP ViT-L keeps the transformers names (text_model.*) under its prefix.

    transformers 5.6 and later dropped the text_model level from CLIPTextModel's own keys; the file
    keeps it, as every SDXL checkpoint has it.
    """
    out = {
        TEXT_ENCODER_PREFIX + ("" if k.startswith("text_model.") else "text_model.") + k: v
        for k, v in state_dict.items()
    }
    positions = out[TEXT_ENCODER_PREFIX + "text_model.embeddings.position_embedding.weight"].shape[0]
    # A buffer that transformers no longer saves; SDXL files carry it and some loaders expect it.
    out[TEXT_ENCODER_PREFIX + "text_model.embeddings.position_ids"] = torch.arange(positions)[None]
    return out


def text_encoder_2_to_ldm(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CLIPTextModelWithProjection -> OpenCLIP names; q, k, v fused into one in_proj; projection transposed."""
    out = {}
    for key, value in state_dict.items():
        if key.startswith("text_model.encoder.layers."):
            index, rest = key.removeprefix("text_model.encoder.layers.").split(".", 1)
            if rest.startswith(("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")):
                continue  # fused below
            out[f"transformer.resblocks.{index}.{_rename(rest, OPEN_CLIP_LAYER)}"] = value
        elif key == "text_projection.weight":
            out["text_projection"] = value.T.contiguous()
        else:
            out[_rename(key, OPEN_CLIP_TOP)] = value
    layers = {k.split(".")[3] for k in state_dict if k.startswith("text_model.encoder.layers.")}
    for index in layers:
        attn = f"text_model.encoder.layers.{index}.self_attn"
        for kind in ("weight", "bias"):
            out[f"transformer.resblocks.{index}.attn.in_proj_{kind}"] = torch.cat(
                [state_dict[f"{attn}.{p}_proj.{kind}"] for p in "qkv"]
            )
    out["logit_scale"] = torch.tensor(math.log(1 / 0.07))  # CLIP's temperature: unused for text, kept as in SDXL
    return {TEXT_ENCODER_2_PREFIX + k: v for k, v in out.items()}
