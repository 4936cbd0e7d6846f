"""The fixed prompts every sampled epoch is judged by (results/runs/<run>/validate/prompts.tsv).

In order: the subject token alone (what the model has learnt the token means); prompts composed from
the intent, which between them carry every value the user listed (intent.py), and phrasing variants
of a few of them; the validation photos' captions (the guide validates with "the same prompts that
were used during training", and the model never trained on these photos, so a sample can be held
against a real photo of its caption); the user's own prompts (`validate.extra_prompts`). Each prompt
gets a short stable name (p01, p02, ...) that prefixes its image files, and its origin. A prompt
that repeats an earlier one is left out.
"""

from __future__ import annotations

from charlora.captions import Vocabulary
from charlora.intent import Intent, intent_prompts, phrasing_variants
from charlora.sample import Prompt


def compose(token: str, intent: Intent, vocabulary: Vocabulary, cap: int, val_captions: dict[str, str],
            extra: list[str]) -> tuple[list[Prompt], list[str]]:
    """The evaluation prompts, and the intent values that `cap` (validate.prompts) left out."""
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
            add(f"variant of {added[index].name}: {swap}", text)
    for photo, caption in sorted(val_captions.items()):
        add(f"validation photo {photo}", caption)
    for text in extra:
        add("extra", text)
    return prompts, missed
