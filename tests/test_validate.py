"""Validation's parts on their own: samples (same seed, same image; A1111's parameters chunk), the
sampled epochs, the evaluation prompts from the intent, coverage, TensorBoard's smoothing and the
sheets' layout."""

import dataclasses

import numpy as np
import pytest
from PIL import Image

from charlora import plan, refinement, sample, validate_plots, validate_prompts
from charlora.captions import Vocabulary, split_caption
from charlora.intent import Intent, coverage, intent_prompts, phrasing_variants
from conftest import REPO

SETTINGS = sample.Settings(
    sampler="euler", steps=3, cfg=5.0, negative_prompt="blurry", resolution=64, seeds=2, device="cpu"
)
PROMPTS = [sample.Prompt("p01", "token", "mira"), sample.Prompt("p02", "extra", "mira, smiling, close-up")]


@pytest.fixture(scope="module")
def embeddings(tiny_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("embeddings") / "prompts.safetensors"
    sample.write_embeddings(tiny_model, PROMPTS, SETTINGS.negative_prompt, path)
    return path


@pytest.fixture(scope="module")
def base_samples(tiny_model, embeddings, tmp_path_factory):
    out = tmp_path_factory.mktemp("samples") / "epoch-000"
    return out, sample.sample_epoch(tiny_model, None, PROMPTS, embeddings, SETTINGS, out, "demo-base", progress=False)


def pixels(path):
    return np.asarray(Image.open(path).convert("RGB"))


def test_every_prompt_and_seed_is_a_png_with_a1111_parameters(base_samples):
    out, paths = base_samples
    assert [p.name for p in paths] == ["p01-s0.png", "p01-s1.png", "p02-s0.png", "p02-s1.png"]
    assert sorted(p.name for p in out.iterdir()) == [p.name for p in paths]  # nothing else: no temp files
    with Image.open(out / "p02-s1.png") as image:
        assert image.size == (64, 64)
        assert image.text["parameters"] == (
            "mira, smiling, close-up\nNegative prompt: blurry\n"
            "Steps: 3, Sampler: Euler, CFG scale: 5, Seed: 1, Size: 64x64, Model: demo-base, Version: charlora"
        )
    assert not np.array_equal(pixels(out / "p01-s0.png"), pixels(out / "p01-s1.png"))  # seeds differ
    assert not np.array_equal(pixels(out / "p01-s0.png"), pixels(out / "p02-s0.png"))  # prompts matter


def test_same_seed_same_image(base_samples, tiny_model, embeddings, tmp_path):
    out, paths = base_samples
    again = sample.sample_epoch(
        tiny_model, None, PROMPTS[1:], embeddings, SETTINGS, tmp_path / "again", "demo-base", progress=False
    )
    assert [p.read_bytes() for p in again] == [p.read_bytes() for p in paths[2:]]


def test_encoded_once_the_prompts_draw_what_the_pipeline_draws_from_their_text(base_samples, tiny_model):
    """The embeddings file gives the pixels diffusers' pipeline gives when it encodes the prompt itself."""
    import diffusers
    import torch

    from charlora import sdxl

    out, _ = base_samples
    parts = sdxl.load_sdxl(tiny_model)
    scheduler = diffusers.EulerDiscreteScheduler.from_pretrained(sdxl.config_dir(tiny_model), subfolder="scheduler")
    pipe = diffusers.StableDiffusionXLPipeline(**vars(parts), scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    latents = torch.randn((1, 4, 8, 8), generator=torch.Generator().manual_seed(1))
    image = pipe(
        prompt=PROMPTS[1].text,
        negative_prompt=SETTINGS.negative_prompt,
        height=64,
        width=64,
        num_inference_steps=SETTINGS.steps,
        guidance_scale=SETTINGS.cfg,
        latents=latents,
    ).images[0]
    assert np.array_equal(np.asarray(image), pixels(out / "p02-s1.png"))


def test_embeddings_of_other_prompt_texts_are_refused(embeddings):
    changed = [PROMPTS[0], sample.Prompt("p02", "extra", "mira, frowning")]
    with pytest.raises(ValueError, match="p02 were made from other prompt texts"):
        sample.read_embeddings(embeddings, changed, SETTINGS.negative_prompt)
    with pytest.raises(ValueError, match="negative"):
        sample.read_embeddings(embeddings, PROMPTS, "")


@pytest.mark.parametrize("sampler", ["euler", "euler_a"])
def test_an_image_does_not_depend_on_its_batch(tiny_model, embeddings, tmp_path, sampler):
    """Batches of 3 over 4 images (a full batch, then one of 1): each image's noise, the ancestral
    sampler's included, comes from its own seed, so a batch changes at most the last bits of a float."""
    settings = dataclasses.replace(SETTINGS, sampler=sampler)
    alone, batched = (
        sample.sample_epoch(
            tiny_model,
            None,
            PROMPTS,
            embeddings,
            dataclasses.replace(settings, batch=batch),
            tmp_path / f"batch-{batch}",
            "demo-base",
            progress=False,
        )
        for batch in (1, 3)
    )
    for one, other in zip(alone, batched):
        difference = np.abs(pixels(one).astype(int) - pixels(other).astype(int))
        assert difference.max() <= 1, (one.name, difference.max())
    assert not np.array_equal(pixels(batched[0]), pixels(batched[1]))  # seeds differ within a batch


def test_sampled_epochs_are_0_every_nth_saved_and_the_last():
    assert plan.sampled_epochs([1, 2, 3, 4], 2) == [0, 2, 4]
    assert plan.sampled_epochs(list(range(1, 11)), 3) == [0, 3, 6, 9, 10]
    assert plan.sampled_epochs([2, 4, 5], 1) == [0, 2, 4, 5]
    assert plan.sampled_epochs([5], 4) == [0, 5]


def test_prompts_table_round_trips_odd_text(tmp_path):
    prompts = [sample.Prompt("p01", 'validation photo café "1"', "mira, {smiling}\ttab, 'quoted'")]
    sample.write_prompts(tmp_path / "prompts.tsv", prompts)
    assert sample.read_prompts(tmp_path / "prompts.tsv") == prompts


def test_smoothing_is_tensorboards_debiased_moving_average():
    values = [4.0, 2.0, 3.0]
    weight = 0.9
    expected, average = [], 0.0
    for i, v in enumerate(values, start=1):
        average = weight * average + (1 - weight) * v
        expected.append(average / (1 - weight**i))
    assert validate_plots.smoothed(values, weight) == pytest.approx(expected)
    assert validate_plots.smoothed([2.5] * 50) == pytest.approx([2.5] * 50)  # debiased: no pull towards 0
    assert validate_plots.smoothed(values)[0] == 4.0


def test_sheet_puts_each_sample_in_its_row_and_column(tmp_path):
    colours = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255)}
    paths = {}
    for name, rgb in colours.items():
        paths[name] = tmp_path / f"{name}.png"
        Image.new("RGB", (40, 20), rgb).save(paths[name])
    sheet = validate_plots.mosaic([[paths["red"], paths["green"]], [paths["blue"], None]], 40)
    assert sheet.size == (80, 80)
    assert sheet.getpixel((20, 20)) == colours["red"] and sheet.getpixel((60, 20)) == colours["green"]
    assert sheet.getpixel((20, 60)) == colours["blue"] and sheet.getpixel((60, 60)) == (128, 128, 128)
    assert sheet.getpixel((20, 5)) == (128, 128, 128)  # a wide image is centred, not stretched
    validate_plots.labelled_sheet(
        [[paths["red"], paths["green"]]],
        ["p01: mira, {odd} 'text'"],
        ["base", "epoch 2"],
        "title",
        tmp_path / "sheet.png",
    )
    assert Image.open(tmp_path / "sheet.png").size[0] > 80


