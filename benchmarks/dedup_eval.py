"""How well charlora's near-duplicate check finds edited copies and leaves distinct photos apart,
side by side with the plain perceptual hash it replaced (imagededup's PHash, groups within 10 bits).

The set: 14 real photos that ship with scikit-image and matplotlib, the demo's 19 drawings of one
character (few texture features) and 11 generated low-texture photos in families of look-alikes
(tests/textures.py: dark wallpapers of one design, skies, plain walls of one paint, night shots; SIFT
finds a handful of points on most, and look-alikes must stay apart); for each, every edit the issue
lists (tests/near_copies.py: half size, JPEG q30, 10 % crops, rotations (3 and 5 degrees cut to a
frame without empty corners, 3 on its own canvas with black wedges, 2 grown and boxed in white),
mirror images, letterbox/pillarbox borders, brightness and contrast 15 %, and pairs of these); and
hard negatives: the 19 drawings are distinct photos of one subject, and 45 bursts (the same scene
with another expression or arm pose, or a region of a real photo twisted or moved) must not be
merged with their scene.

- pair recall: share of (photo, crafted copy) pairs that end in one group, and the copies missed per photo;
- false merges: pairs in one group that are not copies of one photo (distinct photos, or a burst
  and its scene);
- bursts flagged: bursts named in `similar_to` with their scene (the user sees them side by side);
- the copy kept: each group whose kept photo is not the original, with what decided (the audit's
  measures of each image; turned copies with wedges or a box must lose to the upright original);
- time per image at 200 photos (44 photos, 45 bursts, 111 copies), images already decoded, in one
  thread and in two (the dedup job uses the cores Snakemake gives it).

The edits are run in three batches of seven (every photo and burst in each batch) to keep the run
to minutes; mirror images count as duplicates (dedup.mirrors: duplicate, the default).

    .venv/bin/python benchmarks/dedup_eval.py
"""

import itertools
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from near_copies import EDITS, demo_bursts, real_bursts, real_photos  # noqa: E402
from textures import look_alikes  # noqa: E402

from charlora import audit, dedup, demo, demo_render, near_duplicates  # noqa: E402

PLAIN_DISTANCE = 10  # the plain hash's old default


