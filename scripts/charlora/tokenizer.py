"""SDXL's CLIP tokenizer, built offline from the BPE vocabulary that open-clip-torch ships.

Both SDXL text encoders (CLIP ViT-L and OpenCLIP ViT-bigG) use this vocabulary; each reads 77
tokens including the start and end tokens, and the rest of a caption is cut.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class CaptionTokens:
    tokenizer: object  # open_clip.tokenizer.SimpleTokenizer

    @classmethod
    def load(cls) -> "CaptionTokens":
        from open_clip.tokenizer import SimpleTokenizer  # reads open_clip/bpe_simple_vocab_16e6.txt.gz

        return cls(SimpleTokenizer())

    def count(self, text: str) -> int:
        """Tokens the text encoders see for `text`, start and end tokens included."""
        return len(self.tokenizer.encode(text)) + 2

    def cut(self, text: str, max_tokens: int) -> str:
        """The part of `text` beyond `max_tokens` (start and end tokens included), as text."""
        ids = self.tokenizer.encode(text)
        return self.tokenizer.decode(ids[max_tokens - 2:]).strip()
