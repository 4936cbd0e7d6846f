"""The training pieces, tested directly: Adafactor against transformers', stochastic rounding, the
fused step, buckets and size conditioning, the split, the masked loss, and whole blocks of the
tiny model: chained blocks equal one block bit for bit, for each optimizer and precision, and two
processes (DDP) equal one process accumulating two batches."""

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

import badfiles
from charlora import buckets, disk_space, optim, plan, sdxl, split
from charlora.config import defaults
from charlora.diffusion import masked_mse, val_timesteps
from charlora.train import Sample, Settings, TrainingDiverged, train_block, write_metrics, EpochResult
from charlora.train_state import TrainerState


# --- optimizer ---------------------------------------------------------------------------------


def test_adafactor_matches_transformers():
    from transformers.optimization import Adafactor as Reference

    torch.manual_seed(0)
    shapes = [(8, 6), (6,), (4, 3, 2, 2)]  # matrix (factored), vector, conv kernel (factored over the last two)
    ours = [torch.nn.Parameter(torch.randn(s)) for s in shapes]
    theirs = [torch.nn.Parameter(p.detach().clone()) for p in ours]
    a = optim.Adafactor(ours, lr=1e-3)
    b = Reference(theirs, lr=1e-3, relative_step=False, scale_parameter=False, warmup_init=False)
    for _ in range(5):
        for p, q in zip(ours, theirs):
            p.grad = torch.randn_like(p)
            q.grad = p.grad.clone()
        a.step()
        b.step()
    for p, q in zip(ours, theirs):
        assert torch.allclose(p, q, rtol=0, atol=1e-7)


def test_a_4e6_step_changes_bf16_weights_only_with_stochastic_rounding():
    start = torch.full((200_000,), 1.0, dtype=torch.bfloat16)  # bf16 spacing below 1.0 is 2^-8 = 0.0039
    rounded = torch.nn.Parameter(start.clone())
    rounded.grad = torch.ones_like(rounded)
    opt = optim.Adafactor([rounded], lr=4e-6)
    opt.step()  # first step: update = grad / |grad| = 1, so every weight should move by -4e-6
    change = rounded.detach().float() - 1.0
    assert (change != 0).sum() > 50  # about 4e-6 / 0.0039 = 0.1 % of the weights step down one bf16 spacing
    assert math.isclose(change.mean().item(), -4e-6, rel_tol=0.25)  # and the expected change is exact
    nearest = start.float() - 4e-6
    assert torch.equal(nearest.to(torch.bfloat16), start)  # rounding to nearest would lose the step entirely


def tiny_unet_step(unet, seed):
    g = torch.Generator().manual_seed(seed)
    latents = torch.randn(2, 4, 8, 8, generator=g)
    prompt = torch.randn(2, 77, 96, generator=g)
    added = {"text_embeds": torch.randn(2, 64, generator=g), "time_ids": torch.tensor([[64.0, 64, 0, 0, 64, 64]] * 2)}
    pred = unet(
        latents.to(unet.dtype),
        torch.tensor([10, 500]),
        prompt.to(unet.dtype),
        added_cond_kwargs={k: v.to(unet.dtype) for k, v in added.items()},
    ).sample
    return ((pred.float() - latents) ** 2).mean()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_backward_gives_the_weights_of_the_usual_step(dtype):
    unet, *_ = sdxl.build_random("tiny", seed=1)
    unets = [unet.to(dtype), sdxl.build_random("tiny", seed=1)[0].to(dtype)]
    plain = optim.Adafactor(unets[0].parameters(), lr=1e-3)
    fused_opt = optim.Adafactor(unets[1].parameters(), lr=1e-3)
    fused = optim.FusedBackward(fused_opt)
    for step in range(3):
        plain.step_seed = fused_opt.step_seed = 1000 + step
        tiny_unet_step(unets[0], step).backward()
        plain.step()
        plain.zero_grad(set_to_none=True)
        tiny_unet_step(unets[1], step).backward()  # the update happens inside backward
        assert all(p.grad is None for p in unets[1].parameters())  # gradients freed as they were used
    fused.remove()
    a, b = unets[0].state_dict(), unets[1].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(
        a["conv_in.weight"], sdxl.build_random("tiny", seed=1)[0].to(dtype).state_dict()["conv_in.weight"]
    )


