"""What can be measured on a validation sample, and on the training photos it is compared with.

Per sample (one prompt x seed of one epoch):
- identity: the largest face's dlib descriptor (faces.py), its mean distance to the training photos'
  faces, and whether that is below `face_threshold` (dlib's 0.6: the same person); for the demo on the
  miniature base, in whose 128-pixel samples dlib finds no face, whether a sample of her shows mira's
  trait, the hair colour the base never drew (TRAIT_PROBE);
- prompt adherence: the CLIP score (Hessel et al. 2021: 100 x the cosine of the image's and the
  prompt's CLIP embeddings; not clamped at 0, so that every change shows) with a local CLIP model
  folder (`select.clip`); without one, the recall of
  the prompt's tags by the dataset's own tagger (WD14 or a vision-language model) run on the sample,
  in the caption vocabulary's words; and the same against another prompt of the set (the prompt half
  the list away), the level a model that ignores its prompt reaches (scorecard.at_chance);
- copying, by two measures: the Hamming distance of the sample's perceptual hash (imagededup's PHash,
  64 bits) to the nearest framing of a training photo (the whole photo, its central 90 % and 80 %, its
  four 90 % corners, each also mirrored: a copy shifted or zoomed by up to a tenth), and the structural
  similarity (SSIM, grey 64x64) to that framing averaged over the subject only (`subject`: the pixels
  that differ from a plain backdrop, of either picture; the whole frame where there is no plain
  backdrop). A sample within `copy_bits` and at COPY_SSIM or more repeats a training photo. Measured
  on edits of 21 real photos (skimage's and matplotlib's samples; benchmarks/metric_thresholds.py):
  re-encodes, rescales, blurs, brightened, shifted, zoomed and redrawn copies 8 bits or fewer and SSIM
  0.82 or more; unrelated photos 18 bits or more and SSIM 0.35 or less; unrelated photos pasted at 30 %
  on white as close as 6 bits (53 of 210 pairs within 12) but SSIM 0.48 or less;
- sharpness: the high-frequency energy, the mean squared Laplacian over the variance of the grey
  image at a 256-pixel short side (a scale-free ratio: halos and exaggerated texture raise it, blur
  lowers it: astronaut 0.30 sharp, 0.11 at blur radius 1, 0.025 at 2);
- burned highlights: the share of the subject's pixels blown to white (every channel 250 or more),
  so that a white backdrop is not a burned highlight (nor is a sky blown so far that it reads as one:
  astronaut brightened 2.5x keeps 7 % of its pixels blown on the subject, 43 % of the frame);
Sharpness and highlights are judged against the training photos' own distribution (over-sharpened and
blown: beyond their 95th percentile; softer: below their 5th), so a dataset of crisp studio shots does
not read as over-sharpened, nor one of soft film scans as undertrained.

Per epoch, over the samples: the diversity across seeds (the mean 1 - SSIM at 64x64 between the
samples of one prompt with different seeds) and the prompt sensitivity (the same between samples of
different prompts with one seed). A model that copies makes every seed the same picture; one that
ignores the prompt makes every prompt the same picture.
"""

from __future__ import annotations

import json
import re
import statistics
from dataclasses import asdict, dataclass, field
from functools import cached_property
from itertools import combinations
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from charlora import atomic, faces, masks, validate_prompts

COMPARE_SIDE = 256  # sharpness and the subject are measured at this short side
THUMB = 64  # SSIM is measured on grey thumbnails of this size
WHITE = 250  # a pixel whose every channel is at least this is blown out
TRAINING_PERCENTILE = 95  # beyond this of the training photos: sharper, more blown
SOFT_PERCENTILE = 5  # below this: softer than the training photos
BACKDROP_TOLERANCE = 30.0  # RGB distance from the fitted backdrop that still counts as backdrop
# The framings of a training photo that a copy is looked for in: (name, left, top, right, bottom) as
# shares of the width and height. A sample shifted or zoomed by up to a tenth matches one of them.
FRAMINGS = [
    ("whole", 0, 0, 1, 1),
    ("centre 90 %", 0.05, 0.05, 0.95, 0.95),
    ("centre 80 %", 0.1, 0.1, 0.9, 0.9),
    ("top left 90 %", 0, 0, 0.9, 0.9),
    ("top right 90 %", 0.1, 0, 1, 0.9),
    ("bottom left 90 %", 0, 0.1, 0.9, 1),
    ("bottom right 90 %", 0.1, 0.1, 1, 1),
]