def test_loss_curves_read_every_epochs_metrics(tmp_path):
    metrics = {}
    for epoch in (1, 2):
        metrics[epoch] = tmp_path / f"epoch-{epoch:03d}.metrics.tsv"
        metrics[epoch].write_text(
            "kind\tstep\ttimestep\tloss\tlr\n"
            f"train\t{2 * epoch - 1}\t\t0.5\t1e-06\ntrain\t{2 * epoch}\t\t0.4\t1e-06\n"
            f"val\t\t62\t0.{epoch}\t\nval\t\t937\t0.0{epoch}\t\nval\t\tmean\t0.3\t\n"
        )
    train, val = validate_plots.read_losses(metrics)
    assert train == [(1, 0.5), (2, 0.4), (3, 0.5), (4, 0.4)]
    assert val == {1: {"62": 0.1, "937": 0.01, "mean": 0.3}, 2: {"62": 0.2, "937": 0.02, "mean": 0.3}}
    validate_plots.loss_curves(metrics, "title", tmp_path / "losses.png")
    assert Image.open(tmp_path / "losses.png").size == (1300, 450)


def test_no_legend_hides_a_line_of_the_losses(tmp_path):
    metrics = {}
    for epoch in range(1, 9):  # the selected epoch last, in the corner where a legend used to stand
        metrics[epoch] = tmp_path / f"epoch-{epoch:03d}.metrics.tsv"
        rows = "".join(f"val\t\t{t}\t{1 / (epoch + t)}\t\n" for t in (62, 187, 312, 437, 562, 687, 812, 937))
        metrics[epoch].write_text(
            f"kind\tstep\ttimestep\tloss\tlr\ntrain\t{epoch}\t\t0.5\t1e-06\n{rows}val\t\tmean\t0.3\t\n"
        )
    fig = validate_plots.loss_figure(metrics, "title", selected=8)
    fig.canvas.draw()
    for ax in fig.axes[1:]:
        legend = ax.get_legend()
        labels = [t.get_text() for t in legend.get_texts()]
        assert labels[-3:] == ["mean (raw)", "mean (smoothed)", "selected: epoch 8"]
        assert not legend.get_window_extent().overlaps(ax.get_window_extent())  # beside the plot, not on it
        assert fig.bbox.contains(*legend.get_window_extent().corners()[-1])  # and inside the picture