def test_adamw8bit_runs_or_says_why():
    p = torch.nn.Parameter(torch.randn(4096))
    try:
        opt = optim.make_optimizer("adamw8bit", [p], lr=1e-3)
    except RuntimeError as exc:
        assert "adamw8bit needs bitsandbytes" in str(exc)
        return
    p.grad = torch.randn_like(p)
    before = p.detach().clone()
    opt.step()
    assert not torch.equal(before, p.detach())


def test_settings_refuse_combinations_that_lose_updates():
    with pytest.raises(ValueError, match="only adafactor rounds"):
        Settings.from_schema(optimizer="adamw8bit", fused_backward=False, precision="bf16").check()
    with pytest.raises(ValueError, match="train.fused_backward: works with train.optimizer: adafactor only"):
        Settings.from_schema(optimizer="adamw8bit", precision="fp16").check()
    with pytest.raises(ValueError, match="loss scaler"):
        Settings.from_schema(precision="fp16").check()


def test_one_list_of_the_settings_that_change_the_weights_and_one_of_the_saved_epochs():
    train = defaults()["train"]
    weights = plan.weight_settings(train, masks_made=True)
    assert set(Settings.__dataclass_fields__) == set(weights) | {"device"}  # what training reads
    assert Settings.from_schema().fingerprint() == plan.fingerprint(weights)  # what the state is checked against
    assert not plan.weight_settings(train, masks_made=False)["masked_training"]
    assert plan.blocks(5, 2) == [(1, 2), (3, 4), (5, 5)]
    assert plan.saved_epochs(1, 5, save_every=2) == [2, 4, 5]  # every 2nd, and always a block's last


# --- data --------------------------------------------------------------------------------------


def test_buckets_are_sdxl_sizes_and_conditioning_records_the_crop():
    sizes = buckets.bucket_sizes(1024, 64)
    assert (1024, 1024) in sizes and (832, 1216) in sizes and (1216, 832) in sizes
    for w, h in sizes:
        assert w % 64 == 0 and h % 64 == 0 and w * h <= 1024 * 1024 and 0.5 <= w / h <= 2
        assert (h, w) in sizes
    bucket = buckets.choose_bucket(3000, 4000, sizes)  # a 3:4 portrait photo
    assert bucket == (896, 1152)
    fitted = buckets.fit(3000, 4000, bucket)
    assert fitted.scaled == (896, 1195) and (fitted.crop_top, fitted.crop_left) == (21, 0)
    assert fitted.time_ids() == [4000, 3000, 21, 0, 1152, 896]  # original (h, w), crop (top, left), target (h, w)


def test_split_is_stable_when_photos_come_and_go():
    ids = [f"photo_{i:03d}" for i in range(200)]
    sides = split.assign(ids, 0.12)
    val = [i for i, s in sides.items() if s == split.VAL]
    assert 14 <= len(val) <= 34
    more = split.assign(ids[:150] + [f"new_{i}" for i in range(40)], 0.12)
    assert all(more[i] == sides[i] for i in ids[:150])
    assert list(split.assign(["a", "b", "c"], 0.12).values()).count(split.VAL) == 1  # at least one, when few


def test_masked_loss_weights_the_background_and_normalises_by_area():
    s = Settings.from_schema(masked_training=True, unmasked_weight=0.1, normalize_masked_area_loss=True)
    target = torch.zeros(1, 4, 8, 8)
    small = torch.zeros(1, 1, 8, 8)
    small[..., :2, :2] = 1
    large = torch.zeros(1, 1, 8, 8)
    large[..., :6, :6] = 1
    error_on_subject = lambda m: m.expand(1, 4, 8, 8).clone()  # noqa: E731  error 1 on the subject only
    # the same error on the subject counts the same whatever the subject's size
    assert masked_mse(error_on_subject(small), target, small, s).item() == pytest.approx(
        masked_mse(torch.ones(1, 4, 8, 8), target, torch.ones(1, 1, 8, 8), s).item() * (4 / 64) / ((4 + 0.1 * 60) / 64),
        rel=1e-6,
    )
    background_only = masked_mse(1 - error_on_subject(large), target, large, s)
    subject_only = masked_mse(error_on_subject(large), target, large, s)
    assert background_only.item() == pytest.approx(subject_only.item() * 0.1 * 28 / 36, rel=1e-6)
    unmasked = Settings.from_schema(masked_training=False)
    assert masked_mse(error_on_subject(large), target, large, unmasked).item() == pytest.approx(36 / 64)