def resized(image: Image.Image, short_side: int, resample=Image.Resampling.LANCZOS) -> Image.Image:
    """`image` scaled so that its short side is `short_side`."""
    scale = short_side / min(image.size)
    return image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), resample)


def grey(image: Image.Image, short_side: int) -> np.ndarray:
    return np.asarray(resized(image.convert("L"), short_side), dtype=np.float64) / 255.0


def thumbnail(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("L").resize((THUMB, THUMB), Image.Resampling.LANCZOS), dtype=np.float64) / 255.0


def high_frequency(image: Image.Image) -> float:
    """Mean squared Laplacian over the grey image's variance, at COMPARE_SIDE (0 for a flat image)."""
    from scipy.ndimage import laplace

    pixels = grey(image, COMPARE_SIDE)
    variance = pixels.var()
    return float(np.mean(laplace(pixels) ** 2) / variance) if variance > 1e-8 else 0.0


def subject(image: Image.Image) -> np.ndarray:
    """Where the subject is (boolean, the image's size): the pixels that differ from a plain backdrop
    (masks.colour_key_mask, fitted at COMPARE_SIDE); the whole frame when there is no plain backdrop."""
    rgb = image.convert("RGB")
    small = resized(rgb, COMPARE_SIDE, Image.Resampling.BOX) if min(rgb.size) > COMPARE_SIDE else rgb
    key = masks.colour_key_mask(small, BACKDROP_TOLERANCE)
    if key.border_distance > BACKDROP_TOLERANCE * masks.PLAIN_BACKDROP_SHARE or not (key.alpha >= 0.5).any():
        return np.ones((rgb.height, rgb.width), bool)
    alpha = Image.fromarray(np.where(key.alpha >= 0.5, 255, 0).astype(np.uint8)).resize(
        rgb.size, Image.Resampling.NEAREST
    )
    return np.asarray(alpha) > 0


def blown_share(image: Image.Image, region: np.ndarray | None = None) -> float:
    """The share of `region`'s pixels (default: the subject) blown to white."""
    region = subject(image) if region is None else region
    blown = np.asarray(image.convert("RGB")).min(axis=2) >= WHITE
    return float(blown[region].mean()) if region.any() else 0.0


def phash(image: Image.Image) -> str:
    from imagededup.methods import PHash

    return PHash(verbose=False).encode_image(image_array=np.asarray(image.convert("RGB")))


def hamming(a: str, b: str) -> int:
    return (int(a, 16) ^ int(b, 16)).bit_count()


def ssim(a: np.ndarray, b: np.ndarray, where: np.ndarray | None = None) -> float:
    """Structural similarity of two grey thumbnails, averaged over `where` (default: everywhere)."""
    from skimage.metrics import structural_similarity

    if where is None or not where.any():
        return float(structural_similarity(a, b, data_range=1.0))
    _, local = structural_similarity(a, b, data_range=1.0, full=True)
    return float(local[where].mean())


def framing(image: Image.Image, name: str, mirrored: bool) -> Image.Image:
    """One of FRAMINGS of `image`, mirrored after cropping when asked."""
    _, left, top, right, bottom = next(f for f in FRAMINGS if f[0] == name)
    w, h = image.size
    crop = image.crop((round(left * w), round(top * h), round(right * w), round(bottom * h)))
    return ImageOps.mirror(crop) if mirrored else crop


def mask_thumbnail(region: np.ndarray) -> np.ndarray:
    """A boolean mask at THUMB x THUMB (the thumbnails' pixels that are mostly inside it)."""
    mask = Image.fromarray(region.astype(np.uint8) * 255)
    return np.asarray(mask.resize((THUMB, THUMB), Image.Resampling.BOX)) >= 128


