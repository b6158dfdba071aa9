"""Parent side of a measurement: start a fresh worker process (``toolkit.bench.worker``), collect its JSON,
and reduce the raw latencies to the numbers the report shows."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from toolkit.paths import REPO_ROOT

THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def run_worker(spec: dict, work_dir: Path, name: str, timeout_s: float = 900.0) -> dict:
    """Run one spec in a fresh interpreter; returns the worker's result, or {status: failed, error: ...}."""
    work_dir.mkdir(parents=True, exist_ok=True)
    spec_path, result_path = work_dir / f"{name}.spec.json", work_dir / f"{name}.result.json"
    spec_path.write_text(json.dumps(spec))
    result_path.unlink(missing_ok=True)
    env = dict(os.environ)
    for var in THREAD_ENV:
        env[var] = str(spec["threads"])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH", "")]))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        proc = subprocess.run([sys.executable, "-m", "toolkit.bench.worker", str(spec_path), str(result_path)],
                              cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {"status": "failed", "error": f"worker timed out after {timeout_s:.0f} s"}
    if proc.returncode != 0 or not result_path.is_file():
        lines = [ln for ln in (proc.stderr or "").strip().splitlines() if ln.strip()]
        return {"status": "failed", "error": (lines[-1] if lines else f"worker exit code {proc.returncode}")[:400]}
    result = json.loads(result_path.read_text())
    result["status"] = "ok"
    return result


def latency_summary(latencies_ms: list[float]) -> dict:
    lat = np.asarray(latencies_ms, dtype=np.float64)
    return {"runs": int(lat.size), "p50_ms": float(np.percentile(lat, 50)), "p90_ms": float(np.percentile(lat, 90)),
            "p99_ms": float(np.percentile(lat, 99)), "mean_ms": float(lat.mean()), "min_ms": float(lat.min()),
            "max_ms": float(lat.max()), "std_ms": float(lat.std())}


def summarize(raw: dict, chunk_seconds: float | None = None, macs: int | None = None) -> dict:
    """Worker result -> the JSON schema's measurement (raw latencies dropped, statistics kept)."""
    if raw.get("status") != "ok":
        return {"status": "failed", "error": raw.get("error", "unknown")}
    lat = latency_summary(raw["latencies_ms"])
    out = {"status": "ok", "threads": raw["threads"], "load_ms": raw["load_ms"],
           "first_inference_ms": raw["first_inference_ms"], **lat,
           "peak_rss_load_bytes": raw["load_peak_rss_bytes"], "peak_rss_inference_bytes": raw["inference_peak_rss_bytes"],
           "rss_after_load_bytes": raw["rss_after_load_bytes"], "baseline_rss_bytes": raw["baseline_rss_bytes"],
           "peak_rss_method": raw["peak_rss_method"], "runtime_threads": raw["runtime_threads"],
           "output_finite": raw["output_finite"]}
    if chunk_seconds:
        out["rtf"] = lat["p50_ms"] / 1e3 / chunk_seconds
    if macs:
        out["gmacs"] = macs / (lat["p50_ms"] / 1e3) / 1e9
    return out