# --- the intent ----------------------------------------------------------------------------------

VOCABULARY = Vocabulary.load(REPO / "config" / "caption_slots.yaml")
INTENT = {
    "poses": ["standing", "sitting"],
    "expressions": ["smile", "serious", "surprised"],
    "scenes": ["beach"],
    "backgrounds": ["plain white background"],
    "framings": ["close-up", "full body"],
    "angles": ["from below"],
    "lighting": ["golden hour"],
    "notes": "warm, candid",
}


def test_intent_prompts_carry_every_value_in_caption_order():
    intent = Intent.from_config(INTENT, VOCABULARY)
    assert intent.values["expressions"] == ["smiling", "serious", "surprised"]  # canonical wording, as captions use
    prompts, missed = intent_prompts("mira", intent, VOCABULARY, cap=12)
    assert len(prompts) == 3 and not missed  # as many as the longest list: 3 expressions
    for field, value in intent.listed():
        assert any(value in split_caption(p) for p in prompts), value
    for prompt in prompts:
        parts = split_caption(prompt)
        assert parts[0] == "mira" and len(parts) == 7  # token, pose, expression, lighting, background, framing, angle
        slots = [VOCABULARY.slot_of(p) for p in parts[1:4]]
        assert slots == ["pose", "expression", "lighting"]
        assert parts[-2] in ("close-up", "full body") and parts[-1] == "from below"
    assert intent_prompts("mira", intent, VOCABULARY, cap=12)[0] == prompts  # a fixed selection
    capped, missed = intent_prompts("mira", intent, VOCABULARY, cap=2)
    assert len(capped) == 2 and len(missed) == 1 and missed[0] in ("smiling", "serious", "surprised")


def test_a_plain_string_intent_is_notes_only():
    intent = Intent.from_config("studio and outdoor scenes, smiling", VOCABULARY)
    assert intent.notes == "studio and outdoor scenes, smiling" and intent.listed() == []
    assert intent_prompts("mira", intent, VOCABULARY, cap=12) == ([], [])


def test_phrasing_variants_swap_a_value_for_its_synonym():
    variants = phrasing_variants(["mira, standing, smiling, close-up", "mira, sitting, serious, full body"], VOCABULARY)
    assert variants == [(0, "smiling -> grin", "mira, standing, grin, close-up")]
    assert VOCABULARY.canonical("grin") == "smiling"


