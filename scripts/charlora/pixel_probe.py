"""What a sample of the miniature world shows, read from its pixels by the renderer's own colours.

The demo's photos and the miniature base's pretraining pictures are drawn by demo_render.py from a
short list of backdrops, outfits and looks, so a sample can be checked without any model:

- the backdrop: the sample's outer columns (a 4 x 4 grid's left and right columns, the cells a figure
  covers least) against the same cells of the renderer's backdrops alone, at the prompted framing,
  under every light and across the shifts and seeds the renderer draws. Per reference, the mean
  colour distance of its 5 best-matching cells of 8 (a figure may cover the others); the nearest
  backdrop is the one the sample shows. Backdrops the renderer itself draws alike at a framing (the
  sky of a beach in a close-up is the sky) are one answer there: `backdrop_classes`.
- the outfit: the figure's pixels (those far from the recognised backdrop's colours) each go to the
  nearest colour the renderer uses for a figure (outfits' tops and bottoms, skins, hair, shoes, under
  every light); the outfit whose top colour takes the most of them is the one the sample shows.
- a colour (a character's trait, such as mira's hair): its share of the figure's pixels in a drawn
  photo (`colour_share`); in a model's sample, its share of the place where the renderer draws the
  head (`trait_share`), against the sample's own backdrop too, since a weak model's colour casts can
  turn a backdrop towards the trait.

`adherence(sample, prompt)` is the share of the prompt's probed words (its backdrop, its outfit) that
the sample shows: the demo's prompt adherence (select.adherence: pixel_probe).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

import numpy as np
from PIL import Image

from charlora import demo

GRID = 4  # the sample is cut into GRID x GRID cells; the outer columns are read for the backdrop
BEST_CELLS = 5  # of the 8 outer cells, the best-matching ones that count (a figure covers the rest)
REFERENCE_SIDE = 64  # backdrops and samples are compared at this height
FIGURE_DISTANCE = 40.0  # RGB distance from the backdrop beyond which a pixel is the figure's
LIGHT_SCALES = (0.6, 0.75, 0.9, 1.0, 1.15)  # side light falls from 1.15 to 0.6 across the canvas
FRAMING_WORDS = {"close-up": "close_up", "mid shot": "mid_shot", "full body": "full_body"}
SAME_BACKDROP = 12.0  # backdrops whose references are this close at a framing are one answer there

# Colours a figure is drawn in apart from outfits and looks (demo_render: shoes, the box to sit on,
# lips, the open mouth, the eyes' whites, brows).
FIGURE_COLOURS = ((40, 30, 28), (110, 84, 60), (160, 70, 70), (90, 30, 30), (245, 245, 245), (60, 40, 32))


@dataclass(frozen=True)
class Reading:
    """What the probe read from one sample."""

    backdrop: str  # the nearest backdrop ("park", "beach" ... as demo_render names them)
    backdrop_distance: float  # its mean RGB distance over the best cells
    outfit: str | None  # the outfit whose top colour covers most of the figure; None: no figure seen
    figure_share: float  # the share of the sample's pixels that are the figure's


def lit(colour, light: str) -> list[np.ndarray]:
    """`colour` as each light draws it (demo_render._apply_light)."""
    c = np.asarray(colour, dtype=np.float64)
    if light == "backlight":
        return [np.clip(c * 0.75 + 30, 0, 255)]
    if light == "side light":
        return [np.clip(c * s, 0, 255) for s in LIGHT_SCALES]
    return [c]


def under_any_light(colour) -> np.ndarray:
    return np.stack([v for light in ("soft frontal light", "side light", "backlight") for v in lit(colour, light)])


def small(image: Image.Image) -> np.ndarray:
    """The image at REFERENCE_SIDE rows (its aspect kept), RGB as float."""
    width = max(GRID, round(image.width * REFERENCE_SIDE / image.height))
    return np.asarray(image.convert("RGB").resize((width, REFERENCE_SIDE), Image.Resampling.BOX), dtype=np.float64)


def aspect(image: Image.Image) -> float:
    """The sample's shape as the references are kept (width over height at REFERENCE_SIDE rows)."""
    return round(small(image).shape[1] / REFERENCE_SIDE, 2)


def outer_cells(pixels: np.ndarray) -> np.ndarray:
    """The median colour of each cell of the grid's left and right columns: (2 * GRID, 3)."""
    h, w, _ = pixels.shape
    rows = np.linspace(0, h, GRID + 1).round().astype(int)
    cols = np.linspace(0, w, GRID + 1).round().astype(int)
    cells = []
    for c in (0, GRID - 1):
        for r in range(GRID):
            cell = pixels[rows[r] : rows[r + 1], cols[c] : cols[c + 1]].reshape(-1, 3)
            cells.append(np.median(cell, axis=0))
    return np.asarray(cells)


