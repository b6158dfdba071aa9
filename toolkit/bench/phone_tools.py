"""The phone tools `veil bench --device android` runs over adb: one :class:`PhoneTool` per artifact kind, with
the binary pushed to the phone, the command it runs there, the parser of its output and how a parsed run becomes a
measurement. Adding a phone runner is one entry in PHONE_TOOLS (or :func:`register`) plus its parser's test on
recorded output: `veil bench --tool KIND=PATH`, the per-tool flag (``--<binary>``), the skipped-row hint and the
report schema's tool names all derive from the registry.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

from toolkit.bench.runner import latency_summary

DEVICE_DIR = "/data/local/tmp/veil"
MB = 1024 * 1024


@dataclass(frozen=True)
class PhoneTool:
    kind: str                                         # the artifact kind it runs (phones.artifact_kind)
    binary: str                                       # its file name, pushed to DEVICE_DIR
    command: Callable[[str, int, int, int], str]      # (artifact file, threads, warmup, runs) -> shell command
    parse: Callable[[str], dict]                      # its output -> {tool, ok, error, ...}
    measure: Callable[[dict, int], dict]              # (parsed, warmup) -> runs, p50/mean/min/max ms, load, memory
    help: str                                         # what it is, for `veil bench --help`
    needs_npu_libs: bool = False                      # also push --npu-libs DIR (vendor NPU runtime)
    accelerator: str = "cpu"

    @property
    def flag(self) -> str:
        return "--" + self.binary.replace("_", "-")


# ---- the parsers ------------------------------------------------------------------------------------------------

_ET_LOADED = re.compile(r"Model loaded in ([0-9.]+) ms")
_ET_ITER = re.compile(r"Iteration (\d+) of (\d+): ([0-9.]+) ms")
_ET_DONE = re.compile(r"Model executed successfully(?: (\d+) time\(s\) in ([0-9.]+) ms)?")
_ET_FAILED = re.compile(r"(Execution of method \S+ failed[^\n]*|Loading of method \S+ failed[^\n]*)")
_ET_PLANNED = re.compile(r"Setting up planned buffer \d+, size (\d+)")


def parse_executor_runner(text: str) -> dict:
    """ExecuTorch ``executor_runner`` log -> {ok, load_ms, latencies_ms, executions, total_ms, mean_ms,
    planned_buffer_bytes}. Older runners print only ``Model executed successfully.`` (no timing)."""
    out: dict = {"tool": "executor_runner", "ok": False, "load_ms": None, "latencies_ms": [], "executions": None,
                 "total_ms": None, "mean_ms": None, "planned_buffer_bytes": None, "error": None}
    if m := _ET_LOADED.search(text):
        out["load_ms"] = float(m.group(1))
    out["latencies_ms"] = [float(m.group(3)) for m in _ET_ITER.finditer(text)]
    planned = [int(m.group(1)) for m in _ET_PLANNED.finditer(text)]
    if planned:
        out["planned_buffer_bytes"] = sum(planned)
    if m := _ET_DONE.search(text):
        out["ok"] = True
        if m.group(1):
            out["executions"], out["total_ms"] = int(m.group(1)), float(m.group(2))
            out["mean_ms"] = out["total_ms"] / max(1, out["executions"])
    if out["latencies_ms"] and out["executions"] is None:
        out["executions"] = len(out["latencies_ms"])
    if m := _ET_FAILED.search(text):
        out["ok"], out["error"] = False, m.group(1).strip()
    return out


_TFL_STATS = re.compile(r"count=(\d+) first=([0-9.]+) curr=([0-9.]+) min=([0-9.]+) max=([0-9.]+) "
                        r"avg=([0-9.e+]+) std=([0-9.]+)")
_TFL_TIMINGS = re.compile(r"Inference timings in us: Init: ([0-9.]+), First inference: ([0-9.]+), "
                          r"Warmup \(avg\): ([0-9.e+]+), Inference \(avg\): ([0-9.e+]+)")
_TFL_TIMINGS_OLD = re.compile(r"Average inference timings in us: Warmup: ([0-9.e+]+), Init: ([0-9.]+), "
                              r"(?:no stats|Inference): ([0-9.e+]+)")
_TFL_MEMORY = re.compile(r"(?:Peak memory footprint|Memory footprint delta from the start of the tool) \(MB\): "
                         r"init=([0-9.e+-]+) overall=([0-9.e+-]+)")
_TFL_PEAK = re.compile(r"Overall peak memory footprint \(MB\) via periodic monitoring: ([0-9.e+-]+)")
_TFL_SIZE = re.compile(r"The input model file size \(MB\): ([0-9.]+)")
_TFL_THREADS = re.compile(r"(?:Num threads|#threads used for CPU inference): \[(\d+)\]")


def parse_benchmark_model(text: str) -> dict:
    """LiteRT/TFLite ``benchmark_model`` output -> {ok, init_ms, first_inference_ms, warmup_mean_ms, mean_ms,
    runs, min_ms, max_ms, std_ms, memory_init_mb, memory_overall_mb, peak_memory_mb, model_size_mb, threads}.
    The last ``count=...`` line is the timed run (the first one is warm-up)."""
    out: dict = {"tool": "benchmark_model", "ok": False, "init_ms": None, "first_inference_ms": None,
                 "warmup_mean_ms": None, "mean_ms": None, "runs": None, "min_ms": None, "max_ms": None,
                 "std_ms": None, "memory_init_mb": None, "memory_overall_mb": None, "peak_memory_mb": None,
                 "model_size_mb": None, "threads": None, "error": None}
    stats = _TFL_STATS.findall(text)
    if stats:
        count, _first, _curr, lo, hi, avg, std = stats[-1]
        out.update(runs=int(count), min_ms=float(lo) / 1e3, max_ms=float(hi) / 1e3, mean_ms=float(avg) / 1e3,
                   std_ms=float(std) / 1e3)
    if m := _TFL_TIMINGS.search(text):
        out.update(ok=True, init_ms=float(m.group(1)) / 1e3, first_inference_ms=float(m.group(2)) / 1e3,
                   warmup_mean_ms=float(m.group(3)) / 1e3, mean_ms=float(m.group(4)) / 1e3)
    elif m := _TFL_TIMINGS_OLD.search(text):
        out.update(ok=True, init_ms=float(m.group(2)) / 1e3, warmup_mean_ms=float(m.group(1)) / 1e3,
                   mean_ms=float(m.group(3)) / 1e3, first_inference_ms=float(stats[0][1]) / 1e3 if stats else None)
    if m := _TFL_MEMORY.search(text):
        out["memory_init_mb"], out["memory_overall_mb"] = float(m.group(1)), float(m.group(2))
    if m := _TFL_PEAK.search(text):
        out["peak_memory_mb"] = float(m.group(1))
    if m := _TFL_SIZE.search(text):
        out["model_size_mb"] = float(m.group(1))
    threads = _TFL_THREADS.findall(text)
    if threads:
        out["threads"] = int(threads[-1])
    if not out["ok"]:
        failed = [ln for ln in text.splitlines() if "ERROR" in ln or "Failed" in ln or "failed" in ln]
        out["error"] = failed[-1].strip() if failed else "no 'Inference timings' line in benchmark_model output"
    return out


# LiteRT's CompiledModel benchmark (litert/tools/benchmark_litert_model, and its Python mirror in ai_edge_litert/tools)
# prints one "BENCHMARK RESULTS" block: "Inference (avg):      3.21 ms (50 runs)", "Fully accelerated:     True", ...
_LRT_LINE = re.compile(r"^\s*(?:\S+ \S+ \S+: )?(Model initialization|Warmup \(first\)|Warmup \(avg\)|Inference \(avg\)|"
                       r"Inference \(min\)|Inference \(max\)|Inference \(median\)|Inference \(std\)|"
                       r"Inference \(p5\)|Inference \(p95\)|Init footprint|Overall footprint|Peak memory):\s+"
                       r"([0-9.]+)(?: (?:ms|MB))?(?: \((\d+) runs\))?", re.M)
_LRT_FULLY = re.compile(r"Fully accelerated:\s+(\w+)")
_LRT_KEYS = {"Model initialization": "init_ms", "Warmup (first)": "first_inference_ms", "Warmup (avg)": "warmup_mean_ms",
             "Inference (avg)": "mean_ms", "Inference (min)": "min_ms", "Inference (max)": "max_ms",
             "Inference (median)": "median_ms", "Inference (std)": "std_ms", "Inference (p5)": "p5_ms",
             "Inference (p95)": "p95_ms", "Init footprint": "memory_init_mb", "Overall footprint": "memory_overall_mb",
             "Peak memory": "peak_memory_mb"}


def parse_benchmark_litert_model(text: str) -> dict:
    """LiteRT ``benchmark_litert_model`` output (the C++ tool or ai_edge_litert's Python mirror) -> {ok, init_ms,
    first_inference_ms, warmup_mean_ms, mean_ms, median_ms, runs, min_ms, max_ms, std_ms, p5_ms, p95_ms, memory,
    fully_accelerated}. A run that did not reach its results block is not ok; its last error line is kept."""
    out: dict = {"tool": "benchmark_litert_model", "ok": False, "runs": None, "fully_accelerated": None, "error": None,
                 **{key: None for key in _LRT_KEYS.values()}}
    for m in _LRT_LINE.finditer(text):
        out[_LRT_KEYS[m.group(1)]] = float(m.group(2))
        if m.group(1) == "Inference (avg)" and m.group(3):
            out["runs"] = int(m.group(3))
    if m := _LRT_FULLY.search(text):
        out["fully_accelerated"] = m.group(1).lower() in ("true", "1")
    out["ok"] = out["mean_ms"] is not None
    if not out["ok"]:
        failed = [ln.strip() for ln in text.splitlines() if "ERROR" in ln or "Error" in ln or "Failed" in ln]
        out["error"] = failed[-1] if failed else "no 'Inference (avg)' line in benchmark_litert_model output"
    return out



# ---- parsed run -> measurement ------------------------------------------------------------------------------

def _summary_fields(parsed: dict) -> dict:
    return {k: parsed[k] for k in ("runs", "mean_ms", "min_ms", "max_ms", "std_ms")}


def measure_executor_runner(parsed: dict, warmup: int) -> dict:
    lat = parsed["latencies_ms"]
    timed = lat[warmup:] if len(lat) > warmup else lat
    m = {}
    if timed:
        m.update(latency_summary(timed))
    elif parsed["mean_ms"] is not None:
        m.update(runs=parsed["executions"], mean_ms=parsed["mean_ms"])
    return {**m, "load_ms": parsed["load_ms"], "first_inference_ms": lat[0] if lat else None,
            "peak_rss_load_bytes": None, "peak_rss_inference_bytes": None}


def measure_benchmark_model(parsed: dict, warmup: int) -> dict:
    peak = parsed["peak_memory_mb"] or parsed["memory_overall_mb"]
    return {**_summary_fields(parsed), "load_ms": parsed["init_ms"], "first_inference_ms": parsed["first_inference_ms"],
            "peak_rss_load_bytes": int(parsed["memory_init_mb"] * MB) if parsed["memory_init_mb"] is not None else None,
            "peak_rss_inference_bytes": int((peak or 0) * MB) if peak is not None else None}


def measure_benchmark_litert_model(parsed: dict, warmup: int) -> dict:
    """Median, no per-run latencies: p50 is its median."""
    return {**_summary_fields(parsed), "p50_ms": parsed["median_ms"], "load_ms": parsed["init_ms"],
            "first_inference_ms": parsed["first_inference_ms"],
            "peak_rss_load_bytes": int(parsed["memory_init_mb"] * MB) if parsed["memory_init_mb"] else None,
            "peak_rss_inference_bytes": int(parsed["peak_memory_mb"] * MB) if parsed["peak_memory_mb"] else None,
            "fully_accelerated": parsed["fully_accelerated"]}


# ---- the registry ------------------------------------------------------------------------------------------

def litert_npu_command(name: str, threads: int, warmup: int, runs: int) -> str:
    return (f"cd {DEVICE_DIR} && LD_LIBRARY_PATH=npu:$LD_LIBRARY_PATH ADSP_LIBRARY_PATH=npu "
            f"./benchmark_litert_model --graph={name} --use_npu=true --use_cpu=true --dispatch_library_path=npu "
            f"--num_threads={threads} --warmup_runs={warmup} --num_runs={runs}")


PHONE_TOOLS: dict[str, PhoneTool] = {}


def register(tool: PhoneTool) -> PhoneTool:
    PHONE_TOOLS[tool.kind] = tool
    return tool


register(PhoneTool(
    "executorch", "executor_runner",
    lambda name, t, warmup, runs: (f"cd {DEVICE_DIR} && ./executor_runner --model_path={name} --inputs=input.raw "
                                   f"--num_executions={warmup + runs} --cpu_threads={t} --print_output=none"),
    parse_executor_runner, measure_executor_runner, "ExecuTorch's executor_runner built for Android (.pte)"))
register(PhoneTool(
    "litert", "benchmark_model",
    lambda name, t, warmup, runs: (f"cd {DEVICE_DIR} && ./benchmark_model --graph={name} --num_threads={t} "
                                   f"--warmup_runs={warmup} --num_runs={runs} --report_peak_memory_footprint=true"),
    parse_benchmark_model, measure_benchmark_model, "LiteRT's benchmark_model built for Android (.tflite)"))
register(PhoneTool(
    "litert-npu", "benchmark_litert_model", litert_npu_command, parse_benchmark_litert_model,
    measure_benchmark_litert_model, "LiteRT's benchmark_litert_model (CompiledModel, NPU accelerator) for Android "
    "NPU artifacts", needs_npu_libs=True, accelerator="npu"))

OTHER_TOOLS = ("veil-app", "xctest")  # the rows the demo app and the iOS XCTest bench write


def tool_names() -> set[str]:
    """Every tool a bench report's device rows may name (the report schema checks them)."""
    return {t.binary for t in PHONE_TOOLS.values()} | set(OTHER_TOOLS)


def measurement_from_tool(parsed: dict, threads: int, warmup: int, chunk_seconds: float, macs: int | None) -> dict:
    """A parsed tool output in the same schema as host measurements; what a tool does not report is None."""
    if not parsed["ok"]:
        return {"status": "failed", "error": parsed.get("error") or f"{parsed['tool']} did not finish"}
    tool = next(t for t in PHONE_TOOLS.values() if t.binary == parsed["tool"])
    m = {k: None for k in ("runs", "p50_ms", "p90_ms", "p99_ms", "mean_ms", "min_ms", "max_ms", "std_ms")}
    m.update(tool.measure(parsed, warmup))
    return finish(m, threads, chunk_seconds, macs)


def finish(m: dict, threads: int | None, chunk_seconds: float, macs: int | None) -> dict:
    """status, threads, the latency statistic used (p50 when per-run latencies exist, else mean), RTF, GMAC/s."""
    center = m["p50_ms"] if m["p50_ms"] is not None else m["mean_ms"]
    m.update(status="ok", threads=threads, latency_statistic="p50" if m["p50_ms"] is not None else "mean",
             rtf=(center / 1e3 / chunk_seconds) if center else None,
             gmacs=(macs / (center / 1e3) / 1e9) if (center and macs) else None)
    return m