@dataclass
class Photo:
    """What is compared of one training photo."""

    id: str
    face: list[float] | None  # dlib descriptor of its largest face
    hashes: dict[str, str]  # perceptual hash of each framing ("whole", ..., "whole mirrored", ...)
    high_frequency: float
    blown: float  # share of the subject blown to white


@dataclass
class Reference:
    """The training photos, as the samples are measured against them (validate/reference.json)."""

    photos: list[Photo]
    min_face: int

    @cached_property  # read for every sample: computed once
    def face_descriptors(self) -> np.ndarray:
        rows = [p.face for p in self.photos if p.face is not None]
        return np.asarray(rows, dtype=np.float32).reshape(len(rows), 128)

    def limit(
        self, values: list[float], percentile: float = TRAINING_PERCENTILE, without_photos: float = float("inf")
    ) -> float:
        """The training photos' `percentile` of a measure (`without_photos` when there are none: no flag)."""
        return float(np.percentile(values, percentile)) if values else without_photos

    @cached_property
    def sharpness_limit(self) -> float:
        return self.limit([p.high_frequency for p in self.photos])

    @cached_property
    def softness_limit(self) -> float:
        return self.limit([p.high_frequency for p in self.photos], SOFT_PERCENTILE, without_photos=0.0)

    @cached_property
    def blown_limit(self) -> float:
        return max(self.limit([p.blown for p in self.photos]), 0.01)  # at least 1 % of the subject

    @cached_property
    def face_share(self) -> float | None:
        """The share of the training photos with a face of `min_face` or more."""
        return len(self.face_descriptors) / len(self.photos) if self.photos else None

    def pictures(self, folder: Path) -> dict[str, Image.Image]:
        """The training photos at COMPARE_SIDE (what a sample's framing and SSIM are measured on)."""
        pictures = {}
        for p in self.photos:
            with Image.open(folder / f"{p.id}.png") as im:
                pictures[p.id] = resized(im.convert("RGB"), COMPARE_SIDE)
        return pictures


def framing_hashes(image: Image.Image) -> dict[str, str]:
    return {
        f"{name}{' mirrored' if mirrored else ''}": phash(framing(image, name, mirrored))
        for mirrored in (False, True)
        for name, *_ in FRAMINGS
    }


def describe_photo(image_id: str, image: Image.Image, min_face: int, sample_side: int | None = None) -> Photo:
    """`sample_side`: the validation samples' short side. Sharpness is measured on the photo brought down
    to it first, so that photos and samples are compared at one scale (a 64-pixel sample cannot hold a
    1024-pixel photo's detail, and is not softer for that)."""
    face = faces.largest_face(image, min_face)
    at_sample_size = resized(image, sample_side) if sample_side and sample_side < min(image.size) else image
    return Photo(
        image_id,
        face.descriptor.round(6).tolist() if face else None,
        framing_hashes(image),
        round(high_frequency(at_sample_size), 6),
        round(blown_share(image), 6),
    )


def write_reference(path: Path, reference: Reference) -> None:
    with atomic.atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(asdict(reference), indent=1) + "\n", encoding="utf-8")


def read_reference(path: Path) -> Reference:
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    return Reference([Photo(**p) for p in data["photos"]], data["min_face"])


@dataclass
class SampleScore:
    """One sample's measurements (None: not measurable, e.g. no face in the picture)."""

    prompt: str
    seed: int
    unseen: bool  # the token, an intent, a variant or an extra prompt (not a photo's caption)
    origin: str = ""  # the prompt's origin (validate_prompts: "variant of p03: ...", ...)
    face: bool = False
    face_distance: float | None = None
    face_match: bool | None = None
    trait: float | None = None  # the demo's identity: the share of the head's place in mira's hair colour
    trait_shown: bool | None = None  # that share at TRAIT_SHOWN or more
    adherence: float | None = None
    adherence_shuffled: float | None = None  # the same measure against another prompt of the set: chance
    copy_bits: int | None = None  # perceptual-hash distance to the nearest framing of a training photo
    copy_ssim: float | None = None  # SSIM to that framing over the subject
    nearest: str = ""  # that photo and framing ("<id> (whole mirrored)")
    high_frequency: float = 0.0
    sharper_than_training: bool = False
    softer_than_training: bool = False
    blown: float = 0.0  # share of the subject blown to white
    blown_beyond_training: bool = False


