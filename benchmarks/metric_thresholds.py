"""The sample measures' thresholds on real photos: each measure of sample_metrics.py applied to edits of
21 real photos (scikit-image's and matplotlib's sample pictures) and to pairs of unrelated photos.

    python benchmarks/metric_thresholds.py            # about 4 minutes on 2 cores

Prints one line per case: for copies, the perceptual-hash distance to the nearest framing (bits) and the
SSIM over the subject, as the scoring computes them (sample_metrics.score_sample against a reference of
the one original photo); for sharpness, the high-frequency energy against the photo's; for highlights,
the share blown on the subject and in the whole frame. The thresholds in scorecard.py and the schema
(`select.copy_bits`, COPY_SSIM) sit between the copies' and the unrelated pictures' figures.
"""

from __future__ import annotations

import io
import itertools
import statistics
import sys
import tempfile
from pathlib import Path

import matplotlib.cbook
import numpy as np
import skimage.data
from PIL import Image, ImageEnhance, ImageFilter, ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from charlora import sample_metrics  # noqa: E402

SKIMAGE = [
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "cell",
    "retina",
    "hubble_deep_field",
    "camera",
    "coins",
    "moon",
    "brick",
    "grass",
    "gravel",
    "horse",
    "page",
    "text",
    "clock",
    "immunohistochemistry",
    "logo",
    "colorwheel",
]


def photos() -> dict[str, Image.Image]:
    found = {}
    for name in SKIMAGE:
        pixels = getattr(skimage.data, name)()
        found[name] = Image.fromarray(np.asarray(pixels)[..., :3] if np.asarray(pixels).ndim == 3 else pixels)
    found["grace_hopper"] = Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg"))
    return {name: image.convert("RGB") for name, image in found.items()}


def jpeg(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return Image.open(buffer).convert("RGB")


def shifted(image: Image.Image, share: float = 0.1) -> Image.Image:
    w, h = image.size
    return image.crop((round(share * w), round(share * h), w, h)).resize(image.size, Image.Resampling.LANCZOS)


def zoomed(image: Image.Image, share: float = 0.1) -> Image.Image:
    w, h = image.size
    dx, dy = round(share * w / 2), round(share * h / 2)
    return image.crop((dx, dy, w - dx, h - dy)).resize(image.size, Image.Resampling.LANCZOS)


def redrawn(image: Image.Image) -> Image.Image:
    """What a model that memorised the photo might draw: softened, tinted, with grain."""
    rng = np.random.default_rng(0)
    pixels = np.asarray(image.filter(ImageFilter.GaussianBlur(1.5)), np.float64) * [1.05, 0.97, 1.0]
    pixels += rng.normal(0, 10, pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def on_white(image: Image.Image, share: float = 0.3, size: int = 512) -> Image.Image:
    side = round((share * size * size) ** 0.5)
    canvas = Image.new("RGB", (size, size), "white")
    canvas.paste(image.resize((side, side), Image.Resampling.LANCZOS), ((size - side) // 2, size - side))
    return canvas


EDITS = {
    "JPEG q30": lambda im: jpeg(im, 30),
    "half size": lambda im: im.resize((im.width // 2, im.height // 2), Image.Resampling.LANCZOS),
    "blur radius 1": lambda im: im.filter(ImageFilter.GaussianBlur(1)),
    "blur radius 2": lambda im: im.filter(ImageFilter.GaussianBlur(2)),
    "unsharp mask": lambda im: im.filter(ImageFilter.UnsharpMask(2, 150, 3)),
    "15 % brighter": lambda im: ImageEnhance.Brightness(im).enhance(1.15),
    "mirrored": ImageOps.mirror,
    "shifted 10 %": shifted,
    "zoomed 10 %": zoomed,
    "redrawn (blur, tint, grain)": redrawn,
}


def copy_figures(sample: Image.Image, training: Image.Image, folder: Path) -> tuple[int, float]:
    training.save(folder / "t.png")
    reference = sample_metrics.Reference([sample_metrics.describe_photo("t", training, 40)], 40)
    score = sample_metrics.score_sample(
        sample, reference, reference.pictures(folder), 0.6, sample_metrics.SampleScore("p", 0, True)
    )
    return score.copy_bits, score.copy_ssim


def line(name: str, pairs: list[tuple[int, float]]) -> str:
    bits, ssims = [b for b, _ in pairs], [s for _, s in pairs]
    return (
        f"{name:34s} n={len(pairs):3d}  bits {min(bits):2d}-{max(bits):2d} (median {statistics.median(bits):4.1f})"
        f"  subject SSIM {min(ssims):.3f}-{max(ssims):.3f} (median {statistics.median(ssims):.3f})"
    )


def main() -> None:
    pictures = photos()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        print(f"copies: {len(pictures)} photos, each edit scored against its original", flush=True)
        for name, edit in EDITS.items():
            print(line(name, [copy_figures(edit(p), p, folder) for p in pictures.values()]), flush=True)
        print(
            line(
                "pasted at 30 % on white, re-encoded",
                [copy_figures(on_white(jpeg(p, 40)), on_white(p), folder) for p in pictures.values()],
            ),
            flush=True,
        )
        print("unrelated pictures", flush=True)
        pairs = list(itertools.combinations(pictures.values(), 2))
        print(line("photo against photo", [copy_figures(a, b, folder) for a, b in pairs]), flush=True)
        pasted = [copy_figures(on_white(a), on_white(b), folder) for a, b in pairs]
        print(line("both pasted at 30 % on white", pasted), flush=True)
        print(
            f"{'':34s} pairs within 12 bits: {sum(b <= 12 for b, _ in pasted)}, "
            f"their highest SSIM {max([s for b, s in pasted if b <= 12], default=float('nan')):.3f}",
            flush=True,
        )
    print("sharpness: high-frequency energy against the photo's (median over the photos)")
    for name in ("blur radius 1", "blur radius 2", "unsharp mask", "JPEG q30"):
        ratios = [
            sample_metrics.high_frequency(EDITS[name](p)) / sample_metrics.high_frequency(p) for p in pictures.values()
        ]
        print(f"{name:34s} {statistics.median(ratios):.3f} (range {min(ratios):.3f}-{max(ratios):.3f})", flush=True)
    print("highlights: blown share on the subject / in the whole frame")
    for name, image in [
        ("astronaut", pictures["astronaut"]),
        ("astronaut on white (25 %)", on_white(pictures["astronaut"], 0.25)),
        (
            "astronaut 1.5x brighter on white",
            on_white(ImageEnhance.Brightness(pictures["astronaut"]).enhance(1.5), 0.25),
        ),
        ("astronaut 1.5x brighter", ImageEnhance.Brightness(pictures["astronaut"]).enhance(1.5)),
    ]:
        whole = np.ones((image.height, image.width), bool)
        print(f"{name:34s} {sample_metrics.blown_share(image):.3f} / {sample_metrics.blown_share(image, whole):.3f}")


if __name__ == "__main__":
    main()
