"""Real English sentences for the synthetic corpus, from Debian's `fortunes` / `fortunes-min` packages.

The fortune files are plain text cookies separated by ``%`` lines. Sentences are split on terminal
punctuation, attributions (``-- Author``) dropped, anything with digits or markup skipped (a TTS voice would
read it in ways the transcript cannot say), and the rest normalized to the tokenizer's alphabet.
"""
from __future__ import annotations

import re
from pathlib import Path

from toolkit.errors import VeilError
from toolkit.text.tokenizer import normalize_text

FORTUNE_DIR = Path("/usr/share/games/fortunes")
# Files of prose; ascii art, code and non-English collections are left out. Order is fixed for determinism.
FORTUNE_FILES = (
    "computers", "cookie", "definitions", "drugs", "education", "ethnic", "food", "fortunes", "goedel",
    "humorists", "kids", "law", "literature", "love", "magic", "medicine", "men-women", "miscellaneous",
    "news", "paradoxum", "people", "pets", "platitudes", "politics", "pratchett", "riddles", "science",
    "songs-poems", "sports", "startrek", "wisdom", "work", "zippy",
)
MIN_WORDS, MAX_WORDS = 4, 16


def _sentences_in(text: str):
    for cookie in text.split("\n%\n"):
        lines = [ln.strip() for ln in cookie.splitlines() if not ln.strip().startswith("--")]
        body = " ".join(ln for ln in lines if ln)
        for raw in re.split(r"(?<=[.!?])\s+", body):
            raw = raw.strip()
            if not raw or raw[-1] not in ".!?" or re.search(r"[0-9@#$%^&*_=+<>{}\[\]|\\/~`]", raw):
                continue
            words = normalize_text(raw).split()
            if MIN_WORDS <= len(words) <= MAX_WORDS:
                yield " ".join(words)


def load_sentences(fortune_dir: Path = FORTUNE_DIR) -> list[str]:
    """All distinct usable sentences, sorted (so the list is the same on every machine)."""
    found = [fortune_dir / name for name in FORTUNE_FILES if (fortune_dir / name).is_file()]
    if not found:
        raise VeilError(
            f"{fortune_dir}: no fortune text files; install the Debian packages 'fortunes' and 'fortunes-min'"
        )
    sentences: set[str] = set()
    for path in found:
        sentences.update(_sentences_in(path.read_text(encoding="utf-8", errors="replace")))
    return sorted(sentences)
