"""What a run will cost before it runs: the disk it fills, from the UNet's parameter shapes as the
training job's own disk check computes them (disk_space.py), and from the validation samples.

`snakemake cost` prints it (rule `cost`), and so does the start of every run that trains (the
Snakefile's onstart, from the checkpoint's header: `header_shapes`); the README's cost table is this
estimate at the guide's defaults. With a GPU device it adds the GPU time, projected from public
figures (SECONDS_PER_IMAGE for training, SECONDS_PER_SAMPLE_STEP for the validation samples) until
charlora measures its own (benchmarks/gpu_check.py).

    saved epochs x the UNet in the training dtype      (train.save_every halves it at 2)
  + one training state per job, kept for the next      (the optimizer's moments; EMA adds two copies)
  + sampled epochs x prompts x seeds x one PNG         (the coarse pass, then up to 8 more around the
                                                        selection's start)
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

from charlora import disk_space, plan
from charlora.intent import VARIANTS

PNG_BYTES_PER_PIXEL = 1.5  # a photo-like 8-bit RGB PNG: about half of its 3 raw bytes per pixel
REFINED = 8  # refinement.py samples the saved epochs within 8 of the selection's start
# A public figure, not ours: SDXL full fine-tune in bf16 at 1024 px on an RTX 4090, 1.16-1.20 s/it
# (OneTrainer issue #164), taken as seconds per training image.
SECONDS_PER_IMAGE = 1.2
# A public figure, not ours: SDXL base at 1024 px, 30 steps, guidance 5 (both halves of CFG), batch 1,
# bf16 with PyTorch's SDPA attention on an 80 GB A100: 3.3 s an image (diffusers' "Accelerate inference
# of text-to-image diffusion models" tutorial), taken as seconds per sampling step at 1024 px.
SECONDS_PER_SAMPLE_STEP = 3.3 / 30


@dataclass
class RunCost:
    need: disk_space.DiskNeed  # checkpoints and training states
    sampled_epochs: int  # the coarse pass, epoch 0 included
    refined_at_most: int  # epochs the refinement may add
    prompts: int  # about: the exact list is composed from the captions (validate_prompts.py)
    seeds: int
    sample_bytes: int  # one validation PNG
    epoch_seconds: float | None = None  # on a GPU, from SECONDS_PER_IMAGE (None: the CPU, not estimated)
    epochs: int = 0
    sample_seconds: float | None = None  # one validation image on a GPU, from SECONDS_PER_SAMPLE_STEP

    @property
    def samples(self) -> int:
        """Validation images, at most: every sampled epoch's prompts x seeds."""
        return (self.sampled_epochs + self.refined_at_most) * self.prompts * self.seeds

    @property
    def samples_bytes(self) -> int:
        return self.samples * self.sample_bytes

    @property
    def total(self) -> int:
        return self.need.total + self.samples_bytes

    def table(self) -> str:
        gb = 1e9
        return "\n".join(
            [
                f"UNet checkpoints     {self.need.epochs} saved epochs x {self.need.epoch_bytes / gb:.2f} GB "
                f"({self.need.weight_dtype})  = {self.need.epochs * self.need.epoch_bytes / gb:8.2f} GB",
                f"training states      {self.need.states} jobs x {self.need.state_bytes / gb:.2f} GB, "
                "kept for the next job "
                f" = {self.need.states * self.need.state_bytes / gb:8.2f} GB",
                f"validation samples   {self.sampled_epochs} epochs (+ up to {self.refined_at_most}) "
                f"x about {self.prompts} "
                f"prompts x {self.seeds} seeds x {self.sample_bytes / 1e6:.2f} MB  = {self.samples_bytes / gb:8.2f} GB",
                f"total, at most about {self.total / gb:.1f} GB on the disk that holds results/ "
                "(an estimate; the training job checks the free space before it starts)",
            ]
            + (
                [
                    f"GPU time, projected from public figures until measured: training about "
                    f"{self.epoch_seconds / 60:.1f} min an epoch, {self.training_hours:.1f} h for {self.epochs} "
                    f"epochs ({SECONDS_PER_IMAGE} s a training image: SDXL on an RTX 4090, OneTrainer issue #164);",
                    " " * 21 + f"validation sampling {self.sampling_hours:.1f} h for at most {self.samples} images "
                    f"({self.sample_seconds:.1f} s an image: SDXL at 1024 px on an A100, diffusers' benchmark); "
                    f"about {self.training_hours + self.sampling_hours:.1f} GPU hours in all",
                ]
                if self.epoch_seconds is not None
                else []
            )
        )

    @property
    def training_hours(self) -> float:
        return self.epoch_seconds * self.epochs / 3600

    @property
    def sampling_hours(self) -> float:
        return self.sample_seconds * self.samples / 3600


