"""One syntax for a set of encoder layers, used by every option that takes layers (``veil privacy --layers``,
``veil sweep --layers``, ``veil bench --sweep-split``):

    all        every layer from the lowest allowed to the deepest
    4          one layer
    2,4        a list
    1..6       a range, both ends included
    0,2..4     lists and ranges mixed
"""
from __future__ import annotations

from toolkit.errors import VeilError


def parse_layer_range(text: str | None, lowest: int, highest: int, flag: str = "--layers") -> list[int]:
    """Sorted, distinct layer indices within ``lowest..highest``; ``None`` or ``all`` is the whole range.
    A mistake is a one-line VeilError naming ``flag``."""
    if text is None or text.strip() == "all":
        return list(range(lowest, highest + 1))
    layers: set[int] = set()
    try:
        for part in text.split(","):
            a, sep, b = part.partition("..")
            lo, hi = (int(a), int(b)) if sep else (int(a), int(a))
            if hi < lo:
                raise VeilError(f"{flag} {text}: range {part.strip()} runs backwards (expected A..B with A <= B)")
            layers |= set(range(lo, hi + 1))
    except ValueError:
        raise VeilError(f"{flag} must look like 'all', '4', '2,4' or '{lowest}..{highest}', got {text!r}") from None
    bad = sorted(k for k in layers if not lowest <= k <= highest)
    if bad:
        raise VeilError(f"{flag} {text}: {bad} outside {lowest}..{highest}")
    return sorted(layers)
