"""`veil render RESULT.json [--readme README.md]`: re-render any recorded result from its JSON.

Every job writes its result as JSON first and renders Markdown (and plots, HTML) from it; this command re-makes
those files from the JSON alone, dispatching on the document's ``format``. With ``--readme`` it also rewrites
the result's headline table in that README (``toolkit/headlines.py``; the GRL sweep: its table between the
privacy-sweep markers). Adding a result format: one entry in RESULTS.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from toolkit.bench import cut_points
from toolkit.bench import report as bench_report
from toolkit.bench.bench import BENCH_FORMAT
from toolkit.decoding import evaluate
from toolkit.errors import VeilError, read_json
from toolkit.headlines import refresh
from toolkit.parity import report as parity_report
from toolkit.paths import display_path
from toolkit.parity.check import PARITY_FORMAT
from toolkit.privacy import attempts, frontier, grl_sweep
from toolkit.privacy import report as privacy_report
from toolkit.serve import load_report


@dataclass(frozen=True)
class ResultKind:
    rerender: Callable | None        # (document, json path) -> written paths
    headline: Callable | None = None  # (document, source) -> the README table
    table: str = ""                   # its markers' name
    section: str = ""                 # the README section made when the markers are absent


RESULTS = {
    PARITY_FORMAT: ResultKind(parity_report.rerender, parity_report.headline, "parity", "Export and parity"),
    BENCH_FORMAT: ResultKind(bench_report.rerender, bench_report.headline, "bench", "Benchmarks"),
    cut_points.CUT_POINTS_FORMAT: ResultKind(cut_points.rerender),
    **{fmt: ResultKind(privacy_report.rerender, privacy_report.headline, "privacy", "Privacy")
       for fmt in privacy_report.FORMATS},
    evaluate.EVAL_FORMAT: ResultKind(None, evaluate.headline, "accuracy", "Accuracy"),
    frontier.FRONTIER_FORMAT: ResultKind(frontier.rerender, frontier.headline_table, frontier.TABLE, frontier.SECTION),
    load_report.LOAD_FORMAT: ResultKind(load_report.rerender, load_report.headline, "serve-load", "Service load"),
}


def add_parser(sub) -> None:
    p = sub.add_parser("render", help="re-render a recorded result (bench, sweep, parity, privacy, evaluate, "
                                      "attempts, service load) from its JSON")
    p.add_argument("result", metavar="RESULT.json")
    p.add_argument("--readme", default=None, metavar="README", help="also rewrite the result's table in this README")
    p.set_defaults(func=run)


def run(args) -> int:
    for path in render(Path(args.result), Path(args.readme) if args.readme else None):
        print(f"wrote {path}")
    return 0


def render(path: Path, readme: Path | None = None) -> list[Path]:
    doc = read_json(path, f"{path}: result not found")
    if attempts.is_attempts_log(doc):
        if readme:
            raise VeilError(f"--readme: the attempts log has no README table ({path})")
        return attempts.rerender(doc, path)
    if not isinstance(doc, dict):
        raise VeilError(f"{path}: not a Veil result (a JSON object with a format)")
    if doc.get("format") == grl_sweep.SWEEP_FORMAT:
        return grl_sweep.rerender(doc, path, readme)
    fmt = (evaluate.EVAL_FORMAT if evaluate.is_eval_result(doc) else privacy_report.report_format(doc) or doc.get("format"))
    kind = RESULTS.get(fmt)
    if kind is None:
        raise VeilError(f"{path}: no renderer for format {fmt!r} (formats: {', '.join(RESULTS)}, "
                        f"{grl_sweep.SWEEP_FORMAT}, and the privacy attempts log)")
    if readme and kind.headline is None:
        raise VeilError(f"--readme: a {fmt} result has no README table")
    written = kind.rerender(doc, path) if kind.rerender else []
    if readme:
        written.append(refresh(readme, kind.table, kind.headline(doc, display_path(path)), kind.section))
    if not written:
        raise VeilError(f"{path}: a {fmt} result has nothing to render but its README table (pass --readme)")
    return written
