"""Benchmark: masks and tags on a CUDA device against the CPU's, with the real-size stand-in models of
model_loads.py (a U2-Net run through rembg's u2net_custom session and a WD14-class ViT-B/16 tagger,
random weights, built here: nothing is downloaded).

Each device runs in a process of its own that imports charlora's masks and tags modules and not torch,
as a mask or tag job does, so the CUDA provider is found (or not) the way a job finds it. Per device:
what the session runs on (from the session, as the job log says it), seconds per photo after the
first; then the differences:
  - masks, the model's output (0..1) in 8-bit levels: largest difference, share of pixels that differ;
  - masks as written (threshold, fill, dilation and feather at the defaults, uint8): largest difference,
    pixels that differ, largest coverage difference;
  - tags: largest score difference; photos whose selected tags differ at the default thresholds;
    scores that differ as written (4 decimals).
Photos: 20 smooth random colour fields at 768 x 1024 (model_loads.py's) and six of scikit-image's
photos. One JSON line per figure.

    python benchmarks/device_outputs.py [--device cuda] [--photos 20]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
SKIMAGE_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "cat", "immunohistochemistry")
THRESHOLDS = {"general": 0.35, "character": 0.85}


def say(**figure) -> None:
    print(json.dumps(figure), flush=True)


def run_models(device: str, models: Path, photos: list[Path], out: Path) -> None:
    """The child: every photo's mask and tags on `device`, into out (.npz and .json)."""
    from charlora import masks, tags
    from charlora.config import schema_defaults

    post = masks.settings_from_config(schema_defaults()["masks"])
    masker = masks.RembgMasker(models / "u2net.onnx", "u2net_custom", device)
    tagger = tags.WD14Tagger(models / "tagger", THRESHOLDS["general"], THRESHOLDS["character"], device)
    alphas, written, scores, selected, seconds = [], [], [], [], []
    for photo in photos:
        started = time.perf_counter()
        image = masks.open_rgb(photo)
        alpha = masker(image)
        inputs = {tagger.session.get_inputs()[0].name: tagger.preprocess(image)}
        scores.append(tagger.session.run(None, inputs)[0][0])
        selected.append([[tag.name, tag.score] for tag in tagger(image)])
        seconds.append(time.perf_counter() - started)
        alphas.append(alpha)
        written.append(masks.postprocess(alpha, post))
    np.savez(out.with_suffix(".npz"), *alphas, *written, np.stack(scores))
    record = {
        "masks_on": masker.runs_on,
        "tags_on": tagger.runs_on,
        "s_per_photo": sum(seconds[1:]) / max(1, len(seconds) - 1),
        "selected": selected,
    }
    out.with_suffix(".json").write_text(json.dumps(record))