def score_sample(
    image: Image.Image,
    reference: Reference,
    pictures: dict[str, Image.Image],
    face_threshold: float,
    score: SampleScore,
) -> SampleScore:
    """Fill in everything but the adherence (which runs one model over all samples at once);
    `pictures`: Reference.pictures. A training caption's sample (the memorisation probe) is compared with
    its own photo only; every other sample with the nearest training photo."""
    descriptors = reference.face_descriptors
    face = faces.largest_face(image, reference.min_face) if len(descriptors) else None
    if face is not None:
        distance = float(faces.distances(face.descriptor, descriptors).mean())
        score.face, score.face_distance, score.face_match = True, round(distance, 4), distance < face_threshold
    sample_hash, region = phash(image), subject(image)
    own = validate_prompts.training_photo(score.origin)
    candidates = [p for p in reference.photos if p.id == own] or reference.photos
    nearest = min(
        ((hamming(sample_hash, h), photo.id, name) for photo in candidates for name, h in photo.hashes.items()),
        key=lambda n: n[0],
        default=None,
    )  # ties: the first
    if nearest is not None:
        bits, image_id, name = nearest
        theirs = framing(pictures[image_id], name.removesuffix(" mirrored"), name.endswith(" mirrored"))
        where = mask_thumbnail(region) | mask_thumbnail(subject(theirs))
        score.copy_bits, score.copy_ssim = bits, round(ssim(thumbnail(image), thumbnail(theirs), where), 4)
        score.nearest = f"{image_id} ({name})"
    score.high_frequency = round(high_frequency(image), 6)
    score.sharper_than_training = score.high_frequency > reference.sharpness_limit
    score.softer_than_training = score.high_frequency < reference.softness_limit
    score.blown = round(blown_share(image, region), 6)
    score.blown_beyond_training = score.blown > reference.blown_limit
    return score


def mean_dissimilarity(thumbs: list[np.ndarray]) -> float | None:
    pairs = list(combinations(thumbs, 2))
    return round(statistics.fmean(1 - ssim(a, b) for a, b in pairs), 4) if pairs else None


def diversity(thumbs: dict[tuple[str, int], np.ndarray]) -> tuple[float | None, float | None]:
    """(across seeds, across prompts): mean 1 - SSIM within a prompt's seeds, and within a seed's prompts."""
    prompts = sorted({p for p, _ in thumbs})
    seeds = sorted({s for _, s in thumbs})
    per_prompt = [mean_dissimilarity([thumbs[p, s] for s in seeds if (p, s) in thumbs]) for p in prompts]
    per_seed = [mean_dissimilarity([thumbs[p, s] for p in prompts if (p, s) in thumbs]) for s in seeds]
    across_seeds = [v for v in per_prompt if v is not None]
    across_prompts = [v for v in per_seed if v is not None]
    return (
        round(statistics.fmean(across_seeds), 4) if across_seeds else None,
        round(statistics.fmean(across_prompts), 4) if across_prompts else None,
    )


class ClipScorer:
    """CLIP score from a local transformers CLIP model folder (CLIPModel + its processor)."""

    def __init__(self, folder: str | Path, device: str = "cpu"):
        import torch
        from transformers import CLIPModel, CLIPProcessor

        self.torch, self.device = torch, device
        self.model = CLIPModel.from_pretrained(folder, local_files_only=True).to(device).eval()
        self.processor = CLIPProcessor.from_pretrained(folder, local_files_only=True)

    def __call__(self, image: Image.Image, *texts: str) -> list[float]:
        """The image's CLIP score against each text (one forward pass of the image for all of them)."""
        torch = self.torch
        inputs = self.processor(
            text=list(texts), images=[image.convert("RGB")], return_tensors="pt", padding=True, truncation=True
        ).to(self.device)
        with torch.no_grad():
            out = self.model(**inputs)  # image_embeds and text_embeds: projected and L2-normalised
        cosines = (out.text_embeds @ out.image_embeds[0]).tolist()
        return [round(100 * c, 4) for c in cosines]