def test_evaluation_prompts_in_order_with_origins():
    prompts, missed = validate_prompts.compose(
        "mira",
        Intent.from_config(INTENT, VOCABULARY),
        VOCABULARY,
        12,
        {"café [2]": "mira, sitting, serious"},
        ["mira, in the rain"],
    )
    origins = [p.origin for p in prompts]
    assert origins == [
        "token",
        "intent",
        "intent",
        "intent",
        "variant of p02: close-up -> portrait",
        "variant of p03: smiling -> grin",
        "validation photo café [2]",
        "extra",
    ]
    assert prompts[5].text == prompts[2].text.replace("smiling", "grin")
    assert [p.name for p in prompts] == [f"p{i:02d}" for i in range(1, 9)] and not missed


def test_a_few_training_captions_are_the_memorisation_probe_last():
    """validate.train_captions: that many training photos' captions, spread over the photos in name order,
    after every other prompt; a caption that repeats an earlier prompt is not sampled twice."""
    training = {f"t{i:02d} [x]": f"mira, pose {i}" for i in range(10)} | {"t99": "mira, in the rain"}
    prompts, _ = validate_prompts.compose(
        "mira",
        Intent.from_config(INTENT, VOCABULARY),
        VOCABULARY,
        12,
        {"café [2]": "mira, sitting, serious"},
        ["mira, in the rain"],
        training,
        3,
    )
    probe = [p for p in prompts if p.origin.startswith("training photo ")]
    assert [p.origin for p in probe] == ["training photo t00 [x]", "training photo t03 [x]", "training photo t07 [x]"]
    assert prompts[-3:] == probe and probe[0].text == "mira, pose 0"
    assert [validate_prompts.training_photo(p.origin) for p in probe] == ["t00 [x]", "t03 [x]", "t07 [x]"]
    assert validate_prompts.original(prompts[4].origin) == "p02" and validate_prompts.original("extra") is None
    assert validate_prompts.spread(["b", "a"], 5) == ["a", "b"] and validate_prompts.spread(["a", "b"], 0) == []
    everything, _ = validate_prompts.compose(
        "mira",
        Intent.from_config(INTENT, VOCABULARY),
        VOCABULARY,
        12,
        {},
        ["mira, in the rain"],
        {"t99": "mira, in the rain"},
        3,
    )
    assert not any(p.origin.startswith("training photo") for p in everything)  # the extra prompt already


def test_coverage_counts_the_captions_that_carry_each_value():
    intent = Intent.from_config(
        {"scenes": ["park", "beach"], "expressions": ["smile"], "poses": ["arms up"]}, VOCABULARY
    )
    captions = {
        "a": "mira, standing, smile, park background, full body",
        "b": "mira, waving, smiling, park",
        "c": "mira, arms up, serious, parking lot",
    }
    assert coverage(intent, captions, VOCABULARY) == [
        ("poses", "arms up", 1),
        ("expressions", "smiling", 2),
        ("scenes", "park", 2),
        ("scenes", "beach", 0),
    ]


# --- the refinement pass -------------------------------------------------------------------------


def test_refinement_samples_the_saved_epochs_within_8_of_the_selections_start():
    saved = list(range(1, 31))
    sampled = plan.sampled_epochs(saved, 5)  # 0, 5, 10, ..., 30
    train = {e: 1.0 / e**2 for e in saved}  # bends early
    val = {e: (e - 20) ** 2 / 100 + 1 for e in saved}  # lowest at 20
    result = refinement.refine(saved, sampled, train, val)
    assert result.start == 20 and result.epochs == [12, 13, 14, 16, 17, 18, 19, 21, 22, 23, 24, 26, 27, 28]
    assert refinement.refine([2, 4], [0, 2, 4], {2: 1.0, 4: 0.5}, {2: 1.0, 4: 0.9}).epochs == []


def test_refinement_table_says_why(tmp_path):
    result = refinement.Refinement(start=8, why="", epochs=[6, 7, 14])
    refinement.write_table(tmp_path / "refine.tsv", result)
    assert refinement.read_table(tmp_path / "refine.tsv") == [6, 7, 14]
    rows = (tmp_path / "refine.tsv").read_text().splitlines()
    assert rows[1:] == [
        "6\t2 from the selection's start, epoch 8: a candidate of the selection",
        "7\t1 from the selection's start, epoch 8: a candidate of the selection",
        "14\t6 from the selection's start, epoch 8: one step beyond the candidates",
    ]