def sample_seconds(validate: dict) -> float:
    """One validation image on a GPU, projected: steps x the public figure per step at 1024 px, scaled
    by the pixels (the UNet's work grows with the latent's area), halved without guidance (cfg <= 1
    runs the UNet on the prompt alone). A batch is not counted as faster: not measured."""
    area = (validate["resolution"] / 1024) ** 2
    guidance = 1.0 if validate["cfg"] > 1 else 0.5
    return validate["steps"] * SECONDS_PER_SAMPLE_STEP * area * guidance


UNET_PREFIX = "model.diffusion_model."  # ldm_layout.UNET_PREFIX (not imported here: that module loads torch)


def header_shapes(base_model: str | Path) -> list[tuple[int, ...]]:
    """The UNet's parameter shapes of a base model (a single-file checkpoint, or a diffusers folder's
    unet/), read from the safetensors headers alone (8 bytes of length, then JSON): no tensor and no
    torch, so that the start of a run can afford it. The same shapes as the diffusers UNet's parameters
    (the LDM layout renames, never reshapes)."""
    base_model = Path(base_model)
    files, prefix = (
        (sorted((base_model / "unet").glob("*.safetensors")), "")
        if base_model.is_dir()
        else ([base_model], UNET_PREFIX)
    )
    shapes = []
    for path in files:
        with open(path, "rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(length))
        shapes += [
            tuple(entry["shape"]) for key, entry in header.items() if key != "__metadata__" and key.startswith(prefix)
        ]
    return shapes


def describe(config: dict, shapes: list[tuple[int, ...]], photos: int) -> str:
    """The estimate as `snakemake cost` and the start of a run print it."""
    return (
        f"run {config['run']!r}: {photos} photos, {config['train']['epochs']} epochs\n"
        + estimate(config, shapes, photos).table()
    )


def prompt_count(config: dict, photos: int) -> int:
    """About how many validation prompts validate_prompts.compose makes for this config and photo count."""
    validate, intent = config["validate"], config["intent"]
    lists = [v for k, v in intent.items() if k != "notes"] if isinstance(intent, dict) else []
    composed = min(validate["prompts"], max((len(v) for v in lists), default=0))
    variants = min(VARIANTS, composed)
    val_photos = max(1, round(config["ingest"]["val_fraction"] * photos)) if photos >= 2 else 0
    return (
        1 + composed + variants + val_photos + len(validate["extra_prompts"]) + min(validate["train_captions"], photos)
    )


def estimate(config: dict, shapes: list[tuple[int, ...]], photos: int) -> RunCost:
    """The run's cost for a UNet with these parameter shapes and this many photos."""
    train, validate = config["train"], config["validate"]
    blocks = plan.blocks(train["epochs"], train["epochs_per_job"])
    saved = [e for first, last in blocks for e in plan.saved_epochs(first, last, train["save_every"])]
    dtype = "bf16" if train["precision"] == "bf16" else "fp32"  # fp16 trains fp32 master weights (train.py)
    need = disk_space.training_need(
        shapes,
        2 if dtype == "bf16" else 4,
        dtype,
        train["optimizer"],
        bool(train["ema_decay"]),
        len(saved),
        len(blocks),
    )
    coarse = sorted({*plan.sampled_epochs(saved, validate["every"]), *validate["epochs"]})
    refined = min(REFINED, len(set(saved) - set(coarse)))
    side = validate["resolution"]
    on_gpu = train["device"] != "cpu"
    return RunCost(
        need,
        len(coarse),
        refined,
        prompt_count(config, photos),
        validate["seeds"],
        round(side * side * PNG_BYTES_PER_PIXEL),
        photos * SECONDS_PER_IMAGE if on_gpu else None,
        train["epochs"],
        sample_seconds(validate) if on_gpu else None,
    )
