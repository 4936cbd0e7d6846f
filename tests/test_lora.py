"""LoRA extraction: kohya's layer set and names on real SDXL, the factorisation against the exact SVD,
the file diffusers loads (every key taken, the fine-tune reproduced), the verification that scores a
wrong LoRA low, and bad input."""

import hashlib
import json
import logging
import math

import pytest
import torch
from safetensors import safe_open

from charlora import ldm_layout, lora, lora_verify, sdxl
from charlora.hashing import file_sha256


def settings(**changes) -> lora.Settings:
    values = dict(rank=8, conv_rank=8, clamp_quantile=1.0, min_diff=0.0, save_precision="fp32", device="cpu")
    return lora.Settings(**(values | changes))


@pytest.fixture(scope="module")
def pair(tiny_model, tmp_path_factory):
    """The tiny base and an epoch file whose change is of rank 3 in every layer a LoRA covers (so a
    rank-8 LoRA can hold it exactly), with the base's hash in its metadata as training writes it."""
    folder = tmp_path_factory.mktemp("pair")
    base = sdxl.load_unet(tiny_model).state_dict()
    config = sdxl.unet_config(tiny_model)
    generator = torch.Generator().manual_seed(1)
    tuned = {k: v.clone() for k, v in base.items()}
    for target in lora.targets({k: tuple(v.shape) for k, v in base.items()}, config, 8, 8):
        rows, columns = target.shape[0], math.prod(target.shape[1:])
        delta = torch.randn(rows, 3, generator=generator) @ torch.randn(3, columns, generator=generator)
        tuned[target.module + ".weight"] += 1e-3 * delta.reshape(target.shape)
    epoch = folder / "epoch-005.safetensors"
    base_hash = file_sha256(tiny_model)
    sdxl.save_safetensors(tuned, epoch, metadata={"charlora.base_model_sha256": base_hash, "charlora.epoch": "5"})
    return tiny_model, epoch, base_hash, tuned


@pytest.fixture(scope="module")
def extracted(pair, tmp_path_factory):
    base, epoch, base_hash, _ = pair
    out = tmp_path_factory.mktemp("lora") / "epoch-005.safetensors"
    result = lora.extract(base, epoch, settings(), out, {"charlora.epoch": "5"}, base_hash, progress=False)
    return out, result


def test_kohya_layer_set_and_names_on_full_size_sdxl():
    config = json.loads((sdxl.MODEL_CONFIGS / "sdxl" / "unet" / "config.json").read_text())
    shapes = sdxl.unet_shapes(config)
    with_conv = lora.targets(shapes, config, 64, 64)
    kinds = [t.kind for t in with_conv]
    assert (len(with_conv), kinds.count("linear"), kinds.count("conv3x3"), kinds.count("conv1x1")) == (788, 739, 38, 11)
    assert len(lora.targets(shapes, config, 64, 0)) == 722
    names = {t.lora_name for t in with_conv}
    assert len(names) == 788
    for name in [
        "lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q",
        "lora_unet_input_blocks_4_1_proj_in",
        "lora_unet_middle_block_1_transformer_blocks_9_ff_net_0_proj",
        "lora_unet_output_blocks_0_1_proj_out",
        "lora_unet_input_blocks_1_0_in_layers_2",
        "lora_unet_output_blocks_8_0_out_layers_3",
        "lora_unet_middle_block_2_emb_layers_1",
        "lora_unet_input_blocks_4_0_skip_connection",
        "lora_unet_input_blocks_3_0_op",
        "lora_unet_output_blocks_2_2_conv",
        "lora_unet_output_blocks_5_1_transformer_blocks_1_attn2_to_out_0",
    ]:
        assert name in names, name
    # every name is a module of the published single-file layout
    ldm_modules = {ldm_layout.unet_key(k, config).removesuffix(".weight").replace(".", "_") for k in shapes}
    assert {t.lora_name.removeprefix("lora_unet_") for t in with_conv} <= ldm_modules
    assert all(t.rank == 64 for t in with_conv)  # SDXL's narrowest layer is 320 wide


def spectrum_matrix(rows, columns, singular_values, seed):
    generator = torch.Generator().manual_seed(seed)
    U = torch.linalg.qr(torch.randn(rows, len(singular_values), generator=generator)).Q
    V = torch.linalg.qr(torch.randn(columns, len(singular_values), generator=generator)).Q
    return U * torch.tensor(singular_values) @ V.T


