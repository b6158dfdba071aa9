"""User-facing errors: one line, naming the file and the problem, no traceback."""
from __future__ import annotations

import json
import sys
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


def run_guarded(prog: str, func, args) -> int:
    """Run a command; a VeilError becomes one line on stderr and exit 2 (no traceback), Ctrl-C exit 130."""
    try:
        return func(args)
    except VeilError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