def plain_hash_groups(images: dict[str, object]) -> dict[str, str]:
    """id -> group id with imagededup's PHash alone (the method before this check)."""
    encoder = dedup.hasher("phash")
    hashes = {i: encoder.encode_image(image_array=np.asarray(im)) for i, im in images.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        matches = encoder.find_duplicates(
            encoding_map=hashes, max_distance_threshold=PLAIN_DISTANCE, num_dist_workers=0
        )
    return components(images, [(a, b) for a, near in matches.items() for b in near])


def components(images, links) -> dict[str, str]:
    parent = {i: i for i in images}

    def root(a):
        while parent[a] != a:
            a = parent[a]
        return a

    for a, b in links:
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return {i: root(i) for i in images}


def audits_of(images: dict[str, object]) -> dict[str, dict]:
    """The audit's measures of each image (what the kept copy is chosen by), with the JPEG quality
    that the audit of the saved file would read from its name's edit."""
    audits = {}
    for i, image in images.items():
        audits[i] = {"id": i, "file": f"{i}.png", "status": "ok", **audit.measure(image)}
        if " q" in i and "JPEG" in i:
            audits[i]["jpeg_quality"] = int(i.split(" q")[-1][:2])
    return audits


def checked_groups(images: dict[str, object], workers: int = 1, audits=None) -> tuple[dict[str, str], list]:
    """id -> group id (the kept photo's id) with charlora's method (hash candidates, geometric check),
    and the relations."""
    encoder = dedup.hasher("phash")
    photos = near_duplicates.prepare_files(images, lambda image: image, encoder, workers)
    relations = near_duplicates.find_relations(photos, 22, workers)
    if audits is None:  # (the timing run: which copy is kept does not matter there)
        audits = {i: {"id": i, "width": im.width, "height": im.height, "sharpness": 0.0} for i, im in images.items()}
    duplicates = dedup.group_duplicates(relations, audits, "duplicate")
    return {i: duplicates[i][0] if i in duplicates else i for i in images}, relations


def score(groups: dict[str, str], scene_of: dict[str, str], copies: list[tuple[str, str]]):
    """(pairs found, false merges as a list of pairs)."""
    found = sum(groups[a] == groups[b] for a, b in copies)
    members: dict[str, list[str]] = {}
    for i, g in groups.items():
        members.setdefault(g, []).append(i)
    false = [
        (a, b)
        for group in members.values()
        for a, b in itertools.combinations(sorted(group), 2)
        if scene_of[a] != scene_of[b]
    ]
    return found, false


def main():
    low_texture = look_alikes()
    photos = {**real_photos(), **low_texture, **{s.name.rsplit(".", 1)[0]: demo_render.render(s) for s in demo.SHOTS}}
    bursts = {**demo_bursts(), **real_bursts(real_photos())}
    print(
        f"{len(photos)} photos ({len(photos) - len(demo.SHOTS) - len(low_texture)} real, {len(low_texture)} "
        f"low-texture, {len(demo.SHOTS)} drawings), "
        f"{len(EDITS)} edits each, {len(bursts)} bursts"
    )
    edit_names = list(EDITS)
    totals = {"plain hash": [0, [], 0], "charlora": [0, [], 0]}
    per_edit = {name: {"plain hash": 0, "charlora": 0} for name in edit_names}
    pairs_total, bursts_flagged = 0, 0
    kept_other = []  # (photo, the copy kept instead of it, why)
    missed: dict[str, list[str]] = {}  # photo -> its edits that charlora left out of its group
    per_batch = -(-len(edit_names) // 3)
    for batch in range(3):
        names = edit_names[batch * per_batch : (batch + 1) * per_batch]
        images = dict(photos)
        scene_of = {i: i for i in photos}
        copies = []
        for (scene, name), image in bursts.items():
            images[name], scene_of[name] = image, name  # a burst is a scene of its own
        for photo, edit in itertools.product(photos, names):
            copy = f"{photo} ({edit})"
            images[copy], scene_of[copy] = EDITS[edit](photos[photo]).convert("RGB"), photo
            copies.append((photo, copy))
        pairs_total += len(copies)
        start = time.perf_counter()
        for method, groups in (("plain hash", plain_hash_groups(images)), ("charlora", None)):
            if groups is None:
                audits = audits_of(images)
                groups, relations = checked_groups(images, audits=audits)
                for photo in photos:
                    if groups[photo] != photo:
                        kept = groups[photo]
                        kept_other.append((photo, kept, dedup.why_kept(audits[kept], audits[photo])))
                similar = {(r.a, r.b) for r in relations if r.kind == dedup.SIMILAR}
                bursts_flagged += sum(
                    (scene, name) in similar
                    or (name, scene) in similar
                    or any({groups[scene], groups[name]} == {groups[a], groups[b]} for a, b in similar)
                    for scene, name in bursts
                )
            found, false = score(groups, scene_of, copies)
            totals[method][0] += found
            totals[method][1] += false
            for photo, copy in copies:
                edit = copy.rsplit(" (", 1)[1][:-1]
                per_edit[edit][method] += groups[photo] == groups[copy]
                if method == "charlora" and groups[photo] != groups[copy]:
                    missed.setdefault(photo, []).append(edit)
        print(f"batch {batch + 1} ({', '.join(names)}): {len(images)} images, {time.perf_counter() - start:.0f} s")

    print(f"\n{'edit':20} {'plain hash':>11} {'charlora':>9}   (share of the {len(photos)} photos' copies found)")
    for name in edit_names:
        plain_share, ours_share = per_edit[name]["plain hash"] / len(photos), per_edit[name]["charlora"] / len(photos)
        print(f"{name:20} {plain_share:11.0%} {ours_share:9.0%}")
    for method, (found, false, _) in totals.items():
        print(
            f"{method:11} pair recall {found / pairs_total:.3f} ({found}/{pairs_total}), false merges {len(false)}"
            + (f": {false[:6]}" if false else "")
        )
    print(f"copies charlora missed, {sum(map(len, missed.values()))} on {len(missed)} photos:")
    for photo, edits in sorted(missed.items(), key=lambda m: (-len(m[1]), m[0])):
        print(f"  {photo}: {', '.join(edits)}")
    print(f"bursts named in similar_to with their scene: {bursts_flagged}/{len(bursts) * 3} (three batches)")
    groups_total = len(photos) * 3
    print(f"the original kept in {groups_total - len(kept_other)} of {groups_total} groups (three batches); otherwise:")
    for photo, kept, why in kept_other:
        print(f"  {photo}: kept {kept!r} for {why}")

    # time per image at 200 photos
    images = dict(photos)
    images.update({name: image for (_, name), image in bursts.items()})
    for photo, edit in itertools.islice(itertools.product(photos, edit_names), 0, None, 4):
        if len(images) == 200:
            break
        images[f"{photo} ({edit})"] = EDITS[edit](photos[photo]).convert("RGB")
    start = time.perf_counter()
    plain_hash_groups(images)
    plain = time.perf_counter() - start
    print(f"\n{len(images)} photos: plain hash {plain:.1f} s ({plain / len(images) * 1000:.0f} ms per image)")
    for workers in (1, 2):
        start = time.perf_counter()
        checked_groups(images, workers)
        checked = time.perf_counter() - start
        print(
            f"  charlora, {workers} thread{'s' * (workers > 1)}: {checked:.1f} s "
            f"({checked / len(images) * 1000:.0f} ms "
            f"per image), {checked / plain:.1f}x the plain hash"
        )


if __name__ == "__main__":
    main()