def test_validation_timesteps_span_the_schedule():
    assert val_timesteps(8) == [62, 187, 312, 437, 562, 687, 812, 937]
    assert val_timesteps(1) == [500]


def test_metrics_table(tmp_path):
    result = EpochResult(3, steps=[(19, 0.25, 4e-6)], val={62: 0.5, 937: 0.1})
    write_metrics(tmp_path / "m.tsv", result)
    assert (tmp_path / "m.tsv").read_text().splitlines() == [
        "kind\tstep\ttimestep\tloss\tlr",
        "train\t19\t\t0.25\t4e-06",
        "val\t\t62\t0.5\t",
        "val\t\t937\t0.1\t",
        "val\t\tmean\t0.3\t",
    ]


# --- whole blocks of the tiny model ---------------------------------------------------------------


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    folder = tmp_path_factory.mktemp("samples")
    out = []
    for i, (w, h) in enumerate([(96, 128), (128, 96), (96, 128), (128, 96), (100, 100)]):
        badfiles.photo(w, h, seed=i).save(folder / f"p{i}.png")
        mask = np.zeros((h, w), np.uint8)
        mask[h // 4 :, w // 4 : 3 * w // 4] = 255
        Image.fromarray(mask, "L").save(folder / f"p{i}-mask.png")
        out.append(Sample(f"p{i}", folder / f"p{i}.png", f"mira, photo {i}", folder / f"p{i}-mask.png"))
    return out


SMALL_BLOCKS = dict(
    resolution=64,
    bucket_step=32,
    precision="fp32",
    gradient_checkpointing=False,
    lr=1e-4,
    batch_size=2,
    device="cpu",
    val_timesteps=2,
)


def run_blocks(tiny_model, samples, tmp_path, blocks, **settings):
    settings = Settings.from_schema(**(SMALL_BLOCKS | settings))
    out = tmp_path / "train"
    previous = None
    for first, last in blocks:
        train_block(
            base_model=tiny_model,
            model_hash="tiny",
            samples=samples,
            val_ids=[samples[-1].id],
            settings=settings,
            first=first,
            last=last,
            out_dir=out,
            previous_state=previous,
            cache_dir=tmp_path.parent / "cache",
            progress=False,
        )
        previous = out / f"epoch-{last:03d}.state"
    return out


@pytest.mark.parametrize(
    "settings",
    [
        dict(),
        dict(
            precision="bf16",
            fused_backward=True,
            caption_dropout=0.5,
            noise_offset=0.05,
            min_snr_gamma=5,
            ema_decay=0.9,
            gradient_checkpointing=True,
        ),
        dict(optimizer="adamw8bit", fused_backward=False, precision="fp16"),
    ],
    ids=["fp32-adafactor-fused", "bf16-stochastic-all-options", "fp16-adamw8bit"],
)
def test_chained_blocks_give_the_weights_of_one_block(tiny_model, samples, tmp_path, settings):
    one = run_blocks(tiny_model, samples, tmp_path / "one", [(1, 3)], **settings)
    chained = run_blocks(tiny_model, samples, tmp_path / "chained", [(1, 1), (2, 2), (3, 3)], **settings)
    for epoch in (1, 2, 3):
        a = load_file(str(one / f"epoch-{epoch:03d}.safetensors"))
        b = load_file(str(chained / f"epoch-{epoch:03d}.safetensors"))
        assert all(torch.equal(a[k], b[k]) for k in a), f"epoch {epoch} differs"
    base = sdxl.load_sdxl(tiny_model).unet.state_dict()
    assert not torch.equal(a["conv_in.weight"].float(), base["conv_in.weight"])  # it did train
    assert (one / "epoch-003.metrics.tsv").read_text() == (chained / "epoch-003.metrics.tsv").read_text()
    # the disk check's estimate is what the job wrote: an epoch file, a state folder
    s = Settings.from_schema(**(SMALL_BLOCKS | settings))
    need = disk_space.training_need(
        sdxl.unet_parameter_shapes(tiny_model),
        s.weight_dtype.itemsize,
        "",
        s.optimizer,
        bool(s.ema_decay),
        epochs=1,
        states=1,
    )
    state_bytes = sum(f.stat().st_size for f in (chained / "epoch-001.state").iterdir())
    assert need.epoch_bytes == pytest.approx((chained / "epoch-001.safetensors").stat().st_size, rel=0.01)
    assert need.state_bytes == pytest.approx(state_bytes, rel=0.05), (need.state_bytes, state_bytes)


def test_a_run_that_would_fill_the_disk_stops_before_training(tiny_model, samples, tmp_path):
    import shutil

    free = shutil.disk_usage(tmp_path).free
    s = Settings.from_schema(**SMALL_BLOCKS)
    per_epoch = disk_space.training_need(sdxl.unet_parameter_shapes(tiny_model), 4, "float32", s.optimizer, False, 1, 0)
    epochs = free // per_epoch.epoch_bytes + 1  # one more saved epoch than the disk holds
    with pytest.raises(
        disk_space.NotEnoughDisk,
        match=rf"is on a disk with [0-9.]+ GB free, and the rest of the run "
        rf"writes {epochs} saved epoch\(s\) x 0.10 GB \(the UNet in float32\) \+ {epochs} training "
        r"state\(s\)",
    ):
        train_block(
            base_model=tiny_model,
            model_hash="tiny",
            samples=samples,
            val_ids=["p4"],
            settings=s,
            first=1,
            last=1,
            out_dir=tmp_path / "train",
            previous_state=None,
            cache_dir=tmp_path / "cache",
            still_to_write=(epochs, epochs),
            progress=False,
        )
    assert not (tmp_path / "cache").exists()  # stopped before any work


def test_a_diverging_loss_stops_naming_epoch_and_step(tiny_model, samples, tmp_path):
    with pytest.raises(TrainingDiverged, match=r"at epoch 1, step \d+ \(global step \d+\)"):
        run_blocks(tiny_model, samples, tmp_path, [(1, 2)], lr=1e30, fused_backward=False)
    assert not list((tmp_path / "train").glob("epoch-*.safetensors"))


# --- several processes (DDP) -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "settings",
    [
        dict(),
        dict(
            precision="bf16",
            fused_backward=False,
            caption_dropout=0.5,
            noise_offset=0.05,
            min_snr_gamma=5,
            ema_decay=0.9,
        ),  # the seeded draws and stochastic rounding must be the same in both processes
    ],
    ids=["fp32-adafactor-fused", "bf16-stochastic-all-options"],
)
def test_two_processes_give_the_weights_of_one_accumulating_two_batches(tiny_model, samples, tmp_path, settings):
    """Bit for bit, not only within 1e-6: a batch's loss scaled by 1/2 (one process, two batches) or by 1
    and the gradient halved by DDP are exact (powers of two), and a sum of two terms has one order. The
    one process must run its kernels on as many threads as each of the two (CPU reductions split by
    thread count); otherwise the gradients differ in the 7th digit, and Adafactor's and Adam's
    normalised steps turn that into ±lr on every weight whose gradient is rounding noise (the biases
    before a GroupNorm, whose true gradient is 0): 1e-4 of the update, which no tolerance should hide."""
    # three train images in batches of one: each epoch is a step of two batches and a last step of one,
    # where the second process has no batch left and must still take part (with weight 0)
    three = dict(batch_size=1) | settings
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, threads // 2))  # what each of the two processes gets (distributed.launch)
    try:
        alone = run_blocks(tiny_model, samples[:4], tmp_path / "alone", [(1, 2)], grad_accum=2, **three)
    finally:
        torch.set_num_threads(threads)
    ddp = run_blocks(tiny_model, samples[:4], tmp_path / "ddp", [(1, 1), (2, 2)], gpus=2, **three)
    base = sdxl.load_sdxl(tiny_model).unet.state_dict()
    for epoch in (1, 2):
        a = load_file(str(alone / f"epoch-{epoch:03d}.safetensors"))
        b = load_file(str(ddp / f"epoch-{epoch:03d}.safetensors"))
        assert all(torch.equal(a[k], b[k]) for k in a), f"epoch {epoch} differs"
    assert not torch.equal(a["conv_in.weight"], base["conv_in.weight"])  # it did train
    assert (alone / "epoch-002.metrics.tsv").read_text() == (ddp / "epoch-002.metrics.tsv").read_text()
    assert "train\t4\t" in (ddp / "epoch-002.metrics.tsv").read_text()  # 2 steps per epoch
    assert json.loads((ddp / "epoch-001.state" / "trainer.json").read_text())["processes"] == 2
    # a run goes on with the process count it started with (gpus: all may find another count on another node)
    fingerprint = Settings.from_schema(**(SMALL_BLOCKS | three | dict(gpus=2))).fingerprint()
    with pytest.raises(ValueError, match=r"trained on 2 process\(es\) and this job has 1: .* Set train.gpus: 2"):
        TrainerState.load(ddp / "epoch-001.state", fingerprint, 1, processes=1)


