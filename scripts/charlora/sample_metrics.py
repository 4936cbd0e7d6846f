"""What can be measured on a validation sample, and on the training photos it is compared with.

Per sample (one prompt x seed of one epoch):
- identity: the largest face's dlib descriptor (faces.py), its mean distance to the training photos'
  faces, and whether that is below `face_threshold` (dlib's 0.6: the same person);
- prompt adherence: the CLIP score (Hessel et al. 2021: 100 x the cosine of the image's and the
  prompt's CLIP embeddings; not clamped at 0, so that every change shows) with a local CLIP model
  folder (`select.clip`); without one, the recall of
  the prompt's tags by the dataset's own tagger (WD14 or a vision-language model) run on the sample,
  in the caption vocabulary's words; and the same against another prompt of the set (the prompt half
  the list away), the level a model that ignores its prompt reaches (scorecard.at_chance);
- copying: the Hamming distance of the sample's perceptual hash (imagededup's PHash, 64 bits) to the
  nearest training photo or its mirror image, and the structural similarity (SSIM) to that photo at
  64x64. Unrelated photos sit 20 bits or more apart (skimage's 20 sample photos: 11 of 190 pairs under
  26, the closest 20), re-encodes and rescales 2 or fewer: a sample within
  `copy_bits` repeats a training photo's composition;
- over-sharpening: the high-frequency energy, the mean squared Laplacian over the variance of the grey
  image at a 256-pixel short side (a scale-free ratio: halos and exaggerated texture raise it);
- burned highlights: the share of pixels blown to white (every channel 250 or more).
Sharpness and highlights are judged against the training photos' own distribution (their 95th
percentile), so a dataset of crisp studio shots does not read as over-sharpened.

Per epoch, over the samples: the diversity across seeds (the mean 1 - SSIM at 64x64 between the
samples of one prompt with different seeds) and the prompt sensitivity (the same between samples of
different prompts with one seed). A model that copies makes every seed the same picture; one that
ignores the prompt makes every prompt the same picture.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass, field
from functools import cached_property
from itertools import combinations
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from charlora import atomic, faces

COMPARE_SIDE = 256      # sharpness is measured at this short side
THUMB = 64              # SSIM is measured on grey thumbnails of this size
WHITE = 250             # a pixel whose every channel is at least this is blown out
TRAINING_PERCENTILE = 95


def grey(image: Image.Image, short_side: int) -> np.ndarray:
    image = image.convert("L")
    scale = short_side / min(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return np.asarray(image.resize(size, Image.Resampling.LANCZOS), dtype=np.float64) / 255.0


def thumbnail(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("L").resize((THUMB, THUMB), Image.Resampling.LANCZOS), dtype=np.float64) / 255.0


def high_frequency(image: Image.Image) -> float:
    """Mean squared Laplacian over the grey image's variance, at COMPARE_SIDE (0 for a flat image)."""
    from scipy.ndimage import laplace

    pixels = grey(image, COMPARE_SIDE)
    variance = pixels.var()
    return float(np.mean(laplace(pixels) ** 2) / variance) if variance > 1e-8 else 0.0


def blown_share(image: Image.Image) -> float:
    return float((np.asarray(image.convert("RGB")).min(axis=2) >= WHITE).mean())


def phash(image: Image.Image) -> str:
    from imagededup.methods import PHash

    return PHash(verbose=False).encode_image(image_array=np.asarray(image.convert("RGB")))


def hamming(a: str, b: str) -> int:
    return (int(a, 16) ^ int(b, 16)).bit_count()


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    from skimage.metrics import structural_similarity

    return float(structural_similarity(a, b, data_range=1.0))


@dataclass
class Photo:
    """What is compared of one training photo."""
    id: str
    face: list[float] | None         # dlib descriptor of its largest face
    hash: str
    mirror_hash: str
    high_frequency: float
    blown: float


@dataclass
class Reference:
    """The training photos, as the samples are measured against them (validate/reference.json)."""
    photos: list[Photo]
    min_face: int

    @cached_property  # read for every sample: computed once
    def face_descriptors(self) -> np.ndarray:
        rows = [p.face for p in self.photos if p.face is not None]
        return np.asarray(rows, dtype=np.float32).reshape(len(rows), 128)

    def limit(self, values: list[float]) -> float:
        return float(np.percentile(values, TRAINING_PERCENTILE)) if values else float("inf")

    @cached_property
    def sharpness_limit(self) -> float:
        return self.limit([p.high_frequency for p in self.photos])

    @cached_property
    def blown_limit(self) -> float:
        return max(self.limit([p.blown for p in self.photos]), 0.01)  # at least 1 % of the frame

    def thumbnails(self, folder: Path) -> dict[str, np.ndarray]:
        return {p.id: thumbnail(Image.open(folder / f"{p.id}.png")) for p in self.photos}


def describe_photo(image_id: str, image: Image.Image, min_face: int) -> Photo:
    face = faces.largest_face(image, min_face)
    return Photo(image_id, face.descriptor.round(6).tolist() if face else None, phash(image),
                 phash(ImageOps.mirror(image)), round(high_frequency(image), 6), round(blown_share(image), 6))


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
    unseen: bool                       # the token, an intent or an extra prompt (not a validation photo's caption)
    face: bool = False
    face_distance: float | None = None
    face_match: bool | None = None
    adherence: float | None = None
    adherence_shuffled: float | None = None  # the same measure against another prompt of the set: chance
    copy_bits: int | None = None
    copy_ssim: float | None = None
    nearest: str = ""                  # the training photo it is closest to ("<id> (mirrored)")
    high_frequency: float = 0.0
    sharper_than_training: bool = False
    blown: float = 0.0
    blown_beyond_training: bool = False


