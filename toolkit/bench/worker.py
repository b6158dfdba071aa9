"""One measurement in a fresh process: ``python -m toolkit.bench.worker SPEC.json RESULT.json``.

A fresh interpreter per (artifact, thread count) keeps allocator state, thread pools and caches of one runtime
from leaking into the next. The spec names what to run (``kind``: executorch, litert, onnxruntime, torch,
or ``matmul`` for the machine ceiling) and how. The worker imports its runtime, then takes the *process
baseline* (RSS after imports, before the artifact is touched), then:

    load          -> load_ms, load_peak_rss_bytes (peak RSS during load minus baseline)
    1st inference -> first_inference_ms
    warm-up runs  -> not timed
    timed runs    -> latencies_ms, inference_peak_rss_bytes (peak RSS during inference minus baseline)

Peaks come from the kernel's VmHWM, reset between phases through /proc/self/clear_refs. Threads are set in
the runtime itself (XNNPACK thread pool, LiteRT interpreter, ORT intra-op, torch intra-op) and through the
OpenMP/MKL environment the parent passes in.
"""
from __future__ import annotations

import gc
import json
import os
import sys
import time
from pathlib import Path

import numpy as np


# ---- process memory ------------------------------------------------------------------------------------------

def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def rss_bytes() -> int:
    return _status_kib("VmRSS") * 1024


def peak_rss_bytes() -> int:
    return _status_kib("VmHWM") * 1024


def reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


# ---- runners -------------------------------------------------------------------------------------------------

# Each worker imports only what its kind needs, and only inside these two functions: the process baseline
# (RSS before the artifact is touched) is taken between them, so what a runtime's code costs is not counted
# as the artifact's, and one runtime's libraries never sit in another's measurement.

def import_runtime(kind: str):
    """Import the runtime before the baseline is taken: its code is not the artifact's cost."""
    import torch  # noqa: F401  (every backend module of `export` imports torch too)

    import export
    if kind in export.BACKENDS:
        export.get_backend(kind).import_runtime()
    elif kind == "onnxruntime":
        import onnxruntime  # noqa: F401


def load_runner(spec: dict):
    """-> callable(np.ndarray) -> np.ndarray, plus facts about the runtime's threads."""
    import torch

    import export
    kind, threads = spec["kind"], int(spec["threads"])
    torch.set_num_threads(threads)
    if kind in export.BACKENDS:
        runner = export.load(export.Artifact.from_json(spec["entry"], spec["base_dir"]), threads=threads)
        return runner, runner.thread_info()
    if kind == "onnxruntime":
        import onnxruntime as ort
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = ort.InferenceSession(spec["path"], options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return (lambda x: session.run(None, {name: x})[0]), {"intra_op_threads": threads}
    if kind == "torch" and spec.get("adapter"):  # another encoder, rebuilt through its adapter
        from toolkit.adapters import from_source
        prefix = from_source(spec["adapter"]).prefix(int(spec["split_layer"])).eval().float()

        def run(x):
            with torch.inference_mode():
                return prefix(torch.from_numpy(x)).numpy()
        return run, {"torch_threads": torch.get_num_threads()}
    if kind == "torch":
        from toolkit.model.asr import split
        from toolkit.model.checkpoint import load_checkpoint
        model, _ = load_checkpoint(spec["checkpoint"])
        prefix = split(model, int(spec["split_layer"]))[0].eval().float()
        del model

        def run(x):
            with torch.inference_mode():
                return prefix(torch.from_numpy(x)).numpy()
        return run, {"torch_threads": torch.get_num_threads()}
    if kind == "matmul":
        from toolkit.bench.ceiling import matmul_kernel
        return matmul_kernel(spec), {"torch_threads": torch.get_num_threads()}
    raise ValueError(f"unknown worker kind {kind}")


def measure(spec: dict) -> dict:
    kind = spec["kind"]
    import_runtime(kind)
    x = np.load(spec["input"]) if spec.get("input") else None
    gc.collect()
    peak_resettable = reset_peak()
    baseline = rss_bytes()

    t0 = time.perf_counter()
    run, thread_info = load_runner(spec)
    load_ms = (time.perf_counter() - t0) * 1e3
    load_peak = peak_rss_bytes() - baseline
    after_load = rss_bytes()

    reset_peak()
    t0 = time.perf_counter()
    y = run(x)
    first_ms = (time.perf_counter() - t0) * 1e3
    for _ in range(int(spec["warmup"])):
        run(x)
    latencies = []
    min_seconds = float(spec.get("min_seconds", 0.0))
    start = time.perf_counter()
    while len(latencies) < int(spec["runs"]) or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter_ns()
        run(x)
        latencies.append((time.perf_counter_ns() - t0) / 1e6)
    inference_peak = peak_rss_bytes() - baseline
    out = np.asarray(y)
    return {"kind": kind, "threads": int(spec["threads"]), "load_ms": load_ms, "first_inference_ms": first_ms,
            "latencies_ms": latencies, "baseline_rss_bytes": baseline, "load_peak_rss_bytes": load_peak,
            "rss_after_load_bytes": after_load - baseline, "inference_peak_rss_bytes": inference_peak,
            "peak_rss_method": "VmHWM reset per phase" if peak_resettable else "VmHWM since start (not resettable)",
            "output_shape": list(out.shape), "output_finite": bool(np.all(np.isfinite(out))),
            "runtime_threads": thread_info, "pid": os.getpid()}


def main(argv: list[str]) -> int:
    spec_path, result_path = Path(argv[0]), Path(argv[1])
    spec = json.loads(spec_path.read_text())
    result = measure(spec)
    tmp = result_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result))
    os.replace(tmp, result_path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
