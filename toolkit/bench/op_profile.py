"""Where the time goes, per operator: ExecuTorch's ETDump read back by the devtools Inspector.

A ``.pte`` is loaded with ETDump enabled (``portable_lib._load_for_executorch(..., enable_etdump=True)``),
run ``runs`` times on the bench chunk at ``threads`` threads after warm-up, and the dump is read by
``executorch.devtools.Inspector``. The XNNPACK delegate in ExecuTorch's wheel reports every XNNPACK
operator it runs (``Fully Connected (NC, QS8, QC8W) GEMM #3``); ops outside the delegate are the portable
kernels' own events. The table groups events by operator kind (the name without ``#n``): time is the sum of
the per-event medians over the runs, in ms, and the share is of all operator time. ``DELEGATE_CALL`` and
``Method::execute`` are the wall time around them (the gap is delegate entry, tensor copies and, on a
loaded machine, preemption).

LiteRT: the Python ``Interpreter`` of ``ai_edge_litert`` exposes no per-op profiler (TFLite's op profiler
lives in the ``benchmark_model`` binary); its profile entry says so, with the artifact's op mix from the
manifest, and ``veil bench --device android --benchmark-model`` collects the real one on a phone.
"""
from __future__ import annotations

import re
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

WRAPPER_EVENTS = ("DELEGATE_CALL", "Method::execute")
TOP = 15


def _kind(name: str) -> str:
    return re.sub(r"\s*#\d+$", "", name)


def profile_executorch(pte: Path, chunk: np.ndarray, threads: int = 1, runs: int = 20, warmup: int = 3) -> dict:
    """Per-operator table of one ``.pte`` (module docstring). Returns JSON-ready data."""
    # heavy runtimes, imported only when a profile is asked for
    from executorch.devtools import Inspector
    from executorch.extension.pybindings.portable_lib import _load_for_executorch, _unsafe_reset_threadpool

    _unsafe_reset_threadpool(int(threads))
    module = _load_for_executorch(str(pte), enable_etdump=True)
    x = torch.from_numpy(np.ascontiguousarray(chunk, dtype=np.float32))
    for _ in range(warmup + runs):
        module.forward([x])
    with tempfile.TemporaryDirectory(prefix="veil-etdump-") as tmp:
        dump = Path(tmp) / "run.etdp"
        module.write_etdump_result_to_file(str(dump))
        inspector = Inspector(etdump_path=str(dump))
    by_kind: dict = defaultdict(lambda: {"ms": 0.0, "events": 0, "delegated": False})
    wrappers: dict = {}
    for block in inspector.event_blocks:
        for event in block.events:
            if not event.perf_data:
                continue
            if event.name in WRAPPER_EVENTS:
                # the first `warmup` runs are dropped from the medians of the execute-time wrappers
                wrappers[event.name] = float(np.median(event.perf_data.raw[warmup:] or event.perf_data.raw))
                continue
            if block.name != "Execute":
                continue
            row = by_kind[_kind(event.name)]
            row["ms"] += float(np.median(event.perf_data.raw[warmup:] or event.perf_data.raw))
            row["events"] += 1
            row["delegated"] = row["delegated"] or bool(event.is_delegated_op)
    total = sum(r["ms"] for r in by_kind.values())
    ops = [{"operator": k, "ms": r["ms"], "share": r["ms"] / total if total else 0.0, "events": r["events"],
            "delegated": r["delegated"]} for k, r in sorted(by_kind.items(), key=lambda kv: -kv[1]["ms"])]
    return {"status": "ok", "profiler": "ExecuTorch ETDump + executorch.devtools.Inspector", "threads": threads,
            "runs": runs, "warmup": warmup, "statistic": "sum over events of the per-event median (ms)",
            "operator_ms_total": total, "wrappers_ms": wrappers,
            "not_delegated_ms": sum(o["ms"] for o in ops if not o["delegated"]), "operators": ops}


def profile_litert(ops: dict | None) -> dict:
    """No per-op timer is reachable from LiteRT's Python interpreter: say so, never a fake table."""
    return {"status": "no-op-profiler", "profiler": "none from Python (ai_edge_litert.Interpreter)",
            "detail": "TFLite's per-op profiler is in the benchmark_model binary (--enable_op_profiling=true); "
                      "run `veil bench EXPORT_DIR --device android --benchmark-model PATH` on a phone",
            "ops": ops}


def markdown(name: str, profile: dict, top: int = TOP) -> list[str]:
    """A top-operators table of one artifact's profile."""
    if profile.get("status") != "ok":
        return [f"**{name}**: {profile.get('status')}: {profile.get('detail', '')}", ""]
    wrappers = ", ".join(f"{k} {v:.2f} ms" for k, v in profile["wrappers_ms"].items())
    lines = [f"**{name}** ({profile['profiler']}, {profile['threads']} thread(s), {profile['runs']} runs): "
             f"operators {profile['operator_ms_total']:.2f} ms, of which not delegated "
             f"{profile['not_delegated_ms']:.2f} ms; {wrappers}.", "",
             "| operator | ms | share | events | delegated |", "|---|---|---|---|---|"]
    for o in profile["operators"][:top]:
        lines.append(f"| {o['operator']} | {o['ms']:.3f} | {o['share']:.1%} | {o['events']} | "
                     f"{'yes' if o['delegated'] else '**no**'} |")
    rest = profile["operators"][top:]
    if rest:
        lines.append(f"| ({len(rest)} more kinds) | {sum(o['ms'] for o in rest):.3f} | "
                     f"{sum(o['share'] for o in rest):.1%} | {sum(o['events'] for o in rest)} | |")
    return lines + [""]
