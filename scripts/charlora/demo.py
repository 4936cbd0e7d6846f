"""The embedded demo: a small, deterministic photo set of one drawn character, "mira".

It has what a real folder has: close-ups, mid shots and full-body shots; several poses,
expressions, outfits, lights and backgrounds; hand-written captions for some images; hand-fixed
masks for the photos on textured backdrops; planted
near-duplicates (resized and re-encoded, brightened and cropped, re-saved under a name with
spaces, mirrored and turned); an EXIF-rotated JPEG, a CMYK JPEG and a palette PNG; a photo below the minimum size; and
one truncated JPEG. The same seed gives the same bytes on every machine.

This module is the list of what the demo holds (cheap: the workflow reads it at parse time);
demo_render.py draws it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SUBJECT = "mira"


@dataclass(frozen=True)
class Look:
    """What a drawn person looks like apart from the outfit: skin, hair and eye colours (RGB)."""

    skin: tuple[int, int, int]
    hair: tuple[int, int, int]
    eye: tuple[int, int, int]


# mira's magenta hair is her trait: no person of the miniature world (miniature.HAIRS) has it, so a fine-tune
# of the miniature base has something to learn that the base never drew (pixel_probe.trait_share reads it).
# A dark, saturated magenta keeps her drawn face as findable as brown hair did: lighter pinks cost the
# surprised close-up its face (framing.py) and drew edges that SIFT alone aligned too loosely (dedup).
MIRA = Look(skin=(226, 182, 152), hair=(220, 20, 120), eye=(52, 86, 60))
OUTFITS = {
    "red dress": ((178, 34, 44), (178, 34, 44)),
    "blue shirt": ((52, 86, 160), (40, 40, 48)),
    "white t-shirt": ((236, 236, 230), (62, 84, 130)),
    "green sweater": ((60, 120, 72), (70, 60, 52)),
}
# The backdrops demo_render draws.
BACKDROPS = ("grey studio", "beige gradient", "blue wall", "sky", "park", "beach", "brick wall")
# Output size (width, height) and the crop height in head heights for each framing.
WINDOW_HEADS = {"close_up": 2.0, "mid_shot": 4.3, "full_body": 8.8}


@dataclass(frozen=True)
class Shot:
    name: str  # file name in images/
    framing: str  # close_up | mid_shot | full_body (what a person would say; the framing test checks it)
    pose: str = "standing"  # standing | waving | hands on hips | arms crossed | arms up | walking | sitting
    expression: str = "smiling"  # smiling | neutral | serious | surprised
    outfit: str = "blue shirt"
    background: str = "grey studio"
    light: str = "soft frontal light"  # soft frontal light | side light | backlight
    size: tuple[int, int] = (384, 512)
    shift: float = 0.0  # horizontal position of the figure in the frame, as a fraction of its width
    special: str = ""  # exif-rotated | cmyk | palette
    caption: str = ""  # a hand-written caption goes to captions/<stem>.txt
    seed: int = 0
    look: Look = MIRA


SHOTS = (
    Shot(
        "studio_smile_closeup.png",
        "close_up",
        caption="mira, smiling, soft frontal light, blue shirt, grey studio background, close-up",
        seed=1,
    ),
    Shot(
        "portrait_neutral.png",
        "close_up",
        expression="neutral",
        outfit="white t-shirt",
        background="grey studio",
        seed=2,
    ),
    Shot(
        "window_light_serious.jpg",
        "close_up",
        expression="serious",
        outfit="green sweater",
        background="blue wall",
        light="side light",
        special="exif-rotated",
        shift=-0.15,
        seed=3,
    ),
    Shot(
        "surprised_closeup.png",
        "close_up",
        expression="surprised",
        outfit="red dress",
        background="brick wall",
        shift=-0.05,
        seed=4,
    ),
    Shot("outdoor_laugh_closeup.webp", "close_up", outfit="white t-shirt", background="sky", shift=0.14, seed=5),
    Shot(
        "studio_wave_mid.png",
        "mid_shot",
        pose="waving",
        caption="mira, waving, smiling, soft frontal light, blue shirt, grey studio background, mid shot",
        seed=6,
    ),
    Shot(
        "office_serious_mid.jpg",
        "mid_shot",
        expression="serious",
        background="beige gradient",
        special="cmyk",
        shift=-0.14,
        seed=7,
    ),
    Shot(
        "café_sitting.jpg",
        "mid_shot",
        pose="sitting",
        expression="neutral",
        outfit="green sweater",
        background="brick wall",
        caption="mira, sitting, neutral expression, side light, green sweater, brick wall background, mid shot",
        light="side light",
        seed=8,
    ),
    Shot(
        "brick_hands_hips.png",
        "mid_shot",
        pose="hands on hips",
        outfit="red dress",
        background="brick wall",
        shift=-0.1,
        seed=9,
    ),
    Shot("park_smile_mid.png", "mid_shot", outfit="white t-shirt", background="park", seed=10),
    Shot(
        "backlit_mid.png",
        "mid_shot",
        expression="neutral",
        outfit="green sweater",
        background="sky",
        light="backlight",
        seed=11,
    ),
    Shot(
        "gradient_arms_crossed.png",
        "mid_shot",
        pose="arms crossed",
        expression="serious",
        background="beige gradient",
        shift=0.18,
        seed=12,
    ),
    Shot(
        "red_dress_mid.png",
        "mid_shot",
        outfit="red dress",
        background="blue wall",
        special="palette",
        shift=0.12,
        seed=13,
    ),
    Shot(
        "wide_mid_landscape.png",
        "mid_shot",
        pose="waving",
        outfit="white t-shirt",
        background="park",
        size=(512, 384),
        caption="mira, waving, smiling, soft frontal light, white t-shirt, park background, mid shot",
        seed=14,
    ),
    Shot(
        "studio_standing_full.png",
        "full_body",
        expression="neutral",
        caption="mira, standing, neutral expression, soft frontal light, blue shirt, grey studio background, full body",
        seed=15,
    ),
    Shot("park_walk.jpg", "full_body", pose="walking", outfit="white t-shirt", background="park", seed=16),
    Shot("beach_arms_up.png", "full_body", pose="arms up", outfit="red dress", background="beach", seed=17),
    Shot(
        "street_full.png",
        "full_body",
        pose="hands on hips",
        outfit="green sweater",
        background="brick wall",
        shift=0.2,
        seed=18,
    ),
    Shot(
        "sitting_full.png",
        "full_body",
        pose="sitting",
        expression="neutral",
        background="grey studio",
        shift=-0.18,
        seed=19,
    ),
)
# Planted problems: (file name, what it is made of).
NEAR_DUPLICATES = {
    "studio_smile_closeup_small.jpg": ("studio_smile_closeup.png", "resized to 75%, JPEG quality 80"),
    "park_walk_bright.jpg": ("park_walk.jpg", "brightened 12%, cropped 4% each side"),
    "portrait neutral (copy).png": ("portrait_neutral.png", "re-encoded through JPEG quality 92, saved as PNG"),
    "brick_hands_hips_flipped.jpg": ("brick_hands_hips.png", "mirror image, rotated 2 degrees, JPEG quality 85"),
}
TOO_SMALL = "thumb_smile.jpg"
TRUNCATED = "beach_wave.jpg"

# Backdrops a colour key cannot separate from the figure (texture, or close to skin): the demo ships
# hand-fixed masks for these, as a user would after looking at the generated ones.
HAND_MASKED_BACKGROUNDS = ("brick wall", "park", "beach", "beige gradient")

IMAGE_FILES = tuple(sorted([s.name for s in SHOTS] + list(NEAR_DUPLICATES) + [TOO_SMALL, TRUNCATED]))
CAPTION_FILES = tuple(sorted(Path(s.name).stem + ".txt" for s in SHOTS if s.caption))
MASK_FILES = tuple(sorted(Path(s.name).stem + ".png" for s in SHOTS if s.background in HAND_MASKED_BACKGROUNDS))


def scene_tags(image_id: str) -> list[str]:
    """What a perfect tagger would say about a demo photo (by id): its scene description as tags.
    The demo's tagger (captions.tagger: demo), so that the demo's captions fill every slot."""
    by_stem = {Path(s.name).stem: s for s in SHOTS}
    originals = {Path(copy).stem: Path(original).stem for copy, (original, _) in NEAR_DUPLICATES.items()}
    shot = by_stem.get(originals.get(image_id, image_id))
    if shot is None:
        return []
    expression = "neutral expression" if shot.expression == "neutral" else shot.expression
    framing = {"close_up": "close-up", "mid_shot": "upper body", "full_body": "full body"}[shot.framing]
    return [shot.pose, expression, shot.light, shot.outfit, f"{shot.background} background", framing]
