"""User-facing errors: one line, naming the file and the problem, no traceback."""
from __future__ import annotations

import json
from pathlib import Path


class VeilError(Exception):
    """A mistake in the user's input (file, config, flag). The CLI prints it as one line and exits 2."""


def read_json(path: str | Path, missing: str, what: str = "not valid JSON"):
    """Parse a JSON file given by the user. ``missing``: the whole message when the file does not exist;
    a parse error reads ``<path>: <what> (<reason> at line N)``."""
    path = Path(path)
    if not path.is_file():
        raise VeilError(missing)
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise VeilError(f"{path}: {what} ({exc.msg} at line {exc.lineno})") from None