def test_a_failing_process_raises_its_own_error(tiny_model, samples, tmp_path):
    with pytest.raises(ValueError, match="no training images: every kept photo is in the validation split"):
        train_block(
            base_model=tiny_model,
            model_hash="tiny",
            samples=samples[:2],
            val_ids=["p0", "p1"],
            first=1,
            last=1,
            settings=Settings.from_schema(**(SMALL_BLOCKS | dict(gpus=2))),
            out_dir=tmp_path,
            previous_state=None,
            cache_dir=tmp_path / "cache",
            progress=False,
        )


def test_the_cost_estimate_reads_the_unet_shapes_from_the_checkpoint_header(tiny_model):
    """run_cost.header_shapes (the start of a run, no torch) finds the same UNet parameter shapes as the
    diffusers UNet built from the model's config."""
    from collections import Counter

    from charlora import run_cost, sdxl

    shapes = run_cost.header_shapes(tiny_model)
    assert len(shapes) == 1680 and Counter(shapes) == Counter(sdxl.unet_parameter_shapes(tiny_model))


def test_the_cost_of_a_run_at_the_guides_defaults_and_with_every_second_epoch_saved():
    """run_cost: SDXL's UNet (2.57 billion parameters, from its shipped config) at the guide's defaults:
    100 checkpoints of 5.14 GB and 10 Adafactor states of 0.98 GB; save_every 2 halves the checkpoints
    and the sampled epochs, not the states. These are the README's cost table."""
    from charlora import run_cost, sdxl
    from charlora.config import defaults

    shapes = sdxl.unet_parameter_shapes(sdxl.MODEL_CONFIGS / "sdxl")
    assert sum(math.prod(s) for s in shapes) == 2_567_463_684
    config = defaults()
    config["intent"] = {"scenes": ["park", "street", "studio"], "poses": ["standing", "sitting"]}
    cost = run_cost.estimate(config, shapes, photos=25)
    assert (cost.need.epochs, cost.need.states) == (100, 10)
    assert round(cost.need.epoch_bytes / 1e9, 2) == 5.14 and round(cost.need.state_bytes / 1e9, 2) == 0.98
    assert cost.prompts == 1 + 3 + 3 + 3 + 3  # token, intent, variants, validation photos, probe
    assert (cost.sampled_epochs, cost.refined_at_most) == (51, 8)
    assert 520 < cost.total / 1e9 < 530
    half = run_cost.estimate({**config, "train": {**config["train"], "save_every": 2}}, shapes, photos=25)
    assert half.need.epochs == 50 and half.need.states == 10 and half.sampled_epochs == 26
    assert 260 < half.total / 1e9 < 270
    assert "UNet checkpoints     100 saved epochs x 5.14 GB (bf16)" in cost.table()
    # device auto: the time projected from public figures; on the CPU none is given. Sampling: (51 + 8)
    # epochs x 13 prompts x 2 seeds at 3.3 s (30 steps at 1024 px), 1.4 h; 0.8 h of training
    assert cost.samples == 59 * 13 * 2 and round(cost.sample_seconds, 2) == 3.3
    table = cost.table()
    assert "GPU time, projected from public figures until measured: training about 0.5 min an epoch, 0.8 h" in table
    assert "validation sampling 1.4 h for at most 1534 images (3.3 s an image" in table
    assert "about 2.2 GPU hours in all" in table
    small = run_cost.estimate({**config, "validate": {**config["validate"], "resolution": 512, "cfg": 1}}, shapes, 25)
    assert round(small.sample_seconds, 3) == round(3.3 / 4 / 2, 3)  # a quarter of the pixels, no guidance
    cpu = run_cost.estimate({**config, "train": {**config["train"], "device": "cpu"}}, shapes, photos=25)
    assert "GPU time" not in cpu.table()
