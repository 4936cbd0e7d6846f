"""The miniature world (miniature.py) and the pixel probe that reads its pictures (pixel_probe.py):
the world's pictures are what the renderer draws, captioned in the caption vocabulary; the probe
reads the backdrop and outfit the renderer drew; the pretraining gives the same bytes twice."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from charlora import demo, demo_render, miniature, pixel_probe, sdxl
from charlora.captions import Vocabulary
from workflow import make_workspace, snakemake

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def world():
    """40 pictures of the world (seed 11: not the pretraining's) with what was drawn."""
    shots = [miniature.person(11, i) for i in range(40)]
    return [(shot, miniature.picture(shot)) for shot in shots]


def test_the_world_is_drawn_whole_in_three_shapes_and_captioned_in_the_vocabulary(world):
    vocabulary = Vocabulary.load(REPO / "config" / "caption_slots.yaml")
    assert {picture.size for _, picture in world} == set(miniature.SIZES)
    for shot, picture in world:
        assert shot == miniature.person(11, int(shot.name[7:12]))  # the same person from the same seed
        assert shot.look != demo.MIRA and shot.look.hair != demo.MIRA.hair
        tags = miniature.caption(shot).split(", ")
        assert tags[0] == miniature.CLASS_WORD
        assert [vocabulary.slot_of(vocabulary.canonical(t)) for t in tags[1:]] == vocabulary.order
        # on the canvas: no column of the padding black that a crop beyond the canvas leaves
        columns = np.asarray(picture).max(axis=(0, 2))
        assert columns.min() > 20, f"{shot} drawn beyond the canvas"


def test_the_probe_reads_the_backdrop_and_outfit_the_renderer_drew(world):
    backdrops = outfits = 0
    for shot, picture in world:
        reading = pixel_probe.read(picture, shot.framing)
        alike = pixel_probe.backdrop_classes(shot.framing, pixel_probe.aspect(picture))[shot.background]
        backdrops += reading.backdrop in alike
        outfits += reading.outfit == shot.outfit
    assert backdrops >= 0.95 * len(world)
    assert outfits >= 0.9 * len(world)


def test_adherence_is_the_share_of_the_prompted_backdrop_and_outfit_shown(world):
    shot, picture = next((s, p) for s, p in world if s.background == "brick wall" and s.framing != "close_up")
    other_outfit = next(o for o in demo.OUTFITS if o != shot.outfit)
    assert pixel_probe.adherence(picture, miniature.caption(shot)) == 1.0
    assert pixel_probe.adherence(picture, miniature.caption(shot).replace(shot.outfit, other_outfit)) == 0.5
    assert pixel_probe.adherence(picture, "mira, smiling") is None  # nothing the probe reads
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (128, 128, 3), dtype=np.uint8))
    assert pixel_probe.adherence(noise, "mira, red dress, grey studio background, mid shot") in (0.0, 0.5, 1.0)
    assert pixel_probe.asked("Mira, Blue Shirt, sky background, close-up") == pixel_probe.Asked(
        "sky", "blue shirt", "close_up"
    )


def test_pretraining_gives_the_same_weights_twice_and_a_file_charlora_reads_as_the_miniature(tmp_path):
    settings = miniature.Settings(
        pictures=12,
        vae_any_hair=2,
        vae_steps=2,
        vae_batch=4,
        unet_steps=2,
        unet_batch=4,
        warmup=1,
        threads=1,
        text_token_scale=20.0,  # not the default, so that full_checkpoint must read it from the metadata
    )
    first = miniature.pretrain(settings, tmp_path / "a", probe_seeds=0)
    miniature.pretrain(settings, tmp_path / "b", probe_seeds=0)
    a, b = (tmp_path / run / "miniature.safetensors" for run in ("a", "b"))
    assert a.read_bytes() == b.read_bytes()
    assert first["vae_scaling_factor"] > 0
    losses = json.loads((tmp_path / "a" / "losses.json").read_text())
    assert len(losses["vae"]) == 2 and len(losses["unet"]) == 2
    full = miniature.full_checkpoint(a, tmp_path / "full.safetensors")
    assert sdxl.check_base_model(full) == "miniature"
    # the text encoders the UNet was trained with, built again at the run's scales
    loaded = sdxl.load_sdxl(full, with_unet=False)
    te, _ = miniature.build("text_encoders", settings.seed, 20.0, settings.text_position_scale)
    weights = te.get_input_embeddings().weight
    assert torch.equal(loaded.text_encoder.get_input_embeddings().weight, weights)
    at_clip_init = miniature.text_encoders_of({"seed": settings.seed})[0]
    assert not torch.equal(at_clip_init.get_input_embeddings().weight, weights)


