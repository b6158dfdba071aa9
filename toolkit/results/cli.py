"""`veil render RESULT.json [--readme README.md]`: re-render any recorded result from its JSON.

Every job writes its result as JSON first and renders Markdown (and plots, HTML) from it; this command
re-makes those files from the JSON alone, dispatching on the document's ``format``. With ``--readme``, a GRL
sweep result also refreshes its table in that README (between its markers). Adding a result format: one
line in RENDERERS.
"""
from __future__ import annotations

from pathlib import Path

from toolkit.bench import cut_points
from toolkit.bench import report as bench_report
from toolkit.bench.bench import BENCH_FORMAT
from toolkit.errors import VeilError, read_json
from toolkit.parity import report as parity_report
from toolkit.parity.check import PARITY_FORMAT
from toolkit.privacy import attempts, grl_sweep, leakage

RENDERERS = {  # format -> rerender(document, json_path) -> written paths
    PARITY_FORMAT: parity_report.rerender,
    BENCH_FORMAT: bench_report.rerender,
    cut_points.CUT_POINTS_FORMAT: cut_points.rerender,
    leakage.REPORT_FORMAT: leakage.rerender,
    "veil-privacy/1": leakage.rerender,  # older privacy reports render the same way
    grl_sweep.SWEEP_FORMAT: grl_sweep.rerender,
}


def add_parser(sub) -> None:
    p = sub.add_parser("render", help="re-render a recorded result (bench, sweep, parity, privacy, attempts) from "
                                      "its JSON")
    p.add_argument("result", metavar="RESULT.json")
    p.add_argument("--readme", default=None, metavar="README",
                   help="with a GRL sweep result: also refresh its table in this README")
    p.set_defaults(func=run)


def run(args) -> int:
    for path in render(Path(args.result), Path(args.readme) if args.readme else None):
        print(f"wrote {path}")
    return 0


def render(path: Path, readme: Path | None = None) -> list[Path]:
    doc = read_json(path, f"{path}: result not found")
    if attempts.is_attempts_log(doc):
        return attempts.rerender(doc, path)
    fmt = doc.get("format") if isinstance(doc, dict) else None
    if fmt not in RENDERERS:
        raise VeilError(f"{path}: no renderer for format {fmt!r} (formats: {', '.join(RENDERERS)}, and the "
                        f"privacy attempts log)")
    if readme and fmt != grl_sweep.SWEEP_FORMAT:
        raise VeilError(f"--readme goes with a GRL sweep result ({grl_sweep.SWEEP_FORMAT}), {path} is {fmt}")
    if fmt == grl_sweep.SWEEP_FORMAT:
        return grl_sweep.rerender(doc, path, readme)
    return RENDERERS[fmt](doc, path)
