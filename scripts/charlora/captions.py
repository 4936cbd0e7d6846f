"""Structured captions in the guide's format, and their lint.

    <subject token>, pose, expression, lighting, clothing, background, composition

A composed caption takes the tagger's tags through the slot vocabulary (config/caption_slots.yaml):
each tag is normalised, mapped through the synonyms, dropped when generic, placed in its slot;
the composition slot comes from the photo's measured framing when a face was found. A user's own
caption wins as written; both kinds are linted the same way.
"""

from __future__ import annotations

import csv
import fnmatch
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from charlora import atomic
from charlora.framing import WORDS as FRAMING_WORDS


class CaptionError(ValueError):
    """A caption file cannot be used; the message names it."""


def normalise(tag: str) -> str:
    return " ".join(tag.replace("_", " ").lower().split())


@dataclass
class Vocabulary:
    order: list[str]
    slots: dict[str, list[str]]
    synonyms: dict[str, str] = field(default_factory=dict)
    conflicts: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def load(cls, path: str | Path) -> "Vocabulary":
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
            vocabulary = cls(
                order=list(data["order"]),
                slots={slot: [normalise(t) for t in tags] for slot, tags in data["slots"].items()},
                synonyms={normalise(k): normalise(v) for k, v in (data.get("synonyms") or {}).items()},
                conflicts=[tuple(normalise(t) for t in pair) for pair in data.get("conflicts") or []],
            )
        except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError) as exc:
            raise CaptionError(f"{path}: not a caption vocabulary (needs order and slots): {exc}") from None
        missing = [slot for slot in vocabulary.order if slot not in vocabulary.slots]
        if missing:
            raise CaptionError(f"{path}: order names slots with no entries: {', '.join(missing)}")
        return vocabulary

    def canonical(self, tag: str) -> str:
        tag = normalise(tag)
        return self.synonyms.get(tag, tag)

    def slot_of(self, tag: str) -> str | None:
        """The first slot in `order` whose entries match the (canonical) tag; exact words before patterns."""
        for exact in (True, False):
            for slot in self.order:
                for entry in self.slots[slot]:
                    if ("*" in entry) != (not exact):
                        continue
                    if (entry == tag) if exact else fnmatch.fnmatchcase(tag, entry):
                        return slot
        return None


@dataclass
class Caption:
    text: str
    source: str  # composed | user
    slots: dict[str, list[str]]
    dropped: list[str]
    flags: list[str]

    file: str | None = None  # the user's caption file, when the caption is theirs

    def record(self) -> dict:
        return {
            "caption": self.text,
            "source": self.source,
            "slots": self.slots,
            "dropped": self.dropped,
            "flags": self.flags,
            "user_caption": self.file,
        }


def split_caption(text: str) -> list[str]:
    return [part.strip() for part in text.replace("\n", ",").split(",") if part.strip()]


def compose(token: str, tags: list[dict], framing: str | None, vocabulary: Vocabulary, generic: list[str]) -> Caption:
    """The caption of a photo from its tags (highest score first) and measured framing."""
    generic_set = {normalise(g) for g in generic}
    slots: dict[str, list[str]] = {slot: [] for slot in vocabulary.order}
    dropped = []
    for tag in tags:
        name = vocabulary.canonical(tag["name"])
        slot = vocabulary.slot_of(name)
        if name in generic_set or slot is None:
            dropped.append(name)
        elif name not in slots[slot]:
            slots[slot].append(name)
    if framing in FRAMING_WORDS and "composition" in slots:
        measured = FRAMING_WORDS[framing]
        shot_words = set(FRAMING_WORDS.values())
        slots["composition"] = [measured] + [t for t in slots["composition"] if t not in shot_words]
    parts = [token] + [t for slot in vocabulary.order for t in slots[slot]]
    return Caption(", ".join(parts), "composed", slots, sorted(set(dropped)), [])