def test_a_continuation_trains_the_unet_on_and_keeps_the_vae_and_text_encoders(tmp_path):
    from safetensors.torch import load_file

    tiny = dict(vae_steps=2, vae_batch=4, unet_batch=4, warmup=1, threads=1, vae_any_hair=2)
    base = miniature.Settings(pictures=12, unet_steps=2, text_token_scale=20.0, **tiny)
    miniature.pretrain(base, tmp_path / "base", probe_seeds=0)
    source = tmp_path / "base" / "miniature.safetensors"
    more = miniature.Settings(pictures=8, unet_steps=3, seed=1, noise_offset=0.3, **tiny)
    for run in ("a", "b"):
        miniature.pretrain(more, tmp_path / run, probe_seeds=0, continue_from=source)
    a, b = (tmp_path / run / "miniature.safetensors" for run in ("a", "b"))
    assert a.read_bytes() == b.read_bytes()
    assert len(json.loads((tmp_path / "a" / "losses.json").read_text())["unet"]) == 3

    before, after = load_file(source), load_file(a)
    assert before.keys() == after.keys()
    vae_keys = [k for k in before if k.startswith("first_stage_model.")]
    unet_keys = [k for k in before if k.startswith("model.diffusion_model.")]
    assert vae_keys and all(torch.equal(before[k], after[k]) for k in vae_keys)
    assert any(not torch.equal(before[k], after[k]) for k in unet_keys)

    made_with, continued = miniature.made_with_settings(a)
    assert made_with["seed"] == 0 and made_with["text_token_scale"] == 20.0
    assert [c["noise_offset"] for c in continued] == [0.3]
    # the text encoders stay those the UNet was first trained with, not the continuation's settings' own
    full = miniature.full_checkpoint(a, tmp_path / "full.safetensors")
    loaded = sdxl.load_sdxl(full, with_unet=False)
    te, _ = miniature.build("text_encoders", 0, 20.0, base.text_position_scale)
    assert torch.equal(loaded.text_encoder.get_input_embeddings().weight, te.get_input_embeddings().weight)


def test_the_text_encoders_state_which_word_each_token_is():
    """At the miniature's embedding scales, a caption's state at its backdrop word changes ten times more with
    that word than with a word before it (at CLIP's own init, about as much: docs/miniature.md)."""
    from dataclasses import asdict, replace

    tokenizers = sdxl.tokenizers()
    shots = [miniature.person(11, i) for i in range(8)]

    def state_at_backdrop(model, shot):
        text = miniature.caption(shot)
        position = len(tokenizers[0](text[: text.index(" background")]).input_ids) - 2  # ids: start, words, end
        return sdxl.encode_prompt(model, text, torch.device("cpu"))["prompt_embeds"][position]

    def changes(encoders):
        model = sdxl.SDXL(None, None, *encoders, *tokenizers)
        by_word = by_prefix = 0.0
        for shot in shots:
            state = state_at_backdrop(model, replace(shot, background="park", pose="standing"))
            by_word += (state - state_at_backdrop(model, replace(shot, background="beach", pose="standing"))).norm()
            by_prefix += (state - state_at_backdrop(model, replace(shot, background="park", pose="walking"))).norm()
        return float(by_word / by_prefix)

    assert changes(miniature.text_encoders_of(asdict(miniature.Settings()))) > 10
    assert changes(miniature.build("text_encoders", 0)) < 2


def test_a_shot_within_max_shift_stays_on_the_canvas():
    for framing in demo.WINDOW_HEADS:
        for size in ((384, 512), (512, 512), (512, 384)):
            limit = demo_render.max_shift(framing, size)
            if limit < 0:
                continue
            for cx in (demo_render.CANVAS[0] / 2 - 40, demo_render.CANVAS[0] / 2 + 40):
                for shift in (-limit - 0.04, limit + 0.04):
                    left, _, right, _ = demo_render._crop_box(framing, size, cx, 180.0, shift)
                    assert 0 <= left and right <= demo_render.CANVAS[0], (framing, size, cx, shift)


MINIATURE_WEIGHTS = REPO / "config" / "models" / "miniature" / "miniature.safetensors"


def test_the_committed_miniature_weights_are_small_and_match_their_config():
    from safetensors import safe_open

    assert MINIATURE_WEIGHTS.stat().st_size <= 20_000_000
    with safe_open(str(MINIATURE_WEIGHTS), framework="pt") as f:
        metadata = f.metadata()
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}
    vae_config = json.loads((MINIATURE_WEIGHTS.parent / "vae" / "config.json").read_text())
    # the sampler and the fine-tune scale latents by the config's factor: the one the UNet was trained at
    assert vae_config["scaling_factor"] == float(metadata["vae_scaling_factor"])
    assert json.loads(metadata["settings"])["device"] == "cpu"