def tag_recall(prompt: str, token: str, tags: list[str], vocabulary=None) -> float | None:
    """Share of the prompt's comma-separated tags (the token aside) that the tagger found, both sides in
    the caption vocabulary's words (captions.Vocabulary.canonical: the tagger's "smile", "upper body",
    "backlighting" are the prompt's "smiling", "mid shot", "backlight")."""
    from charlora.captions import normalise

    canonical = vocabulary.canonical if vocabulary is not None else normalise
    wanted = {canonical(t) for t in prompt.split(",") if t.strip()} - {canonical(token)}
    found = {canonical(t) for t in tags if t.strip()}
    return round(len(wanted & found) / len(wanted), 4) if wanted else None


@dataclass
class EpochScores:
    """validate/epoch-<eee>.scores.json: every sample's measurements and the epoch's diversity."""

    epoch: int
    adherence_method: str  # "CLIP score (<folder>)", "tag recall (<tagger>)", "pixel probe (...)" or "n/a: <why>"
    identity_method: str  # how faces were compared, or "n/a: <why>"
    training_face_share: float | None = None  # the training photos' share with a face (Reference.face_share)
    diversity_seeds: float | None = None
    diversity_prompts: float | None = None
    samples: list[SampleScore] = field(default_factory=list)


def write_scores(path: Path, scores: EpochScores) -> None:
    with atomic.atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(asdict(scores), indent=1) + "\n", encoding="utf-8")


def read_scores(path: Path) -> EpochScores:
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    samples = [SampleScore(**s) for s in data.pop("samples")]
    return EpochScores(**data, samples=samples)


# The demo's photos are drawn (demo_render.py): its samples' adherence is read from their pixels (pixel_probe.py)
PIXEL_PROBE = "pixel probe (the prompt's backdrop and outfit among those the demo's renderer draws)"
# and so is its identity, where the base draws the renderer's world (base_model: miniature; the random tiny
# model draws noise): whether a sample whose prompt names her shows her hair colour, which no person the
# base learnt from has. Her drawn photos read 0.15-0.23 of the head's place; the world's people 0.00.
TRAIT_SHOWN = 0.1
TRAIT_PROBE = (
    f"pixel probe (mira's hair colour in {TRAIT_SHOWN:.0%} or more of the head's place, "
    "in the samples of prompts naming her)"
)


def adherence_method(clip_folder: str | None, captions_config: dict) -> str:
    if clip_folder:
        return f"CLIP score ({clip_folder})"
    if captions_config["tagger"] in ("wd14", "vlm"):
        return f"tag recall ({captions_config['tagger']}: {captions_config[captions_config['tagger']]['folder']})"
    if captions_config["tagger"] == "demo":
        return PIXEL_PROBE
    return (
        f"n/a: no CLIP model folder (select.clip), and captions.tagger {captions_config['tagger']} cannot tag "
        "new pictures"
    )


def identity_method(reference: Reference, captions_config: dict, base_model: str) -> str:
    """How resemblance is measured: the demo on the miniature base by its trait (dlib finds the faces of
    her drawn photos, but none in 128-pixel samples); anything else by the faces, where the training
    photos have any."""
    if captions_config.get("tagger") == "demo" and base_model == "miniature":
        return TRAIT_PROBE
    if len(reference.face_descriptors):
        return (
            f"dlib ResNet descriptor, mean distance to {len(reference.face_descriptors)} training faces, "
            f"faces of {reference.min_face} px or more"
        )
    return f"n/a: no face of {reference.min_face} px or more in any training photo (a drawn or faceless character)"


