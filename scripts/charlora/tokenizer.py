"""SDXL's CLIP tokenizer, built offline from the BPE vocabulary that open-clip-torch ships.

Both SDXL text encoders (CLIP ViT-L and OpenCLIP ViT-bigG) use this vocabulary of 49,408 tokens;
each reads 77 tokens including the start and end tokens, and the rest of a caption is cut. The
vocabulary file is found without importing open_clip (which would import torch), and turned into
a transformers CLIPTokenizer: the same token ids as open_clip's own tokenizer (tested).
"""

from __future__ import annotations

import gzip
import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

VOCAB_FILE = "bpe_simple_vocab_16e6.txt.gz"
MAX_LENGTH = 77  # tokens each text encoder reads, start and end tokens included
MERGES = 49152 - 256 - 2  # open_clip's count: the file holds more merge lines than CLIP uses


def bpe_vocabulary_path() -> Path:
    spec = importlib.util.find_spec("open_clip")
    path = Path(spec.submodule_search_locations[0]) / VOCAB_FILE if spec else None
    if path is None or not path.is_file():
        raise FileNotFoundError(
            f"the CLIP vocabulary {VOCAB_FILE} was not found: install open-clip-torch "
            "(envs/requirements.txt), which ships it"
        )
    return path


@lru_cache(maxsize=None)
def clip_tokenizer(pad_token: str = "<|endoftext|>"):
    """A transformers CLIPTokenizer with CLIP's vocabulary and merges, built from the local file."""
    from transformers import CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    lines = gzip.open(bpe_vocabulary_path()).read().decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1 : MERGES + 1]]
    byte_symbols = list(bytes_to_unicode().values())
    tokens = byte_symbols + [s + "</w>" for s in byte_symbols] + ["".join(m) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return CLIPTokenizer(
        vocab={t: i for i, t in enumerate(tokens)}, merges=merges, pad_token=pad_token, model_max_length=MAX_LENGTH
    )


@dataclass
class CaptionTokens:
    tokenizer: object  # transformers CLIPTokenizer

    @classmethod
    def load(cls) -> "CaptionTokens":
        return cls(clip_tokenizer())

    def count(self, text: str) -> int:
        """Tokens the text encoders see for `text`, start and end tokens included."""
        return len(self.tokenizer(text, verbose=False).input_ids)

    def cut(self, text: str, max_tokens: int) -> str:
        """The part of `text` beyond `max_tokens` (start and end tokens included), as text."""
        ids = self.tokenizer(text, verbose=False).input_ids
        return self.tokenizer.decode(ids[max_tokens - 1 : -1], skip_special_tokens=True).strip()
