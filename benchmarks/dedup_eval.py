"""How well each imagededup hash separates near-duplicates from distinct photos of one character.

For every distinct photo of the demo set, craft the copies a curator calls duplicates (resized to
60%, re-encoded as JPEG quality 70, cropped 5% each side, brightened 15%, darkened 15%, mirrored is
NOT a duplicate here: it teaches a new view) and measure Hamming distances: duplicates to their
original, and every pair of distinct photos. A threshold separates them when it is at least the
largest duplicate distance and below the smallest distinct distance.

    .venv/bin/python benchmarks/dedup_eval.py
"""

import itertools
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from badfiles import cropped, reencoded  # noqa: E402
from charlora import demo, demo_render  # noqa: E402
from charlora.dedup import HASH_METHODS, hasher  # noqa: E402


EDITS = {
    "resized 60%": lambda im: im.resize((im.width * 3 // 5, im.height * 3 // 5), Image.LANCZOS),
    "JPEG q70": lambda im: reencoded(im, 70),
    "cropped 5%": lambda im: cropped(im, 0.05),
    "brightened 15%": lambda im: ImageEnhance.Brightness(im).enhance(1.15),
    "darkened 15%": lambda im: ImageEnhance.Brightness(im).enhance(0.85),
    "all of these": lambda im: reencoded(ImageEnhance.Brightness(cropped(im, 0.04)).enhance(1.1), 80).resize(
        (im.width * 2 // 3, im.height * 2 // 3), Image.LANCZOS),
}


def main():
    originals = {shot.name: demo_render.render(shot) for shot in demo.SHOTS}
    print(f"{len(originals)} distinct demo photos, {len(EDITS)} edits each")
    print(f"{'method':7} {'dup max':>8} {'dup p95':>8} {'distinct min':>13} {'distinct p5':>12}  worst edit")
    caught = {}
    for method in HASH_METHODS:
        encoder = hasher(method)
        hashes = {n: encoder.encode_image(image_array=np.asarray(im)) for n, im in originals.items()}
        dup = []
        for name, image in originals.items():
            for edit, fn in EDITS.items():
                h = encoder.encode_image(image_array=np.asarray(fn(image).convert("RGB")))
                dup.append((encoder.hamming_distance(hashes[name], h), edit))
        distinct = [(encoder.hamming_distance(hashes[a], hashes[b]), a, b)
                    for a, b in itertools.combinations(sorted(originals), 2)]
        d = np.array([x for x, _ in dup])
        s = np.array([x for x, *_ in distinct])
        worst = max(dup)[1]
        for threshold in (8, 10, 12, 14):
            row = {edit: np.mean([x <= threshold for x, e in dup if e == edit]) for edit in EDITS}
            caught[method, threshold] = (row, int((s <= threshold).sum()), len(s))
        closest = min(distinct)
        print(f"{method:7} {d.max():8.0f} {np.percentile(d, 95):8.1f} {s.min():13.0f} {np.percentile(s, 5):12.1f}  "
              f"{worst}; closest distinct: {closest[1]} ~ {closest[2]}")
    print("\nshare of crafted copies found at each threshold, and distinct pairs wrongly grouped")
    print(f"{'method':7} {'d':>3} " + " ".join(f"{e[:12]:>12}" for e in EDITS) + "  false pairs")
    for (method, threshold), (row, false_pairs, pairs) in caught.items():
        print(f"{method:7} {threshold:3d} " + " ".join(f"{row[e]:12.0%}" for e in EDITS)
              + f"  {false_pairs}/{pairs}")


if __name__ == "__main__":
    main()
