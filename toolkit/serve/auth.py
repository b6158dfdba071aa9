"""Bearer tokens and per-token limits.

Tokens are stored only as ``sha256:<64 hex digits>`` lines (a file, or the ``VEIL_SERVE_TOKENS`` environment
variable), never in clear. A presented token is hashed and compared against every stored hash with
``hmac.compare_digest`` (constant time, no early exit), so neither the comparison nor the scan order leaks how
much of a token matched. A token is known in logs and metrics only by its id: the first 8 hex digits of its
hash.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from pathlib import Path

from toolkit.errors import VeilError

HASH_PREFIX = "sha256:"
TOKENS_ENV = "VEIL_SERVE_TOKENS"


def hash_token(token: str) -> str:
    return HASH_PREFIX + hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """256 random bits, URL-safe (fits an Authorization header and a HELLO frame)."""
    return secrets.token_urlsafe(32)


def parse_hashes(text: str, source: str) -> list[str]:
    """``sha256:<hex>`` entries separated by whitespace, commas or newlines; ``#`` starts a comment."""
    hashes = []
    for line in text.splitlines():
        for entry in line.split("#", 1)[0].replace(",", " ").split():
            digest = entry.removeprefix(HASH_PREFIX)
            if not entry.startswith(HASH_PREFIX) or len(digest) != 64 or any(c not in "0123456789abcdef"
                                                                              for c in digest):
                raise VeilError(f"{source}: '{entry[:20]}' is not a token hash (expected sha256:<64 hex digits>; "
                                f"make one with `veil serve --new-token FILE`)")
            hashes.append(digest)
    return hashes


class TokenStore:
    def __init__(self, hashes: list[str]):
        self._digests = [bytes.fromhex(h) for h in hashes]

    @classmethod
    def load(cls, token_file: str | Path | None, env_value: str | None) -> "TokenStore":
        hashes = []
        if token_file:
            path = Path(token_file)
            if not path.is_file():
                raise VeilError(f"{path}: token file not found (make one with `veil serve --new-token {path}`)")
            hashes += parse_hashes(path.read_text(), str(path))
        if env_value:
            hashes += parse_hashes(env_value, f"${TOKENS_ENV}")
        return cls(hashes)

    @classmethod
    def of_tokens(cls, tokens: list[str]) -> "TokenStore":
        return cls([hash_token(t).removeprefix(HASH_PREFIX) for t in tokens])

    def __len__(self) -> int:
        return len(self._digests)

    def hex_digests(self) -> list[str]:
        return [d.hex() for d in self._digests]

    def identify(self, token: str) -> str | None:
        """The token's id if it is known, else None; constant time in the token and over all stored hashes."""
        presented = hashlib.sha256(token.encode()).digest()
        match = None
        for digest in self._digests:
            if hmac.compare_digest(presented, digest) and match is None:
                match = digest.hex()[:8]
        return match


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


class RateLimiter:
    """A token bucket per key: ``rate`` messages per second, bursts up to ``burst``."""

    def __init__(self, rate: float, burst: float, clock=time.monotonic):
        self.rate, self.burst, self.clock = rate, burst, clock
        self._buckets: dict[str, tuple[float, float]] = {}

    def allow(self, key: str) -> bool:
        if self.rate <= 0:
            return True
        now = self.clock()
        level, last = self._buckets.get(key, (self.burst, now))
        level = min(self.burst, level + (now - last) * self.rate)
        if level < 1.0:
            self._buckets[key] = (level, now)
            return False
        self._buckets[key] = (level - 1.0, now)
        return True

    def forget_idle(self) -> None:
        """Drop buckets that are full again (bounded memory under many tokens)."""
        now = self.clock()
        self._buckets = {k: (lvl, t) for k, (lvl, t) in self._buckets.items()
                         if lvl + (now - t) * self.rate < self.burst}
