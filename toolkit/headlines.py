"""The results page's headline tables (docs/results.md, linked from the README), each kept current by the command that measures it.

A table lives between two markers, ``<!-- veil:NAME:start -->`` and ``<!-- veil:NAME:end -->``. The measuring
command with ``--readme docs/results.md`` (``veil evaluate``, ``export-prefix`` / ``veil parity``, ``veil bench``,
``veil privacy``), or ``veil render RESULT.json --readme docs/results.md`` afterwards, renders the result's short
table and rewrites what is between them; everything else in the file is kept. The GRL sweep's table works the
same way with its own markers (``experiments/grl_sweep.py``).
"""
from __future__ import annotations

from pathlib import Path

from toolkit.errors import VeilError
from toolkit.files import write_text


def made_by(command: str, source: str | None = None) -> str:
    """A table caption's last sentence: the command that measured it, its result file, how to refresh it."""
    return (f"Made by `{command}`" + (f" ({source})" if source else "")
            + "; rerun it with `--readme docs/results.md` to refresh this table.")


def markers(name: str) -> tuple[str, str]:
    return f"<!-- veil:{name}:start -->", f"<!-- veil:{name}:end -->"


def replace_between(readme: Path, start: str, end: str, text: str, section_title: str) -> None:
    """Put ``text`` between the ``start`` and ``end`` markers of ``readme``; when both are absent, append a
    section ``section_title`` holding the markers. Written through a temporary file and a rename; markers that
    appear twice, in the wrong order or alone are a one-line VeilError."""
    readme = Path(readme)
    if not readme.is_file():
        raise VeilError(f"{readme}: README not found")
    content = readme.read_text()
    block = f"{start}\n{text.rstrip()}\n{end}"
    if content.count(start) > 1 or content.count(end) > 1:
        raise VeilError(f"{readme}: the markers {start} / {end} appear more than once")
    if start in content and end in content:
        a, b = content.index(start), content.index(end) + len(end)
        if b < a:
            raise VeilError(f"{readme}: {end} comes before {start}")
        content = content[:a] + block + content[b:]
    elif start in content or end in content:
        raise VeilError(f"{readme}: only one of the markers {start} / {end} is present")
    else:
        content = content.rstrip("\n") + f"\n\n## {section_title}\n\n" + block + "\n"
    write_text(readme, content)


def refresh(readme: Path, name: str, table: str, section_title: str) -> Path:
    """Rewrite the headline table ``name`` of ``readme`` with ``table``; returns the README's path."""
    start, end = markers(name)
    replace_between(readme, start, end, table, section_title)
    return Path(readme)
