"""Re-render any recorded result from its JSON (``veil render RESULT.json [--readme PAGE]``).

Every job writes its result as JSON first and renders Markdown (and plots, HTML) from it; :func:`render` re-makes
those files from the JSON alone, dispatching on the document's ``format``. With ``readme`` it also rewrites the
result's headline table in that page (``toolkit/headlines.py``; the results page is docs/results.md). Adding a
result format: one entry in RESULTS. The command itself is registered by ``experiments/cli.py``, which adds the
research record's formats (sweeps, frontier, attempts, the reports written before the attacker suite).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from toolkit.bench import report as bench_report
from toolkit.bench.bench import BENCH_FORMAT
from toolkit.decoding import evaluate
from toolkit.errors import VeilError, read_json
from toolkit.headlines import refresh
from toolkit.parity import report as parity_report
from toolkit.paths import display_path
from toolkit.parity.check import PARITY_FORMAT
from toolkit.privacy import report as privacy_report
from toolkit.serve import load_report


@dataclass(frozen=True)
class ResultKind:
    rerender: Callable | None        # (document, json path) -> written paths
    headline: Callable | None = None  # (document, source) -> the results page's table
    table: str = ""                   # its markers' name
    section: str = ""                 # the page section made when the markers are absent


RESULTS = {
    PARITY_FORMAT: ResultKind(parity_report.rerender, parity_report.headline, "parity", "Export and parity"),
    BENCH_FORMAT: ResultKind(bench_report.rerender, bench_report.headline, "bench", "Benchmarks"),
    privacy_report.REPORT_FORMAT: ResultKind(privacy_report.rerender, privacy_report.headline, "privacy", "Privacy"),
    evaluate.EVAL_FORMAT: ResultKind(None, evaluate.headline, "accuracy", "Accuracy"),
    load_report.LOAD_FORMAT: ResultKind(load_report.rerender, load_report.headline, "serve-load", "Service load"),
}


def read_result(path: Path):
    return read_json(path, f"{path}: result not found")


def render(path: Path, readme: Path | None = None, kinds: dict[str, ResultKind] = RESULTS, doc=None,
           also: str = "") -> list[Path]:
    """Re-make the files of the result at ``path`` (``doc``, its content, when already read) by its format."""
    doc = read_result(path) if doc is None else doc
    if not isinstance(doc, dict):
        raise VeilError(f"{path}: not a Veil result (a JSON object with a format)")
    fmt = evaluate.EVAL_FORMAT if evaluate.is_eval_result(doc) else doc.get("format")
    kind = kinds.get(fmt)
    if kind is None:
        raise VeilError(f"{path}: no renderer for format {fmt!r} (formats: {', '.join(kinds)}"
                        + (f", {also}" if also else "") + ")")
    if readme and kind.headline is None:
        raise VeilError(f"--readme: a {fmt} result has no results-page table")
    written = kind.rerender(doc, path) if kind.rerender else []
    if readme:
        written.append(refresh(readme, kind.table, kind.headline(doc, display_path(path)), kind.section))
    if not written:
        raise VeilError(f"{path}: a {fmt} result has nothing to render but its table (pass --readme)")
    return written