@cache
def backdrop_references(framing: str, aspect: float) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    """For each backdrop: (outer cells, pixels) of the renderer's backdrop alone at `framing` and
    `aspect` (width / height), under each light, at three shifts and two seeds."""
    from charlora.demo_render import backdrop_crop, max_shift

    height = REFERENCE_SIDE * 4
    size = (round(height * aspect), height)
    limit = max(0.0, min(0.2, max_shift(framing, size)))
    references: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    for backdrop in demo.BACKDROPS:
        for light in ("soft frontal light", "side light", "backlight"):
            for shift in (-limit, 0.0, limit):
                for seed in (0, 1):
                    crop = backdrop_crop(backdrop, framing, light, shift, seed, size)
                    pixels = small(crop)
                    references.setdefault(backdrop, []).append((outer_cells(pixels), pixels))
    return references


@cache
def reference_cells(framing: str, aspect: float) -> dict[str, np.ndarray]:
    """Per backdrop, its references' outer cells stacked: (references, 2 * GRID, 3)."""
    return {b: np.stack([c for c, _ in refs]) for b, refs in backdrop_references(framing, aspect).items()}


def cell_distances(cells: np.ndarray, references: np.ndarray) -> np.ndarray:
    """The mean colour distance of the BEST_CELLS best-matching cells of `cells` (..., 2 * GRID, 3) to
    each of `references` (the same shape), one per pair."""
    return np.sort(np.linalg.norm(cells - references, axis=-1), axis=-1)[..., :BEST_CELLS].mean(axis=-1)


def backdrop_distances(pixels: np.ndarray, framing: str) -> dict[str, tuple[float, np.ndarray]]:
    """Per backdrop: the distance of its nearest reference to the sample, and that reference's pixels."""
    cells = outer_cells(pixels)
    aspect = round(pixels.shape[1] / REFERENCE_SIDE, 2)
    references = backdrop_references(framing, aspect)
    out = {}
    for backdrop, stacked in reference_cells(framing, aspect).items():
        distances = cell_distances(cells[None], stacked)
        nearest = int(distances.argmin())  # the first of equals
        out[backdrop] = (float(distances[nearest]), references[backdrop][nearest][1])
    return out


@cache
def figure_palette() -> tuple[np.ndarray, np.ndarray]:
    """Every colour the renderer draws a figure in, under every light, and what each is: an outfit's
    name for its top colour, "" for anything else (bottoms, skin, hair, shoes...)."""
    from charlora import miniature

    colours, names = [], []

    def add(colour, name: str) -> None:
        shades = under_any_light(colour)
        colours.extend(shades)
        names.extend([name] * len(shades))

    for outfit, (top, bottom) in demo.OUTFITS.items():
        add(top, outfit)
        add(bottom, "")
    for look in (demo.MIRA, *miniature.LOOK_CHOICES):
        for colour in (look.skin, look.hair, look.eye):
            add(colour, "")
    for colour in FIGURE_COLOURS:
        add(colour, "")
    # each colour once, at its first place (the world's looks share their skins, hairs and eyes): the
    # nearest colour, and its name, are those of the full list
    colours, names = np.asarray(colours), np.asarray(names)
    keep = np.sort(np.unique(colours, axis=0, return_index=True)[1])
    return colours[keep], names[keep]