@pytest.mark.parametrize("spectrum", ["flat", "decaying", "random"])
def test_randomized_factorisation_is_within_1_percent_of_the_best(spectrum):
    rows, columns, rank = 900, 400, 32
    if spectrum == "random":  # a fine-tune-like delta: noise, whose spectrum is flat (Marchenko-Pastur)
        delta = torch.randn(rows, columns, generator=torch.Generator().manual_seed(3))
    else:
        k = torch.arange(columns, dtype=torch.float32)
        values = 1 / (1 + k / 200) if spectrum == "flat" else 0.9**k
        delta = spectrum_matrix(rows, columns, values.tolist(), seed=2)
    up, down, blocks = lora.low_rank(delta, rank, torch.Generator().manual_seed(0))
    assert blocks >= 2 and up.shape == (rows, rank) and down.shape == (rank, columns)
    S = torch.linalg.svdvals(delta)
    best = S[rank:].square().sum().sqrt()
    assert (delta - up @ down).norm() <= 1.01 * best
    assert torch.allclose(down @ down.T, torch.eye(rank), atol=1e-4)  # down = Vh: orthonormal rows, as kohya's


def test_small_layers_take_the_exact_svd():
    delta = torch.randn(40, 30, generator=torch.Generator().manual_seed(0))
    up, down, blocks = lora.low_rank(delta, 8, torch.Generator())
    U, S, Vh = torch.linalg.svd(delta, full_matrices=False)
    assert blocks == 0
    assert torch.allclose(up @ down, (U[:, :8] * S[:8]) @ Vh[:8], atol=1e-5)


def test_quantile_matches_torch_and_clamp_follows_kohya():
    values = torch.randn(5001, generator=torch.Generator().manual_seed(0))
    for q in (0.0, 0.5, 0.99, 1.0):
        assert torch.allclose(lora.quantile(values, q), torch.quantile(values, q), rtol=1e-6, atol=0)
    up, down = values[:4000].reshape(1000, 4), values[4000:5000].reshape(4, 250)
    clamped_up, clamped_down = lora.clamp(up, down, 0.99)
    limit = lora.quantile(torch.cat([up.flatten(), down.flatten()]), 0.99)
    assert clamped_up.abs().max() <= limit and clamped_down.abs().max() <= limit
    assert (clamped_up != up).sum() > 0
    assert lora.clamp(up, down, 1.0) == (up, down)  # 1 = no clamping


def test_a_change_too_large_for_fp16_is_rebalanced_not_saved_as_inf():
    up, down = torch.full((4, 2), 3e5), torch.full((2, 4), 1e-3)
    up16, down16 = lora.to_dtype(up, down, torch.float16, "layer")
    assert torch.isfinite(up16).all() and torch.isfinite(down16).all()
    assert torch.allclose((up16.float() @ down16.float()), up @ down, rtol=1e-3)


def test_extraction_writes_kohya_format_that_holds_the_change(pair, extracted):
    base, epoch, base_hash, tuned = pair
    out, result = extracted
    assert result.layers == 788 and not result.skipped
    with safe_open(str(out), "pt") as f:
        keys = set(f.keys())
        assert len(keys) == 3 * 788
        assert not any(k.startswith(("lora_te", "lora_te1", "lora_te2")) for k in keys)
        name = "lora_unet_input_blocks_1_0_in_layers_2"
        assert f.get_tensor(f"{name}.lora_down.weight").shape == (8, 32, 3, 3)  # conv: (rank, in, kh, kw)
        assert f.get_tensor(f"{name}.lora_up.weight").shape == (32, 8, 1, 1)
        assert f.get_tensor(f"{name}.alpha").item() == 8
    rows = lora_verify.layer_checks(base, epoch, out, settings())
    assert len(rows) == 788
    assert max(r["relative_error"] for r in rows) < 1e-4  # rank 3 changes, rank 8 factors, fp32: exact
    assert min(r["energy_retained"] for r in rows) > 0.9999


def test_a_layer_narrower_than_the_rank_gets_its_own_rank(pair, tmp_path):
    base, epoch, base_hash, _ = pair
    out = tmp_path / "wide.safetensors"
    result = lora.extract(base, epoch, settings(rank=200, conv_rank=200), out, {}, base_hash, progress=False)
    assert result.narrower == result.layers == 788
    with safe_open(str(out), "pt") as f:
        down = f.get_tensor("lora_unet_input_blocks_1_0_emb_layers_1.lora_down.weight")  # Linear 128 -> 32
        assert down.shape == (32, 128) and f.get_tensor("lora_unet_input_blocks_1_0_emb_layers_1.alpha").item() == 32


