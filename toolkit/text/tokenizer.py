"""Character tokenizer for CTC. Index 0 is the CTC blank."""
from __future__ import annotations

import re
from dataclasses import dataclass

CHAR_ALPHABET = " 'abcdefghijklmnopqrstuvwxyz"


def normalize_text(text: str) -> str:
    """Lower-case, map everything outside the alphabet to spaces, collapse whitespace."""
    text = text.lower().replace("’", "'")
    text = re.sub(r"[^a-z' ]", " ", text)
    text = re.sub(r"\s*'\s*(?![a-z])|(?<![a-z])'", " ", text)  # keep only word-internal apostrophes
    return re.sub(r"\s+", " ", text).strip()


@dataclass(frozen=True)
class CharTokenizer:
    alphabet: str = CHAR_ALPHABET

    kind = "char"

    @property
    def vocab_size(self) -> int:
        return len(self.alphabet) + 1  # + blank

    def encode(self, text: str) -> list[int]:
        index = {c: i + 1 for i, c in enumerate(self.alphabet)}
        return [index[c] for c in normalize_text(text) if c in index]

    def decode(self, ids) -> str:
        return "".join(self.alphabet[i - 1] for i in ids if 0 < i <= len(self.alphabet))

    def to_config(self) -> dict:
        return {"kind": self.kind, "alphabet": self.alphabet, "blank": 0}

    @classmethod
    def from_config(cls, cfg: dict) -> "CharTokenizer":
        if cfg.get("kind") != "char":
            raise ValueError(f"unsupported tokenizer kind {cfg.get('kind')!r}")
        return cls(alphabet=cfg["alphabet"])