def bare_session_providers(models: Path) -> list[str]:
    """What a CUDA session gets with no preload of CUDA's libraries (onnxruntime alone, torch not imported)."""
    import onnxruntime as ort

    session = ort.InferenceSession(
        str(models / "u2net.onnx"), providers=["CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    return session.get_providers()


def photo_set(folder: Path, count: int) -> list[Path]:
    from model_loads import make_workspace
    from PIL import Image
    from skimage import data

    make_workspace(folder, count)
    photos = sorted((folder / "results/dataset/images").glob("*.png"))
    for name in SKIMAGE_PHOTOS:
        if hasattr(data, name):
            path = folder / f"{name}.png"
            Image.fromarray(np.asarray(getattr(data, name)())).convert("RGB").save(path)
            photos.append(path)
    return photos


def child(device: str, models: Path, photos: list[Path], out: Path) -> dict:
    args = ["--child", device, "--models", str(models), "--out", str(out), *map(str, photos)]
    subprocess.run([sys.executable, __file__, *args], check=True)
    record = json.loads(out.with_suffix(".json").read_text())
    arrays = np.load(out.with_suffix(".npz"))
    values = [arrays[f"arr_{i}"] for i in range(len(arrays.files))]
    n = len(photos)
    record.update(alphas=values[:n], written=values[n : 2 * n], scores=values[2 * n])
    return record


def compare(cpu: dict, gpu: dict, photos: int, threshold: float) -> None:
    levels = [np.abs(a - b) * 255 for a, b in zip(cpu["alphas"], gpu["alphas"])]
    say(
        figure="masks, the model's output",
        max_levels=round(float(max(d.max() for d in levels)), 4),
        pixels_differing_by_half_a_level=round(float(np.mean(np.concatenate([(d >= 0.5).ravel() for d in levels]))), 6),
    )
    # A pixel whose model output lies on the two sides of the threshold on the two devices flips from
    # background to subject (255 levels before the feather); every other pixel differs by rounding only.
    flips = [(a >= threshold) != (b >= threshold) for a, b in zip(cpu["alphas"], gpu["alphas"])]
    written = [np.abs(a.astype(int) - b.astype(int)) for a, b in zip(cpu["written"], gpu["written"])]
    coverage = [abs(float(a.mean()) - float(b.mean())) / 255 for a, b in zip(cpu["written"], gpu["written"])]
    say(
        figure="masks as written",
        max_levels=int(max(d.max() for d in written)),
        pixels_differing=int(sum(int((d > 0).sum()) for d in written)),
        pixels=int(sum(d.size for d in written)),
        pixels_flipping_the_threshold=int(sum(int(f.sum()) for f in flips)),
        photos_differing=sum(bool((d > 0).any()) for d in written),
        max_coverage_difference=round(max(coverage), 6),
    )
    cpu_tags, gpu_tags = ([dict(tags) for tags in run["selected"]] for run in (cpu, gpu))
    say(
        figure="tags",
        max_score_difference=float(np.abs(cpu["scores"] - gpu["scores"]).max()),
        tags_written=sum(map(len, cpu_tags)),
        tags_selected_on_one_device_only=sum(len(x.keys() ^ y.keys()) for x, y in zip(cpu_tags, gpu_tags)),
        scores_differing_as_written=sum(x[t] != y[t] for x, y in zip(cpu_tags, gpu_tags) for t in x.keys() & y.keys()),
        photos=photos,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="the device compared with the CPU (cuda, cuda:N)")
    parser.add_argument("--photos", type=int, default=20, help="random colour fields (plus scikit-image's photos)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--bare", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--models", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("files", nargs="*", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare:
        print(json.dumps(bare_session_providers(args.models)))
        return
    if args.child:
        run_models(args.child, args.models, args.files, args.out)
        return

    sys.path.insert(0, str(Path(__file__).parent))
    from model_loads import build_models

    from charlora.config import schema_defaults

    import onnxruntime as ort

    say(figure="onnxruntime", version=ort.__version__, providers=ort.get_available_providers())
    if args.device != "cpu" and "CUDAExecutionProvider" not in ort.get_available_providers():
        say(figure="CUDA against the CPU", result="not measured: this onnxruntime has no CUDA provider")
        return
    with tempfile.TemporaryDirectory(prefix="charlora-device-outputs-") as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        build_models(folder / "models")
        photos = photo_set(folder / "photos", args.photos)
        say(figure="stand-ins built", seconds=round(time.perf_counter() - started, 1), photos=len(photos))
        if args.device != "cpu":  # (--device cpu: the CPU against itself, a check of this script)
            bare = subprocess.run(
                [sys.executable, __file__, "--bare", "--models", str(folder / "models")], capture_output=True, text=True
            )
            found = (
                bare.stdout.strip().splitlines()[-1]
                if bare.returncode == 0 and bare.stdout.strip()
                else bare.stderr[-300:]
            )
            say(figure="a CUDA session without the preload", providers=found)
        runs = []
        for device in ("cpu", args.device):
            runs.append(child(device, folder / "models", photos, folder / f"out-{len(runs)}"))
            say(
                figure=f"on {device}",
                masks_on=runs[-1]["masks_on"],
                tags_on=runs[-1]["tags_on"],
                s_per_photo=round(runs[-1]["s_per_photo"], 4),
            )
        compare(*runs, len(photos), schema_defaults()["masks"]["threshold"])


if __name__ == "__main__":
    main()
