"""The fixed prompts every sampled epoch is judged by (results/runs/<run>/validate/prompts.tsv).

In order: the subject token alone (what the model has learnt the token means); prompts composed from
the intent, which between them carry every value the user listed (intent.py), and phrasing variants
of a few of them (each scored against its original: a drop on the variant only is a rigid
understanding); the validation photos' captions (the model never trained on these photos, so a
sample can be held against a real photo of its caption); the user's own prompts
(`validate.extra_prompts`); last, a few training photos' captions (`validate.train_captions`), the
guide's "same prompts that were used during training": the memorisation probe, whose samples are
compared with their own photo and kept apart from the unseen prompts. Each prompt gets a short stable
name (p01, p02, ...) that prefixes its image files, and its origin. A prompt that repeats an earlier
one is left out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from charlora.captions import Vocabulary
from charlora.intent import Intent, intent_prompts, phrasing_variants

if TYPE_CHECKING:
    from charlora.sample import Prompt

# The origins' prefixes (then a photo's id, or the original prompt's name and the swap): the scorecard
# reads them to keep the memorisation probe apart and to pair each variant with its original.
VALIDATION_PHOTO, TRAINING_PHOTO, VARIANT_OF = "validation photo ", "training photo ", "variant of "


def training_photo(origin: str) -> str | None:
    """The id of the training photo whose caption the prompt is, else None."""
    return origin.removeprefix(TRAINING_PHOTO) if origin.startswith(TRAINING_PHOTO) else None


def original(origin: str) -> str | None:
    """The name of the prompt a phrasing variant rewords ("variant of p03: smiling -> grin": p03), else None."""
    return origin.removeprefix(VARIANT_OF).split(":")[0] if origin.startswith(VARIANT_OF) else None


def spread(ids: list[str], count: int) -> list[str]:
    """`count` of the sorted `ids`, evenly spaced from the first (all of them when there are fewer)."""
    ids = sorted(ids)
    if count >= len(ids):
        return ids
    return [ids[i * len(ids) // count] for i in range(count)]


def compose(
    token: str,
    intent: Intent,
    vocabulary: Vocabulary,
    cap: int,
    val_captions: dict[str, str],
    extra: list[str],
    train_captions: dict[str, str] | None = None,
    probe: int = 0,
) -> tuple[list[Prompt], list[str]]:
    """The evaluation prompts, and the intent values that `cap` (validate.prompts) left out."""
    from charlora.sample import Prompt  # imports torch: here, so that the scorecard can read the origins

    prompts: list[Prompt] = []

    def add(origin: str, text: str) -> Prompt | None:
        text = " ".join(text.split())
        if not text or any(p.text == text for p in prompts):
            return None
        prompts.append(Prompt(f"p{len(prompts) + 1:02d}", origin, text))
        return prompts[-1]

    add("token", token)
    composed, missed = intent_prompts(token, intent, vocabulary, cap)
    added = [add("intent", text) for text in composed]
    for index, swap, text in phrasing_variants(composed, vocabulary):
        if added[index]:
            add(f"{VARIANT_OF}{added[index].name}: {swap}", text)
    for photo, caption in sorted(val_captions.items()):
        add(VALIDATION_PHOTO + photo, caption)
    for text in extra:
        add("extra", text)
    train_captions = train_captions or {}
    for photo in spread(list(train_captions), probe):
        add(TRAINING_PHOTO + photo, train_captions[photo])
    return prompts, missed
