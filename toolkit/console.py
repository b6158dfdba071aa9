"""What a person sees: progress on stderr, converter chatter captured into a log, and numbers in reports.

Converters print from Python and from C++ (MLIR, XNNPACK, cpuinfo), so the capture works on file
descriptors 1 and 2, not on ``sys.stdout``.
"""
from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from typing import IO


@contextmanager
def captured_output(log: IO, enabled: bool = True):
    """Send everything written to fds 1 and 2 inside the block to ``log`` (no-op when not ``enabled``)."""
    if not enabled:
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    log.flush()
    saved = os.dup(1), os.dup(2)
    try:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])


def say(message: str = "", end: str = "\n") -> None:
    """Progress for a person: stderr, flushed, so it interleaves correctly with captured blocks."""
    print(message, end=end, file=sys.stderr, flush=True)


def human_bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1000
    return f"{n} B"


def number(x, fmt: str = "{:.2f}") -> str:
    """A number for a report table: ``—`` when there is none, a non-finite value as JSON holds it
    (``"inf"``, see ``toolkit.files``), else ``fmt``."""
    if x is None:
        return "—"
    if isinstance(x, str):
        return x
    return fmt.format(x)
