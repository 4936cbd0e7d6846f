"""The user's intent (config `intent:`): what the character must manage, as lists, and what follows
from it: evaluation prompts that exercise every listed value, and how many photos show each value.

The guide's "Vision Before Execution": decide the scenes, expressions, poses, camera angles, lenses
and lighting the character has to handle before curating, and judge every epoch against them. Each
listed value goes to the caption slot it describes (config/caption_slots.yaml), so a prompt reads
like a training caption: `<token>, pose, expression, lighting, clothing, background, composition`.

Prompts: as many as the longest slot has values (capped by `validate.prompts`); the values of each
slot are shuffled once (a fixed seed) and dealt out in turn, so that every value appears at least
once and values of different slots meet in varied combinations. Scenes and backgrounds share the
background slot; framings, angles and lenses are separate parts of the composition slot, since a
close-up can also be from below with an 85mm lens. Then phrasing variants: a few prompts again
with one value in another wording that the vocabulary lists as its synonym ("smiling" -> "grin"), to
see whether the character holds when the prompt is phrased as a user would rather than as the
captions are.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from charlora.captions import Vocabulary, normalise, split_caption

# intent field -> (caption slot, part of the slot): fields with one part share a pool of values
FIELDS = {
    "poses": ("pose", "pose"),
    "expressions": ("expression", "expression"),
    "lighting": ("lighting", "lighting"),
    "scenes": ("background", "background"),
    "backgrounds": ("background", "background"),
    "framings": ("composition", "framing"),
    "angles": ("composition", "angle"),
    "lenses": ("composition", "lens"),
}
SELECTION_SEED = 0  # the shuffle of each slot's values: the same prompts on every rebuild
VARIANTS = 3  # prompts repeated with one value in other words


@dataclass(frozen=True)
class Intent:
    values: dict[str, list[str]]  # field -> its values in the user's order (normalised, canonical)
    notes: str

    @classmethod
    def from_config(cls, value: str | dict, vocabulary: Vocabulary) -> "Intent":
        """config `intent:`: the structured form, or a plain string (notes only, no values)."""
        if isinstance(value, str):
            return cls({field: [] for field in FIELDS}, value.strip())
        values = {}
        for field in FIELDS:
            canonical = [vocabulary.canonical(v) for v in value.get(field, [])]
            values[field] = list(dict.fromkeys(v for v in canonical if v))  # once each, in the user's order
        return cls(values, (value.get("notes") or "").strip())

    def listed(self) -> list[tuple[str, str]]:
        """(field, value) for every listed value."""
        return [(field, v) for field, values in self.values.items() for v in values]


def pools(intent: Intent) -> dict[str, list[str]]:
    """The values of each part (pose, expression, ..., background, framing, angle, lens), shuffled
    once with a fixed seed; fields that share a part are pooled."""
    parts: dict[str, list[str]] = {}
    for field, (_, part) in FIELDS.items():
        parts.setdefault(part, [])
        parts[part] += [v for v in intent.values[field] if v not in parts[part]]
    rng = random.Random(SELECTION_SEED)
    for values in parts.values():
        rng.shuffle(values)
    return {part: values for part, values in parts.items() if values}


def intent_prompts(token: str, intent: Intent, vocabulary: Vocabulary, cap: int) -> tuple[list[str], list[str]]:
    """Prompts in caption order that between them carry every listed value (when `cap` allows), and
    the values left out by the cap."""
    parts = pools(intent)
    if not parts:
        return [], []
    count = min(cap, max(len(values) for values in parts.values()))
    slot_of_part = {part: slot for slot, part in FIELDS.values()}
    prompts = []
    for i in range(count):
        chosen = {part: values[i % len(values)] for part, values in parts.items()}
        words = [chosen[part] for slot in vocabulary.order for part in chosen if slot_of_part[part] == slot]
        prompts.append(", ".join([token, *words]))
    missed = [v for values in parts.values() for v in values[count:]]
    return prompts, missed


def phrasing_variants(prompts: list[str], vocabulary: Vocabulary, count: int = VARIANTS) -> list[tuple[int, str, str]]:
    """(index of the prompt, the swap, the variant) for up to `count` prompts holding a value that the
    vocabulary also knows by another word; each variant swaps a different value where it can."""
    other_words: dict[str, list[str]] = {}
    for word, canonical in vocabulary.synonyms.items():
        other_words.setdefault(canonical, []).append(word)
    variants, swapped = [], set()
    for index, prompt in enumerate(prompts):
        parts = split_caption(prompt)
        for position, part in enumerate(parts[1:], start=1):
            if part in other_words and part not in swapped:
                other = sorted(other_words[part])[0]
                swapped.add(part)
                variants.append(
                    (index, f"{part} -> {other}", ", ".join(parts[:position] + [other] + parts[position + 1 :]))
                )
                break
        if len(variants) == count:
            break
    return variants


def carries(caption: str, value: str, vocabulary: Vocabulary) -> bool:
    """Whether a caption carries an intent value: one of its parts is the value, or holds it as whole
    words ("park" is in "park background"), after synonyms."""
    pattern = re.compile(rf"(?<![\w-]){re.escape(value)}(?![\w-])")
    return any(pattern.search(vocabulary.canonical(part)) for part in split_caption(normalise(caption)))


def coverage(intent: Intent, captions: dict[str, str], vocabulary: Vocabulary) -> list[tuple[str, str, int]]:
    """(field, value, number of captions that carry it) for every listed value."""
    return [
        (field, value, sum(carries(c, value, vocabulary) for c in captions.values()))
        for field, value in intent.listed()
    ]
