"""The photos of a dataset folder, by id. Names only: nothing is opened, so this is cheap enough
to run each time Snakemake parses the workflow."""

from __future__ import annotations

import difflib
import unicodedata
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

SUPPORTED_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif")
IGNORED_NAMES = {"thumbs.db", "desktop.ini"}  # plus every dot-file (.DS_Store, ._IMG_0001.jpg)


@dataclass
class DatasetListing:
    """The images of a dataset folder by id (the file name's stem), and files that cannot get an id."""

    images: dict[str, str] = field(default_factory=dict)  # id -> file name inside images/
    rejected: dict[str, str] = field(default_factory=dict)  # file name -> reason


def list_dataset_images(images_dir: str | Path) -> DatasetListing:
    """List `images_dir` (flat, cheap: names only, nothing is opened).

    The id of an image is its file name without the extension, so that `captions/<id>.txt` and
    `masks/<id>.png` can be matched to it. Two files with one stem would share those, so both are
    rejected until the user renames one.
    """
    images_dir = Path(images_dir)
    listing = DatasetListing()
    if not images_dir.is_dir():
        raise FileNotFoundError(
            f"dataset folder {images_dir} does not exist: the dataset needs an images/ folder "
            "with the photos (set `dataset:` in config/config.yaml)"
        )
    by_stem: dict[str, list[str]] = defaultdict(list)
    for entry in sorted(images_dir.iterdir()):
        name = entry.name
        if name.startswith(".") or name.lower() in IGNORED_NAMES:
            continue
        if entry.is_dir():
            listing.rejected[name] = "is a folder: charlora reads images/ flat, move its photos up"
        elif "{" in name or "}" in name:
            listing.rejected[name] = (
                "braces { } in the name: Snakemake reads them as wildcards in file paths, so the photo cannot "
                "be processed; rename it (e.g. with ( ) instead)"
            )
        elif entry.suffix.lower() not in SUPPORTED_SUFFIXES:
            listing.rejected[name] = (
                f"unsupported file type {entry.suffix or '(no extension)'!r}: "
                f"use one of {', '.join(SUPPORTED_SUFFIXES)}"
            )
        else:
            by_stem[unicodedata.normalize("NFC", entry.stem)].append(name)
    for stem, names in by_stem.items():
        if len(names) == 1:
            listing.images[stem] = names[0]
        else:
            for name in names:
                others = ", ".join(n for n in names if n != name)
                listing.rejected[name] = (
                    f"ambiguous id {stem!r}: {others} has the same name with another extension "
                    "(captions and masks are matched by name); rename or remove one of them"
                )
    return listing


# The user's own files beside images/: folder -> (the suffix charlora reads, what such a file is)
USER_FILES = {"captions": (".txt", "caption"), "masks": (".png", "mask")}


def stray_files(dataset_dir: str | Path, ids: set[str]) -> dict[str, str]:
    """Files in the dataset's captions/ and masks/ that no photo will use ('captions/IMG_001.txt'
    beside images/IMG_0001.jpg), each with the reason and the likely photo: the user believes they
    are used. Names only, cheap like the listing."""
    strays = {}
    for folder, (suffix, what) in USER_FILES.items():
        folder_path = Path(dataset_dir) / folder
        if not folder_path.is_dir():
            continue
        for entry in sorted(folder_path.iterdir()):
            name, where = entry.name, f"{folder}/{entry.name}"
            if name.startswith(".") or name.lower() in IGNORED_NAMES:
                continue
            if entry.is_dir():
                strays[where] = f"is a folder: {folder}/ is read flat, so nothing in it is used"
            elif entry.suffix != suffix:
                strays[where] = f"not used: only <photo name>{suffix} files are read as {what}s"
            elif entry.stem not in ids:
                close = difflib.get_close_matches(entry.stem, sorted(ids), n=1, cutoff=0.8)
                strays[where] = f"no photo named {entry.stem!r} in images/, so this {what} is not used" + (
                    f"; did you mean {close[0]!r}?" if close else ""
                )
    return strays


def files_by_id(**files: list[str | Path]) -> dict[str, dict[str, Path]]:
    """Curated files grouped by photo: `images=[...], captions=[...]` -> {id: {"image": ..., "caption": ...}}
    (the id is the file name's stem; the kind is the keyword without its plural s)."""
    grouped: dict[str, dict[str, Path]] = {}
    for kind, paths in files.items():
        for path in paths:
            grouped.setdefault(Path(path).stem, {})[kind.removesuffix("s")] = Path(path)
    return grouped