def names(prompt: str, token: str) -> bool:
    """Whether `prompt` names `token` as a word ("mira," does; "miranda" does not)."""
    return re.search(rf"(?<!\w){re.escape(token.lower())}(?!\w)", prompt.lower()) is not None


def unseen(origin: str) -> bool:
    """Whether a prompt of this origin is new to the model (not a photo's caption)."""
    return not origin.startswith((validate_prompts.VALIDATION_PHOTO, validate_prompts.TRAINING_PHOTO))


def score_epoch(
    epoch: int,
    folder: Path,
    prompts: list,
    seeds: list[int],
    reference: Reference,
    reference_images: Path,
    face_threshold: float,
    clip_folder: str | None,
    captions_config: dict,
    token: str,
    device: str = "cpu",
    progress=None,
    base_model: str = "",
) -> EpochScores:
    """Measure every prompt x seed sample of one epoch's folder (sample.image_name's files). `base_model`:
    the config's (the demo's identity is read where it is the miniature base)."""
    from charlora import demo, pixel_probe, sample, tags
    from charlora.captions import Vocabulary

    method = adherence_method(clip_folder, captions_config)
    clip = ClipScorer(clip_folder, device) if clip_folder else None
    tagger = tags.make_tagger(captions_config) if clip is None and method.startswith("tag recall") else None
    vocabulary = Vocabulary.load(captions_config["vocabulary"]) if tagger is not None else None
    identity = identity_method(reference, captions_config, base_model)
    result = EpochScores(epoch, method, identity, reference.face_share)
    pictures = reference.pictures(reference_images)
    thumbs = {}
    for i, prompt in enumerate(prompts):
        other = prompts[(i + len(prompts) // 2) % len(prompts)] if len(prompts) > 1 else None
        for seed in seeds:
            path = folder / sample.image_name(prompt, seed)
            with Image.open(path) as im:
                image = im.convert("RGB")
            score = score_sample(
                image,
                reference,
                pictures,
                face_threshold,
                SampleScore(prompt.name, seed, unseen(prompt.origin), prompt.origin),
            )
            if clip is not None:
                score.adherence, *shuffled = clip(image, prompt.text, *([other.text] if other else []))
                score.adherence_shuffled = shuffled[0] if shuffled else None
            elif tagger is not None:
                found = [t["name"] for t in tags.tag_image(path, captions_config, tagger)["tags"]]
                score.adherence = tag_recall(prompt.text, token, found, vocabulary)
                score.adherence_shuffled = tag_recall(other.text, token, found, vocabulary) if other else None
            elif method == PIXEL_PROBE:
                score.adherence = pixel_probe.adherence(image, prompt.text)
                score.adherence_shuffled = pixel_probe.adherence(image, other.text) if other else None
            if identity == TRAIT_PROBE and names(prompt.text, token):
                framing = pixel_probe.asked(prompt.text).framing
                score.trait = round(pixel_probe.trait_share(image, demo.MIRA.hair, framing), 4)
                score.trait_shown = score.trait >= TRAIT_SHOWN
            thumbs[prompt.name, seed] = thumbnail(image)
            result.samples.append(score)
            if progress is not None:
                progress.update()
    result.diversity_seeds, result.diversity_prompts = diversity(thumbs)
    return result


def write_tiny_clip(folder: Path, seed: int = 0) -> None:
    """A random CLIP model with tiny widths, saved as a transformers folder (the demo's and the tests'
    stand-in for a real CLIP model: the same loading and scoring code runs)."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    from charlora.tokenizer import clip_tokenizer

    torch.manual_seed(seed)
    config = CLIPConfig(
        text_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_attention_heads=2,
            num_hidden_layers=2,
            max_position_embeddings=77,
            vocab_size=49408,
        ),
        vision_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_attention_heads=2,
            num_hidden_layers=2,
            image_size=32,
            patch_size=8,
        ),
        projection_dim=16,
    )
    model = CLIPModel(config)
    processor = CLIPProcessor(
        CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}), clip_tokenizer()
    )
    with atomic.atomic_dir(folder) as tmp:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
