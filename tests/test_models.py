"""SDXL model I/O: the tiny model has real SDXL's keys, single files load offline through diffusers'
own reader, the ComfyUI export loads back with identical weights, and pickles are refused."""

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from charlora import ldm_layout, sdxl
from charlora.config import ConfigError, base_model_path


def state(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


def assert_same_weights(a: dict, b: dict):
    assert set(a) == set(b)
    different = [k for k in a if not torch.equal(a[k].float(), b[k].float())]
    assert not different, different[:5]


def test_tiny_has_every_key_of_real_sdxl():
    real = sdxl.build_random("sdxl", device="meta")  # full size, no memory: shapes only
    tiny = sdxl.build_random("tiny")
    for r, t in zip(real, tiny):
        assert set(r.state_dict()) == set(t.state_dict()), type(r).__name__
    real_keys, tiny_keys = set(sdxl.to_ldm(*real)), set(sdxl.to_ldm(*tiny))
    assert real_keys == tiny_keys
    # the published SDXL base 1.0 file has 2515 tensors, among them these
    assert len(real_keys) == 2515
    for key in [
        "model.diffusion_model.input_blocks.4.1.transformer_blocks.1.attn2.to_k.weight",
        "model.diffusion_model.middle_block.1.transformer_blocks.9.ff.net.2.bias",
        "model.diffusion_model.output_blocks.2.2.conv.weight",
        "model.diffusion_model.label_emb.0.0.weight",
        "first_stage_model.decoder.up.0.block.0.nin_shortcut.weight",
        "first_stage_model.encoder.mid.attn_1.proj_out.weight",
        "conditioner.embedders.0.transformer.text_model.encoder.layers.11.mlp.fc2.weight",
        "conditioner.embedders.1.model.transformer.resblocks.31.attn.in_proj_weight",
        "conditioner.embedders.1.model.text_projection",
    ]:
        assert key in real_keys, key
    assert sum(p.numel() for p in real[0].parameters()) == 2_567_463_684  # SDXL's UNet


def test_single_file_loads_offline_with_the_weights_written(tiny_model, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    written = sdxl.build_random("tiny", seed=0)  # write_tiny's seed
    loaded = sdxl.load_sdxl(tiny_model)
    for module, back in zip(written, (loaded.unet, loaded.vae, loaded.text_encoder, loaded.text_encoder_2)):
        assert_same_weights(state(module), state(back))
    assert loaded.tokenizer("mira").input_ids == [49406, loaded.tokenizer.convert_tokens_to_ids("mira</w>"), 49407]
    assert loaded.tokenizer_2.pad_token == "!"


def test_export_loads_back_in_diffusers_with_identical_weights(tiny_model, tmp_path):
    from diffusers import StableDiffusionXLPipeline

    base = sdxl.load_sdxl(tiny_model)
    tuned = {k: v + 0.01 * torch.randn_like(v) for k, v in base.unet.state_dict().items()}
    out = tmp_path / "export.safetensors"
    sdxl.export_checkpoint(tiny_model, tuned, out, dtype=torch.float32)
    tok, tok2 = sdxl.tokenizers()
    pipe = StableDiffusionXLPipeline.from_single_file(
        str(out), config=str(sdxl.MODEL_CONFIGS / "tiny"), tokenizer=tok, tokenizer_2=tok2, local_files_only=True
    )
    assert_same_weights(tuned, state(pipe.unet))
    assert_same_weights(state(base.vae), state(pipe.vae))
    assert_same_weights(state(base.text_encoder_2), state(pipe.text_encoder_2))
    with safe_open(str(out), "pt") as f:
        assert set(f.keys()) == set(load_file(str(tiny_model)))  # the same layout as the base file


def test_a_diffusers_folder_loads(tiny_model, tmp_path):
    base = sdxl.load_sdxl(tiny_model)
    for name in ("unet", "vae", "text_encoder", "text_encoder_2"):
        getattr(base, name).save_pretrained(tmp_path / "model" / name, safe_serialization=True)
    index = json.loads((sdxl.MODEL_CONFIGS / "tiny" / "model_index.json").read_text())
    (tmp_path / "model" / "model_index.json").write_text(json.dumps(index))
    (tmp_path / "model" / "scheduler").mkdir()
    (tmp_path / "model" / "scheduler" / "scheduler_config.json").write_text(
        (sdxl.MODEL_CONFIGS / "tiny" / "scheduler" / "scheduler_config.json").read_text()
    )
    folder = sdxl.load_sdxl(tmp_path / "model")
    assert_same_weights(state(base.unet), state(folder.unet))


def test_pickles_and_wrong_files_are_refused_with_the_reason(tmp_path, tiny_model):
    pickle = tmp_path / "model.ckpt"
    torch.save({"state_dict": {}}, pickle)
    with pytest.raises(ConfigError, match=r"model.ckpt is a Python pickle \(.ckpt\); loading one can run code"):
        base_model_path(str(pickle))
    with pytest.raises(sdxl.ModelError, match=r"model.ckpt is a Python pickle \(.ckpt\)"):
        sdxl.check_base_model(pickle)
    with pytest.raises(ConfigError, match="does not exist"):
        base_model_path(str(tmp_path / "missing.safetensors"))
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a safetensors file at all")
    with pytest.raises(sdxl.ModelError, match="garbage.safetensors: not a readable .safetensors file"):
        sdxl.check_base_model(garbage)
    sd15 = tmp_path / "sd15.safetensors"
    save_file(
        {
            "cond_stage_model.transformer.text_model.final_layer_norm.weight": torch.ones(2),
            "model.diffusion_model.input_blocks.0.0.weight": torch.ones(320, 4, 3, 3),
        },
        str(sd15),
    )
    with pytest.raises(sdxl.ModelError, match="an SD 1.x/2.x checkpoint"):
        sdxl.check_base_model(sd15)
    lora = tmp_path / "lora.safetensors"
    save_file({"lora_unet_down_blocks_1_attentions_0_proj_in.lora_down.weight": torch.ones(4, 4)}, str(lora))
    with pytest.raises(sdxl.ModelError, match="a LoRA or partial file"):
        sdxl.check_base_model(lora)
    folder = tmp_path / "bin_only"
    (folder / "unet").mkdir(parents=True)
    (folder / "model_index.json").write_text("{}")
    (folder / "unet" / "diffusion_pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(sdxl.ModelError, match="unet/ has no .safetensors weights"):
        sdxl.check_base_model(folder)
    assert sdxl.check_base_model(tiny_model) == "tiny"


def test_ldm_names_of_the_unet_follow_the_block_layout():
    config = json.loads((sdxl.MODEL_CONFIGS / "sdxl" / "unet" / "config.json").read_text())
    cases = {
        "down_blocks.0.resnets.1.conv1.weight": "input_blocks.2.0.in_layers.2.weight",
        "down_blocks.0.downsamplers.0.conv.bias": "input_blocks.3.0.op.bias",
        "down_blocks.2.attentions.1.proj_out.weight": "input_blocks.8.1.proj_out.weight",
        "mid_block.resnets.1.time_emb_proj.weight": "middle_block.2.emb_layers.1.weight",
        "up_blocks.0.upsamplers.0.conv.weight": "output_blocks.2.2.conv.weight",
        "up_blocks.2.resnets.2.conv_shortcut.weight": "output_blocks.8.0.skip_connection.weight",
        "add_embedding.linear_2.bias": "label_emb.0.2.bias",
    }
    for diffusers_key, ldm_key in cases.items():
        assert ldm_layout.unet_key(diffusers_key, config) == ldm_key