def score_sample(image: Image.Image, reference: Reference, thumbs: dict[str, np.ndarray], face_threshold: float,
                 score: SampleScore) -> SampleScore:
    """Fill in everything but the adherence (which runs one model over all samples at once)."""
    descriptors = reference.face_descriptors
    face = faces.largest_face(image, reference.min_face) if len(descriptors) else None
    if face is not None:
        distance = float(faces.distances(face.descriptor, descriptors).mean())
        score.face, score.face_distance, score.face_match = True, round(distance, 4), distance < face_threshold
    sample_hash, small = phash(image), thumbnail(image)
    best = None
    for photo in reference.photos:
        for mirrored, other in ((False, photo.hash), (True, photo.mirror_hash)):
            bits = hamming(sample_hash, other)
            if best is None or bits < best[0]:
                best = (bits, photo.id, mirrored)
    if best is not None:
        bits, image_id, mirrored = best
        theirs = thumbs[image_id][:, ::-1] if mirrored else thumbs[image_id]
        score.copy_bits, score.copy_ssim = bits, round(ssim(small, theirs), 4)
        score.nearest = image_id + (" (mirrored)" if mirrored else "")
    score.high_frequency = round(high_frequency(image), 6)
    score.sharper_than_training = score.high_frequency > reference.sharpness_limit
    score.blown = round(blown_share(image), 6)
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
    return (round(statistics.fmean(across_seeds), 4) if across_seeds else None,
            round(statistics.fmean(across_prompts), 4) if across_prompts else None)


class ClipScorer:
    """CLIP score from a local transformers CLIP model folder (CLIPModel + its processor)."""

    def __init__(self, folder: str | Path, device: str = "cpu"):
        import torch
        from transformers import CLIPModel, CLIPProcessor

        self.torch, self.device = torch, device
        self.model = CLIPModel.from_pretrained(folder, local_files_only=True).to(device).eval()
        self.processor = CLIPProcessor.from_pretrained(folder, local_files_only=True)

    def __call__(self, image: Image.Image, text: str) -> float:
        torch = self.torch
        inputs = self.processor(text=[text], images=[image.convert("RGB")], return_tensors="pt", padding=True,
                                truncation=True).to(self.device)
        with torch.no_grad():
            out = self.model(**inputs)  # image_embeds and text_embeds: projected and L2-normalised
        cosine = (out.image_embeds * out.text_embeds).sum().item()
        return round(100 * cosine, 4)


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
    adherence_method: str                   # "CLIP score (<folder>)", "tag recall (<tagger>)" or "n/a: <why>"
    identity_method: str                    # how faces were compared, or "n/a: <why>"
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


def adherence_method(clip_folder: str | None, captions_config: dict) -> str:
    if clip_folder:
        return f"CLIP score ({clip_folder})"
    if captions_config["tagger"] in ("wd14", "vlm"):
        return f"tag recall ({captions_config['tagger']}: {captions_config[captions_config['tagger']]['folder']})"
    return (f"n/a: no CLIP model folder (select.clip), and captions.tagger {captions_config['tagger']} cannot tag "
            "new pictures")


def score_epoch(epoch: int, folder: Path, prompts: list, seeds: list[int], reference: Reference,
                reference_images: Path, face_threshold: float, clip_folder: str | None, captions_config: dict,
                token: str, device: str = "cpu", progress=None) -> EpochScores:
    """Measure every prompt x seed sample of one epoch's folder (sample.image_name's files)."""
    from charlora import sample, tags
    from charlora.captions import Vocabulary

    method = adherence_method(clip_folder, captions_config)
    clip = ClipScorer(clip_folder, device) if clip_folder else None
    tagger = tags.make_tagger(captions_config) if clip is None and not method.startswith("n/a") else None
    vocabulary = Vocabulary.load(captions_config["vocabulary"]) if tagger is not None else None
    has_faces = len(reference.face_descriptors) > 0
    identity = (f"dlib ResNet descriptor, mean distance to {len(reference.face_descriptors)} training faces, "
                f"faces of {reference.min_face} px or more" if has_faces else
                f"n/a: no face of {reference.min_face} px or more in any training photo (a drawn or faceless "
                "character)")
    result = EpochScores(epoch, method, identity)
    thumbs_of_training = reference.thumbnails(reference_images)
    thumbs = {}
    for i, prompt in enumerate(prompts):
        other = prompts[(i + len(prompts) // 2) % len(prompts)] if len(prompts) > 1 else None
        for seed in seeds:
            path = folder / sample.image_name(prompt, seed)
            with Image.open(path) as im:
                image = im.convert("RGB")
            score = score_sample(image, reference, thumbs_of_training, face_threshold,
                                 SampleScore(prompt.name, seed, not prompt.origin.startswith("validation photo")))
            if clip is not None:
                score.adherence = clip(image, prompt.text)
                score.adherence_shuffled = clip(image, other.text) if other else None
            elif tagger is not None:
                found = [t["name"] for t in tags.tag_image(path, captions_config, tagger)["tags"]]
                score.adherence = tag_recall(prompt.text, token, found, vocabulary)
                score.adherence_shuffled = tag_recall(other.text, token, found, vocabulary) if other else None
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
        text_config=dict(hidden_size=32, intermediate_size=64, num_attention_heads=2, num_hidden_layers=2,
                         max_position_embeddings=77, vocab_size=49408),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_attention_heads=2, num_hidden_layers=2,
                           image_size=32, patch_size=8),
        projection_dim=16)
    model = CLIPModel(config)
    processor = CLIPProcessor(CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
                              clip_tokenizer())
    with atomic.atomic_dir(folder) as tmp:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