def read_user_caption(path: str | Path) -> str:
    """The user's caption as written (whitespace tidied); empty or non-UTF-8 files are refused."""
    path = Path(path)
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CaptionError(f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    text = " ".join(text.split())
    if not text:
        raise CaptionError(f"{path}: the caption file is empty; write the caption or delete the file")
    return text


def user_caption(path: str | Path, vocabulary: Vocabulary) -> Caption:
    text = read_user_caption(path)
    slots: dict[str, list[str]] = {slot: [] for slot in vocabulary.order}
    for part in split_caption(text):
        slot = vocabulary.slot_of(vocabulary.canonical(part))
        if slot:
            slots[slot].append(normalise(part))
    return Caption(text, "user", slots, [], [], str(path))


def make_caption(
    user_path: str | Path | None,
    token: str,
    tags: list[dict],
    framing: str | None,
    vocabulary: Vocabulary,
    generic: list[str],
    strict: bool = False,
) -> Caption:
    """The user's caption when usable; otherwise the composed one (with a flag saying why)."""
    if user_path:
        try:
            return user_caption(user_path, vocabulary)
        except CaptionError as exc:
            if strict:
                raise
            caption = compose(token, tags, framing, vocabulary, generic)
            caption.flags.append(f"user caption not used, composed one instead: {exc}")
            return caption
    return compose(token, tags, framing, vocabulary, generic)


# --- lint ---------------------------------------------------------------------------------------


@dataclass
class LintRow:
    id: str
    source: str
    tokens: int
    cut: str  # what the text encoders would not see
    issues: list[str]


def lint(
    captions: dict[str, dict],
    token: str,
    vocabulary: Vocabulary,
    generic: list[str],
    count_tokens,
    max_tokens: int,
    cut_text,
) -> list[LintRow]:
    """Lint every caption record (id -> record from make_caption).

    `count_tokens(text)` gives the token count with BOS and EOS; `cut_text(text, max_tokens)` the
    part beyond the limit.
    """
    generic_set = {normalise(g) for g in generic}

    def feature(written: str) -> str:  # "Red_Dress", "red dress", "red-dress" are one feature
        return vocabulary.canonical(written).replace(" ", "").replace("-", "")

    forms: dict[str, Counter] = defaultdict(Counter)  # feature -> how captions write it
    written_in = {image_id: split_caption(record["caption"]) for image_id, record in captions.items()}
    for written in written_in.values():
        for part in set(written):
            forms[feature(part)][part] += 1
    rows = []
    for image_id in sorted(captions):
        record, written = captions[image_id], written_in[image_id]
        parts = [normalise(p) for p in written]
        issues = list(record.get("flags", []))
        tokens = count_tokens(record["caption"])
        cut = cut_text(record["caption"], max_tokens) if tokens > max_tokens else ""
        if cut:
            where = record.get("user_caption") or "the composed caption"
            issues.append(
                f"{where}: {tokens} tokens, over the {max_tokens} the text encoders read; '{cut}' would be cut"
            )
        if normalise(token) not in parts:
            issues.append(f"missing subject token '{token}' at the start")
        elif parts[0] != normalise(token):
            issues.append(f"subject token '{token}' is not first")
        issues += [f"generic tag '{p}'" for p in parts if p in generic_set]
        issues += [f"empty slot: {slot}" for slot in vocabulary.order if not record["slots"].get(slot)]
        canon = {vocabulary.canonical(p) for p in parts}
        issues += [f"conflicting tags: '{a}' and '{b}'" for a, b in vocabulary.conflicts if a in canon and b in canon]
        seen = Counter(parts)
        issues += [f"repeated tag '{p}'" for p, n in seen.items() if n > 1]
        for part in sorted(set(written)):
            used = forms[feature(part)]
            common, count = max(used.items(), key=lambda kv: (kv[1], kv[0]))
            if len(used) > 1 and part != common:
                issues.append(f"'{part}' is written '{common}' in {count} other caption(s)")
        rows.append(LintRow(image_id, record["source"], tokens, cut, issues))
    return rows


def write_lint_table(rows: list[LintRow], path: str | Path) -> None:
    atomic.write_tsv(
        path,
        ["id", "source", "tokens", "cut", "issues"],
        ([r.id, r.source, r.tokens, r.cut, "; ".join(r.issues)] for r in rows),
    )


def read_lint_table(path: str | Path) -> list[LintRow]:
    with open(path, newline="", encoding="utf-8") as f:
        return [
            LintRow(
                row["id"],
                row["source"],
                int(row["tokens"]),
                row["cut"],
                row["issues"].split("; ") if row["issues"] else [],
            )
            for row in csv.DictReader(f, delimiter="\t")
        ]