def test_the_workflow_builds_the_miniature_base_from_the_committed_weights(tmp_path):
    from safetensors.torch import load_file

    workspace = make_workspace(tmp_path / "workspace")
    target = ("results/models/miniature.safetensors", "--config", "base_model=miniature")
    snakemake(workspace, *target)
    built = workspace / target[0]
    assert sdxl.check_base_model(built) == "miniature"
    first = built.read_bytes()
    snakemake(workspace, *target, "--forcerun", "miniature_model")
    assert built.read_bytes() == first  # same bytes when built again
    committed, full = load_file(MINIATURE_WEIGHTS), load_file(built)
    assert all(torch.equal(full[k], v.float()) for k, v in committed.items())
    assert len(full) > len(committed)  # and the text encoders


def test_miras_hair_is_read_in_her_pictures_more_than_in_anyone_elses(world):
    """mira's hair colour, which no person of the world has, shows in her drawn photos (from 1.5 % of the
    figure in a full-body shot; at least 15 % of the head's place) and hardly in any world picture: how a
    fine-tune's learning of her trait is read (trait_share: miniature.trait_by_epoch, the demo's test)."""
    shares = [pixel_probe.colour_share(miniature.picture(s), demo.MIRA.hair, s.framing) for s in demo.SHOTS[:6]]
    assert min(shares) >= 0.015
    assert max(pixel_probe.colour_share(p, demo.MIRA.hair, s.framing) for s, p in world) < 0.01
    heads = [pixel_probe.trait_share(miniature.picture(s), demo.MIRA.hair, s.framing) for s in demo.SHOTS[:6]]
    assert min(heads) >= 0.15  # of the head's place: a sample of hers counts from 0.1 (miniature.trait_by_epoch)
    assert max(pixel_probe.trait_share(p, demo.MIRA.hair, s.framing) for s, p in world) < 0.02


def test_the_trait_is_counted_by_seed_and_by_framing(world, tmp_path):
    """A validation folder where one seed draws mira and the other draws the world's people: the epoch
    reads half its samples as showing her hair, all of them seed 0's, one close-up and one mid shot;
    a prompt that does not name her is not counted."""
    from charlora import sample

    prompts = [
        sample.Prompt("p01", "intent", "mira, smiling, blue shirt, grey studio background, close-up"),
        sample.Prompt("p02", "intent", "mira, waving, blue shirt, grey studio background, mid shot"),
        sample.Prompt("p03", "intent", "a person, park background, full body"),
    ]
    sample.write_prompts(tmp_path / "prompts.tsv", prompts)
    hers = {"p01": demo.SHOTS[0], "p02": demo.SHOTS[5], "p03": demo.SHOTS[5]}
    assert (hers["p01"].framing, hers["p02"].framing) == ("close_up", "mid_shot")
    others = iter(picture for _, picture in world)
    for epoch, mira_at in ((0, ()), (4, (0,))):
        folder = tmp_path / f"epoch-{epoch:03d}"
        folder.mkdir()
        for prompt in prompts:
            for seed in (0, 1):
                picture = miniature.picture(hers[prompt.name]) if seed in mira_at else next(others)
                picture.save(folder / sample.image_name(prompt, seed))
    readings = miniature.trait_by_epoch(tmp_path, "mira")
    assert readings[0].shown == 0.0 and readings[0].by_seed == {0: (0, 2), 1: (0, 2)}
    assert readings[4].shown == 0.5 and readings[4].samples == 4
    assert readings[4].by_seed == {0: (2, 2), 1: (0, 2)}
    assert readings[4].by_framing == {"close_up": (1, 2), "mid_shot": (1, 2)}


def test_a_backdrop_cast_towards_her_hair_colour_is_not_read_as_her_hair():
    """A weak model's colour cast can turn a whole backdrop towards mira's magenta (the miniature base's
    brick walls, under some seeds): every backdrop alone, so cast, is her colour for colour_share but
    not hair for trait_share, which reads the head's place against the sample's own backdrop."""
    for backdrop in demo.BACKDROPS:
        for framing in ("close_up", "mid_shot", "full_body"):
            crop = demo_render.backdrop_crop(backdrop, framing, "soft frontal light", 0.0, 3, (128, 128))
            wall = np.asarray(crop, dtype=float)
            cast = Image.fromarray(np.clip(wall * [0.95, 0.35, 1.0] + [0, 0, 60], 0, 255).astype(np.uint8))
            if backdrop == "brick wall":
                assert pixel_probe.colour_share(cast, demo.MIRA.hair, framing) > 0.5
            assert pixel_probe.trait_share(cast, demo.MIRA.hair, framing) < 0.1, (backdrop, framing)