def at_shape(pixels: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """`pixels` resized to `shape` (a reference's width may differ from a sample's by a pixel)."""
    if pixels.shape == shape:
        return pixels
    image = Image.fromarray(pixels.clip(0, 255).astype(np.uint8))
    return np.asarray(image.resize((shape[1], shape[0]), Image.Resampling.BILINEAR), dtype=np.float64)


def figure_pixels(pixels: np.ndarray, backdrop_pixels: np.ndarray) -> np.ndarray:
    """The sample's pixels (n, 3) that are far from the backdrop reference at the same place."""
    far = np.linalg.norm(pixels - at_shape(backdrop_pixels, pixels.shape), axis=2) > FIGURE_DISTANCE
    return pixels[far]


def nearest_distance(colours: np.ndarray, to: np.ndarray) -> np.ndarray:
    """Each of `colours` (n, 3): its distance to the nearest of `to` (m, 3)."""
    return np.linalg.norm(colours[:, None, :] - to[None, :, :], axis=2).min(axis=1)


def other_figure_colours(trait: np.ndarray) -> np.ndarray:
    """Every colour the renderer draws a figure in (figure_palette) but the shades in `trait`."""
    palette, _ = figure_palette()
    return palette[~(palette[:, None, :] == trait[None]).all(axis=2).any(axis=1)]


def nearest_names(colours: np.ndarray) -> np.ndarray:
    palette, names = figure_palette()
    distances = np.linalg.norm(colours[:, None, :] - palette[None, :, :], axis=2)
    return names[distances.argmin(axis=1)]


def recognised_backdrop(pixels: np.ndarray, framing: str) -> tuple[str, float, np.ndarray]:
    """The backdrop nearest to the sample (backdrop_distances): its name, distance and reference pixels."""
    distances = backdrop_distances(pixels, framing)
    backdrop = min(distances, key=lambda b: distances[b][0])
    return backdrop, *distances[backdrop]


def read(image: Image.Image, framing: str = "mid_shot") -> Reading:
    """What `image` shows, read as a picture at `framing` (close_up, mid_shot, full_body)."""
    pixels = small(image)
    backdrop, distance, reference = recognised_backdrop(pixels, framing)
    figure = figure_pixels(pixels, reference)
    outfit = None
    if len(figure):
        names = nearest_names(figure)
        counts = {o: int((names == o).sum()) for o in demo.OUTFITS}
        if max(counts.values()) > 0:
            outfit = max(counts, key=counts.get)
    share = len(figure) / (pixels.shape[0] * pixels.shape[1])
    return Reading(backdrop, distance, outfit, share)


def colour_share(image: Image.Image, colour, framing: str = "mid_shot") -> float:
    """The share of the figure's pixels nearer to `colour` (under any light) than to any colour the
    renderer draws a figure in: how much of a character's trait colour a drawn photo shows."""
    pixels = small(image)
    figure = figure_pixels(pixels, recognised_backdrop(pixels, framing)[2])
    if not len(figure):
        return 0.0
    trait = under_any_light(colour)
    return float((nearest_distance(figure, trait) < nearest_distance(figure, other_figure_colours(trait))).mean())


def trait_share(image: Image.Image, colour, framing: str = "mid_shot") -> float:
    """The share of the head's place in the sample (demo_render.head_box at `framing`) whose pixels are
    nearer to `colour` (under any light) than to any other colour the renderer draws a figure in and
    than to the sample's own backdrop (its outer cells that best match the backdrop recognised): how
    much of a character's hair in her trait colour a sample shows. Counting only where the head is,
    against the backdrop as the sample drew it, keeps a backdrop drawn in a colour cast near the trait
    (a model's brick wall can come out magenta) from being read as hair."""
    from charlora.demo_render import head_box

    pixels = small(image)
    reference = at_shape(recognised_backdrop(pixels, framing)[2], pixels.shape)
    cells = outer_cells(pixels)
    own_backdrop = cells[np.argsort(np.linalg.norm(cells - outer_cells(reference), axis=1))[:BEST_CELLS]]
    left, top, right, bottom = head_box(framing, (pixels.shape[1], pixels.shape[0]))
    head = pixels[top:bottom, left:right].reshape(-1, 3)
    trait = under_any_light(colour)
    others = np.concatenate([other_figure_colours(trait), own_backdrop])
    return float((nearest_distance(head, trait) < nearest_distance(head, others)).mean())


@cache
def backdrop_classes(framing: str, aspect: float) -> dict[str, frozenset[str]]:
    """For each backdrop, the backdrops the renderer draws alike with it at `framing` (its own included):
    reading one of them as another there is not a mistake of the sample."""
    cells = reference_cells(framing, aspect)
    return {
        a: frozenset(b for b in cells if cell_distances(cells[a][:, None], cells[b][None]).min() <= SAME_BACKDROP)
        for a in cells
    }


@dataclass(frozen=True)
class Asked:
    """The probed words of a prompt."""

    backdrop: str | None
    outfit: str | None
    framing: str


def asked(prompt: str) -> Asked:
    """The backdrop, outfit and framing a prompt names (None: not named; framing: mid shot if not named)."""
    text = " ".join(prompt.lower().split())
    backdrop = next(
        (b for b in sorted(demo.BACKDROPS, key=len, reverse=True) if re.search(rf"\b{re.escape(b)}\b", text)), None
    )
    outfit = next((o for o in sorted(demo.OUTFITS, key=len, reverse=True) if o in text), None)
    framing = next((f for word, f in FRAMING_WORDS.items() if word in text), "mid_shot")
    return Asked(backdrop, outfit, framing)


def adherence(image: Image.Image, prompt: str) -> float | None:
    """The share of the prompt's backdrop and outfit that the sample shows (None: it names neither)."""
    wanted = asked(prompt)
    if wanted.backdrop is None and wanted.outfit is None:
        return None
    reading = read(image, wanted.framing)
    hits = []
    if wanted.backdrop is not None:
        hits.append(reading.backdrop in backdrop_classes(wanted.framing, aspect(image))[wanted.backdrop])
    if wanted.outfit is not None:
        hits.append(reading.outfit == wanted.outfit)
    return sum(hits) / len(hits)