def test_min_diff_leaves_out_layers_that_did_not_change(pair, tmp_path):
    base, epoch, base_hash, tuned = pair
    with pytest.raises(lora.LoraError, match="no UNet layer changed by more than lora.min_diff"):
        lora.extract(base, epoch, settings(min_diff=1.0), tmp_path / "none.safetensors", {}, base_hash, progress=False)
    assert not (tmp_path / "none.safetensors").exists()
    original = sdxl.load_unet(base).state_dict()
    layers = lora.targets({k: tuple(v.shape) for k, v in tuned.items()}, sdxl.unet_config(base), 8, 8)
    changes = sorted((tuned[t.module + ".weight"] - original[t.module + ".weight"]).abs().max().item() for t in layers)
    threshold = changes[len(changes) // 2]  # the median layer's largest change
    result = lora.extract(
        base, epoch, settings(min_diff=threshold), tmp_path / "some.safetensors", {}, base_hash, progress=False
    )
    assert len(result.skipped) == 788 // 2 + 1 and result.layers + len(result.skipped) == 788


def test_the_change_is_measured_from_the_base_in_the_epochs_precision(pair, tmp_path):
    """A bf16 epoch that training never moved equals bf16(base): no change at all, not the rounding
    of the fp32 base to bf16 (which a LoRA would otherwise spend its rank on)."""
    base, _, base_hash, _ = pair
    untouched = tmp_path / "epoch-001.safetensors"
    sdxl.save_safetensors({k: v.to(torch.bfloat16) for k, v in sdxl.load_unet(base).state_dict().items()}, untouched)
    with pytest.raises(lora.LoraError, match="no UNet layer changed by more than lora.min_diff"):
        lora.extract(base, untouched, settings(), tmp_path / "out.safetensors", {}, base_hash, progress=False)


def test_metadata_kohya_keys_hashes_and_fixed_order(pair, tmp_path):
    base, epoch, base_hash, _ = pair
    s = settings(save_precision="fp16")
    metadata = lora.kohya_metadata(
        settings=s,
        run="demo",
        epoch=5,
        token="mira",
        resolution=1024,
        base_name="tiny.safetensors",
        base_hash=base_hash,
    )
    out = tmp_path / "demo.safetensors"
    lora.extract(base, epoch, s, out, metadata, base_hash, progress=False)
    with safe_open(str(out), "pt") as f:
        written = f.metadata()
        assert all(f.get_tensor(k).dtype == torch.float16 for k in f.keys())
    assert written["ss_network_module"] == "networks.lora" and written["ss_base_model_version"] == "sdxl_base_v1-0"
    assert (written["ss_network_dim"], written["ss_network_alpha"]) == ("8", "8.0")
    assert json.loads(written["ss_network_args"]) == {"conv_dim": "8", "conv_alpha": "8.0"}
    assert written["modelspec.architecture"] == "stable-diffusion-xl-v1-base/lora"
    assert (written["modelspec.title"], written["modelspec.trigger_phrase"]) == ("demo", "mira")
    assert "epoch 5" in written["modelspec.description"] and base_hash in written["modelspec.description"]
    assert not any("date" in k for k in written)
    raw = out.read_bytes()
    length = int.from_bytes(raw[:8], "little")
    assert written["sshs_model_hash"] == hashlib.sha256(raw[8 + length :]).hexdigest()  # the tensor data's hash
    header = json.loads(raw[8 : 8 + length])
    assert list(header["__metadata__"]) == sorted(written)  # fixed order: the same bytes on a rebuild


class Warnings(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.records = []

    def emit(self, record):
        self.records.append(record.getMessage())


def test_diffusers_load_lora_weights_takes_every_key_and_gives_the_tuned_unet(pair, extracted):
    from diffusers import StableDiffusionXLPipeline

    base, epoch, _, tuned = pair
    out, _ = extracted
    tokenizer, tokenizer_2 = sdxl.tokenizers()
    pipe = StableDiffusionXLPipeline.from_single_file(
        str(base),
        config=str(sdxl.MODEL_CONFIGS / "tiny"),
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        local_files_only=True,
    )
    caught = Warnings()
    for name in ("diffusers", "peft"):
        logging.getLogger(name).addHandler(caught)
        logging.getLogger(name).setLevel(logging.WARNING)  # sdxl.load_sdxl, run by other tests, silences them
    try:
        pipe.load_lora_weights(str(out))
    finally:
        for name in ("diffusers", "peft"):
            logging.getLogger(name).removeHandler(caught)
    # no unexpected or missing keys; only "no keys for the text encoders", which are frozen and not in the file
    assert [m for m in caught.records if not m.startswith("No LoRA keys associated to CLIPTextModel")] == []
    assert len(caught.records) == 2
    assert sum(1 for m in pipe.unet.modules() if hasattr(m, "lora_A") and len(m.lora_A)) == 788
    pipe.fuse_lora()
    pipe.unload_lora_weights()
    fused, original = pipe.unet.state_dict(), sdxl.load_unet(base).state_dict()
    for name in (
        "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q.weight",
        "up_blocks.0.upsamplers.0.conv.weight",
        "up_blocks.1.resnets.0.conv_shortcut.weight",
        "mid_block.resnets.1.time_emb_proj.weight",
    ):
        assert torch.allclose(fused[name], tuned[name], atol=1e-5), name  # base + LoRA = the fine-tuned weight
        assert not torch.allclose(fused[name], original[name], atol=1e-5), name


def test_verification_scores_the_right_lora_high_and_wrong_ones_low(pair, extracted, tmp_path):
    base, epoch, _, _ = pair
    out, _ = extracted
    good = lora_verify.verify(base, epoch, out, settings(), "mira")
    assert good["reproduced"] > 0.999
    assert good["loaded_by_diffusers"] == {"layers_in_file": 788, "layers_adapted": 788, "warnings": []}

    with safe_open(str(out), "pt") as f:
        factors = {k: f.get_tensor(k) for k in f.keys()}
    flipped = {k: -v if k.endswith("lora_up.weight") else v for k, v in factors.items()}  # the change's sign flipped
    sdxl.save_safetensors(flipped, tmp_path / "flipped.safetensors")
    assert lora_verify.verify(base, epoch, tmp_path / "flipped.safetensors", settings(), "mira")["reproduced"] < -0.9

    swapped = dict(factors)  # q's factors in k's place and k's in q's, in every attention
    for name in [k for k in factors if "_attn1_to_q." in k]:  # self-attention: q and k of the same shape
        other = name.replace("_to_q.", "_to_k.")
        swapped[name], swapped[other] = factors[other], factors[name]
    sdxl.save_safetensors(swapped, tmp_path / "swapped.safetensors")
    rows = {r["name"]: r for r in lora_verify.layer_checks(base, epoch, tmp_path / "swapped.safetensors", settings())}
    assert rows["lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q"]["relative_error"] > 1
    assert rows["lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q"]["energy_retained"] < 0.5
    assert rows["lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_v"]["relative_error"] < 1e-4


def test_what_diffusers_says_of_a_file_is_heard(pair, extracted, tmp_path):
    base, _, _, _ = pair
    out, _ = extracted
    with safe_open(str(out), "pt") as f:
        factors = {k: f.get_tensor(k) for k in f.keys()}
    sdxl.load_sdxl(base, with_unet=False)  # which turns diffusers' warnings off for good
    dora = factors | {"lora_unet_input_blocks_4_1_proj_in.dora_scale": torch.ones(1, 64)}
    sdxl.save_safetensors(dora, tmp_path / "dora.safetensors")
    adapted, warnings = lora_verify.load_lora_with_diffusers(sdxl.load_unet(base), tmp_path / "dora.safetensors")
    assert adapted == 788 and any("DoRA" in w for w in warnings)
    broken = {k: v for k, v in factors.items() if k != "lora_unet_input_blocks_4_1_proj_in.lora_up.weight"}
    sdxl.save_safetensors(broken, tmp_path / "broken.safetensors")
    with pytest.raises(lora.LoraError, match=r"diffusers cannot load .*broken\.safetensors: KeyError"):
        lora_verify.load_lora_with_diffusers(sdxl.load_unet(base), tmp_path / "broken.safetensors")


def test_bad_input_is_named_and_nothing_is_written(pair, tmp_path, tiny_model):
    base, epoch, base_hash, tuned = pair
    out = tmp_path / "out.safetensors"

    def fails(message, *, epoch_file=epoch, base_model=base, target=out, expected_hash=base_hash, **changes):
        with pytest.raises(lora.LoraError, match=message):
            lora.extract(base_model, epoch_file, settings(**changes), target, {}, expected_hash, progress=False)
        assert not target.exists()

    pickled = tmp_path / "epoch-005.ckpt"
    pickled.write_bytes(b"not really")
    fails(r"epoch file .*epoch-005\.ckpt is a Python pickle \(\.ckpt\)", epoch_file=pickled)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00" * 64)
    fails(r"epoch file .*garbage\.safetensors: not a readable \.safetensors file", epoch_file=garbage)
    partial = tmp_path / "partial.safetensors"
    sdxl.save_safetensors({k: v for k, v in tuned.items() if not k.startswith("up_blocks.")}, partial)
    fails(
        r"epoch file .*partial\.safetensors is not the SDXL UNet of the base model's config .*UNet weights missing",
        epoch_file=partial,
    )
    reshaped = tmp_path / "reshaped.safetensors"
    sdxl.save_safetensors(tuned | {"conv_in.weight": torch.zeros(64, 4, 3, 3)}, reshaped)
    fails(r"reshaped\.safetensors .*conv_in\.weight is \[64, 4, 3, 3\], expected \[32, 4, 3, 3\]", epoch_file=reshaped)
    fails(
        r"was trained from another base model .* Set base_model to the one the run trained from", expected_hash="0" * 64
    )
    blocker = tmp_path / "a file"
    blocker.write_text("")
    fails(r"cannot write .*a file/out\.safetensors", target=blocker / "out.safetensors")
