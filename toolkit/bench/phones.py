"""Benchmarks on phones, with the runtimes' official command-line runners, parsed into Veil's bench schema.

Android (``veil bench EXPORT_DIR --device android[:SERIAL] --executor-runner PATH --benchmark-model PATH``):

    adb devices                                   pick SERIAL (or the only attached device)
    adb push <runner> <artifact> input.raw  ->  /data/local/tmp/veil/
    ExecuTorch  ./executor_runner --model_path=X.pte --inputs=input.raw --num_executions=W+N
                                  --cpu_threads=T --print_output=none
                (the first W iterations are warm-up and dropped; ``Iteration i of n: x ms`` lines give the
                latencies, ``Model loaded in x ms`` the load time)
    LiteRT      ./benchmark_model --graph=X.tflite --num_threads=T --warmup_runs=W --num_runs=N
                                  --report_peak_memory_footprint=true
                (random input: the graph is static, so latency does not depend on the values; the tool prints
                count/min/max/avg/std, init and first-inference times and its memory footprint, no percentiles)

    LiteRT NPU  ./benchmark_litert_model --graph=X.tflite --use_npu=true --use_cpu=true
                                  --dispatch_library_path=npu --num_threads=T --warmup_runs=W --num_runs=N
                (an ahead-of-time NPU artifact, ``npu-qualcomm:SOC``: LiteRT's CompiledModel benchmark with the NPU
                accelerator, CPU fallback allowed; ``--npu-libs DIR`` holds the phone's vendor runtime, pushed to
                ``npu/`` and put on LD_LIBRARY_PATH and ADSP_LIBRARY_PATH: Qualcomm's ``libLiteRtDispatch_Qualcomm.so``
                with QAIRT's ``libQnnHtp.so``, ``libQnnSystem.so``, ``libQnnHtpV<arch>Stub.so`` and
                ``libQnnHtpV<arch>Skel.so`` for the SoC. The row records the accelerator asked for, the SoC the
                artifact was compiled for and the phone's (``ro.soc.model``), whether the tool found the model
                fully accelerated, and the ops the compiler left to the CPU (the manifest's placement))

``executor_runner`` is ExecuTorch's examples/portable/executor_runner built for Android with XNNPACK
(``-DEXECUTORCH_BUILD_XNNPACK=ON``, Android NDK toolchain); ``benchmark_model`` is LiteRT's
tflite/tools/benchmark binary for android_arm64; ``benchmark_litert_model`` is LiteRT's litert/tools CompiledModel
benchmark for android_arm64. All are given by path; Veil does not build them.

iOS (``veil bench EXPORT_DIR --device ios --ios-log FILE``): Core ML runs only on Apple's OS, so the phone run
happens on a Mac with Xcode and a provisioned iPhone, and Veil parses its saved log:

    1. ``xcrun devicectl list devices``          -> the device identifier (UDID)
    2. the iOS demo's benchmark target (ios_demo/VeilDemo, VeilBenchTests:
       ``ios_demo/VeilDemo/BenchTests/VeilPrefixBenchTests.swift``) with the export folder in ios_demo/VeilDemo/Exports/;
       per compute-unit setting (cpuOnly, cpuAndGPU, cpuAndNeuralEngine, all) it compiles the ``.mlpackage`` once,
       times the load and the first prediction, runs W warm-up and N timed predictions (VeilCore's BenchRunner),
       logs a ``veil-bench: case=... artifact=... compute_units=... device=... compile_ms=... load_ms=...
       first_inference_ms=... warm_p50_ms=...`` line, prints the veil-bench/1 JSON on a ``veil-bench-json:`` line,
       then ``measure(metrics: [XCTClockMetric(), XCTCPUMetric(), XCTMemoryMetric()])`` over 50 iterations of one
       prediction each (XCTest runs iterationCount + 1 and drops the first)
    3. ``cd ios_demo/VeilDemo && xcodegen generate``, then ``xcodebuild test -project ios_demo/VeilDemo/VeilDemo.xcodeproj
       -scheme VeilDemo -configuration Release -destination 'platform=iOS,id=<UDID>'
       -only-testing:VeilBenchTests/VeilPrefixBenchTests -allowProvisioningUpdates 2>&1 | tee ios-bench.log``
    4. ``veil bench EXPORT_DIR --device ios --ios-log ios-bench.log`` (on any OS)

:func:`parse_xctest_log` reads XCTest's ``Test Case '...' measured [Clock Monotonic Time, s] average: ...,
values: [...]`` lines (also ``[Time, seconds]`` of a classic ``measure {}``, ``[Memory Peak Physical, kB]``,
``[CPU Time, s]``...) from any such log, the template's or a test of your own: p50/p90/p99 come from the
per-iteration values, peak memory from Memory Peak Physical (the process's absolute peak, unlike the host's peak
over a baseline); load and first-prediction times only from the template's marker line, else None. Rows are
matched to the export's Core ML artifact by the marker's ``artifact=``, or to its only Core ML artifact.
Xcode's interactive Core ML performance report (open the ``.mlpackage`` -> Performance -> "+" -> device and
compute units: load, median prediction and the compute unit of each op) has no exported format Veil parses; use
it to see where ops run. Without ``--ios-log``: off macOS (or without ``xcrun``) the command fails with
``no-device``, on macOS with the xcodebuild command to run.

Android without ``adb``, or with no device attached: the command fails with a one-line ``no-device`` error.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

import export as backends
from toolkit.bench.phone_tools import DEVICE_DIR, PHONE_TOOLS, finish, measurement_from_tool
from toolkit.bench.runner import latency_summary
from toolkit.errors import VeilError
from toolkit.paths import REPO_ROOT

class NoDevice(VeilError):
    """No phone to measure on; the message starts with ``no-device:``."""


# XCTest performance lines, as xcodebuild (and `swift test`) print them, one per metric and test case:
#   <file>:<line>: Test Case '-[Module.Class testName]' measured [Clock Monotonic Time, s] average: 0.012,
#   relative standard deviation: 3.2%, values: [0.0121, ...], performanceMetricID:com.apple.dt.XCTMetric_Clock...
# (swift-corelibs-xctest names the case 'Class.testName'). The average is printed with 3 decimals only, the
# values with 6: statistics are computed from the values.
_XC_MEASURED = re.compile(r"Test Case '(?P<test>[^']+)' measured \[(?P<metric>[^\]]+)\] "
                          r"average: (?P<avg>[-+0-9.eE]+|-?nan), "
                          r"relative standard deviation: (?P<rsd>[-+0-9.eE]+|-?nan)%"
                          r"(?:, values: \[(?P<values>[^\]]*)\])?(?:, performanceMetricID:(?P<id>[\w.\-]+))?")
_XC_STARTED = re.compile(r"Test Case '(?P<test>[^']+)' started\.")
_XC_DONE = re.compile(r"Test Case '(?P<test>[^']+)' (?P<status>passed|failed|skipped) \((?P<seconds>[0-9.]+) seconds\)")
_XC_DESTINATION = re.compile(r"xcodebuild\b[^\n]*?\s-destination\s+(?:\"([^\"]+)\"|'([^']+)'|(\S+))")
_XC_MARKER = re.compile(r"veil-bench: (.*)$", re.M)
# XCTest units -> (Veil unit, factor). XCTMemoryMetric's kB are 1000 bytes (its values are multiples of 16.384 kB,
# the 16 KiB page of Apple silicon).
_XC_UNITS = {"s": ("ms", 1e3), "seconds": ("ms", 1e3), "ms": ("ms", 1.0), "kB": ("bytes", 1e3),
             "MB": ("bytes", 1e6), "B": ("bytes", 1.0)}
# wall-clock metrics, preferred first: XCTClockMetric, then the classic measure {} block
XC_LATENCY_METRICS = ("Clock Monotonic Time", "Time")


def _xc_test_name(raw: str) -> str:
    """'-[Module.Class testName]' -> 'Module.Class.testName'; 'Class.testName' stays."""
    m = re.fullmatch(r"-\[(\S+) (\S+)\]", raw.strip())
    return f"{m.group(1)}.{m.group(2)}" if m else raw.strip()


def _xc_float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def parse_xctest_log(text: str) -> dict:
    """xcodebuild test (or swift test) output -> {ok, tests: {name: {status, seconds, metrics, marker}},
    destination, error}. Each metric: {name, unit, average, rsd_percent, values, metric_id} as printed, plus
    ``veil_unit`` and ``average_<unit>`` / ``values_<unit>`` converted to ms or bytes where the unit allows.
    ``marker`` holds the ``veil-bench: key=value ...`` line of Veil's XCTest template for that test (artifact,
    compute units, device, load and first-prediction times), when there is one."""
    out: dict = {"tool": "xctest", "ok": False, "tests": {}, "destination": None, "error": None}
    if m := _XC_DESTINATION.search(text):
        out["destination"] = next(g for g in m.groups() if g)
    tests: dict = out["tests"]

    def test(raw: str) -> dict:
        return tests.setdefault(_xc_test_name(raw), {"status": None, "seconds": None, "metrics": {}, "marker": None})

    markers = {}
    for line in text.splitlines():
        if m := _XC_MEASURED.search(line):
            name, _, unit = m.group("metric").rpartition(", ")
            name, unit = (name, unit) if name else (unit, "")
            values = [v for v in (_xc_float(x) for x in (m.group("values") or "").split(",") if x.strip())
                      if v is not None]
            metric = {"name": name, "unit": unit, "average": _xc_float(m.group("avg")),
                      "rsd_percent": _xc_float(m.group("rsd")), "values": values, "metric_id": m.group("id")}
            if unit in _XC_UNITS:
                to, factor = _XC_UNITS[unit]
                metric["veil_unit"] = to
                metric[f"average_{to}"] = metric["average"] * factor if metric["average"] is not None else None
                metric[f"values_{to}"] = [v * factor for v in values]
            test(m.group("test"))["metrics"][name] = metric
        elif m := _XC_DONE.search(line):
            t = test(m.group("test"))
            t["status"], t["seconds"] = m.group("status"), float(m.group("seconds"))
        elif m := _XC_STARTED.search(line):
            test(m.group("test"))
        elif m := _XC_MARKER.search(line):
            fields = dict(tok.split("=", 1) for tok in m.group(1).split() if "=" in tok)
            for key in ("load_ms", "first_inference_ms"):
                if key in fields:
                    fields[key] = _xc_float(fields[key])
            if fields.get("case"):
                markers[fields["case"].removesuffix("()")] = fields
    for name, t in tests.items():
        t["marker"] = markers.get(name.rsplit(".", 1)[-1])
    measured = {k: v for k, v in tests.items() if v["metrics"]}
    out["tests"] = measured
    if measured:
        out["ok"] = True
    else:
        out["error"] = ("no XCTest performance measurements (\"Test Case '...' measured [...] average: ...\" lines) "
                        "in the log")
    return out


def measurement_from_xctest(test: dict, chunk_seconds: float, macs: int | None) -> dict:
    """One parsed XCTest case in the same schema as host measurements: latency statistics from the per-iteration
    values of the wall-clock metric (XCTClockMetric, else the classic ``measure {}`` time), peak memory from
    XCTMemoryMetric's Memory Peak Physical (the process's absolute peak, not over a baseline), load and first
    prediction from Veil's template marker; what the log does not report is None."""
    metrics = test["metrics"]
    clock = next((metrics[k] for k in XC_LATENCY_METRICS if k in metrics and metrics[k].get("veil_unit") == "ms"),
                 None)
    if clock is None:
        return {"status": "failed", "error": "no wall-clock metric in this test case (measure with XCTClockMetric, "
                                             "as Veil's template does); measured: " + ", ".join(metrics)}
    keys = ("runs", "p50_ms", "p90_ms", "p99_ms", "mean_ms", "min_ms", "max_ms", "std_ms")
    m = {k: None for k in keys}
    if clock["values_ms"]:
        m.update(latency_summary(clock["values_ms"]))
    else:
        m["mean_ms"] = clock["average_ms"]
    marker = test.get("marker") or {}
    peak = metrics.get("Memory Peak Physical", {})
    peak_values = peak.get("values_bytes") or ([peak["average_bytes"]] if peak.get("average_bytes") is not None else [])
    cpu = metrics.get("CPU Time", {})
    m.update(load_ms=marker.get("load_ms"), first_inference_ms=marker.get("first_inference_ms"),
             peak_rss_load_bytes=None, peak_rss_inference_bytes=int(round(max(peak_values))) if peak_values else None,
             peak_rss_method="XCTMemoryMetric Memory Peak Physical (process peak, absolute)" if peak_values else None,
             cpu_time_mean_ms=(float(np.mean(cpu["values_ms"])) if cpu.get("values_ms") else cpu.get("average_ms")),
             latency_metric=f"{clock['name']}, {clock['unit']}", rsd_percent=clock["rsd_percent"],
             compute_units=marker.get("compute_units"))
    return finish(m, None, chunk_seconds, macs)


# ---- adb ----------------------------------------------------------------------------------------------------

def find_adb() -> str:
    adb = os.environ.get("ADB") or shutil.which("adb")
    if not adb:
        raise NoDevice("no-device: adb not found (install Android platform-tools or set ADB=/path/to/adb)")
    return adb


def list_devices(adb: str) -> list[tuple[str, str]]:
    """``adb devices`` -> [(serial, state)]."""
    try:
        proc = subprocess.run([adb, "devices"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NoDevice(f"no-device: `{adb} devices` failed ({exc})") from None
    devices = []
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2 and not line.startswith(("List of devices", "*")):
            devices.append((parts[0], parts[1]))
    return devices


def pick_device(device_arg: str) -> tuple[str, str]:
    """``android`` or ``android:SERIAL`` -> (adb path, serial); NoDevice when there is none to use."""
    kind, _, serial = device_arg.partition(":")
    if kind != "android":
        raise VeilError(f"--device {device_arg}: expected android[:SERIAL] or ios")
    adb = find_adb()
    ready = [s for s, state in list_devices(adb) if state == "device"]
    if serial:
        if serial not in ready:
            raise NoDevice(f"no-device: Android device '{serial}' is not attached and ready "
                           f"(adb devices lists: {', '.join(ready) or 'none'})")
        return adb, serial
    if not ready:
        raise NoDevice("no-device: adb lists no attached Android device (connect one and enable USB debugging)")
    if len(ready) > 1:
        raise VeilError(f"--device android: {len(ready)} devices attached ({', '.join(ready)}); "
                        f"pick one with --device android:SERIAL")
    return adb, ready[0]


class Adb:
    """``adb -s SERIAL ...``: :meth:`run` returns the output of a command that may fail, :meth:`check` raises a
    one-line VeilError when it does. A command that hangs past ``timeout`` seconds is an error either way."""

    def __init__(self, adb: str, serial: str):
        self.adb, self.serial = adb, serial

    def run(self, *args: str, timeout: float = 600) -> tuple[int, str]:
        try:
            proc = subprocess.run([self.adb, "-s", self.serial, *args], capture_output=True, text=True,
                                  timeout=timeout)
        except subprocess.TimeoutExpired:
            raise VeilError(f"adb {' '.join(args[:2])} on {self.serial} did not finish in {timeout:.0f} s") from None
        return proc.returncode, proc.stdout + proc.stderr

    def check(self, *args: str, timeout: float = 600) -> str:
        rc, out = self.run(*args, timeout=timeout)
        if rc != 0:
            last = out.strip().splitlines()[-1:] or [f"exit {rc}"]
            raise VeilError(f"adb {' '.join(args[:2])} on {self.serial} failed: {last[0]}")
        return out


def artifact_kind(entry: dict) -> str:
    """Which Android tool runs a manifest entry: an ahead-of-time NPU artifact needs LiteRT's CompiledModel
    benchmark (its DISPATCH_OP is not an op the classic interpreter of ``benchmark_model`` knows); an artifact
    whose recipe runs only on Apple hardware (ExecuTorch's Core ML delegate) is ``apple``, which no Android tool
    runs; else the backend's name."""
    if entry["backend"] == "litert" and "npu" in entry:
        return "litert-npu"
    if (entry["backend"] in PHONE_TOOLS
            and backends.get_backend(entry["backend"]).RECIPES.get(entry["recipe"]).runs_on == "needs-macos"):
        return "apple"
    return entry["backend"]


def npu_row_fields(entry: dict, device_soc: str | None) -> dict:
    """The schema fields of an NPU run: accelerator, the SoC compiled for and the phone's, and the ops the
    compiler left to the CPU (fallback ops; from the manifest's placement)."""
    npu = entry["npu"]
    placement = npu["placement"]
    return {"accelerator": "npu", "npu": npu.get("npu"), "soc": npu["soc"], "device_soc": device_soc,
            "soc_matches": (device_soc or "").upper() == npu["soc"].upper() if device_soc else None,
            "fallback_ops": placement.get("cpu_ops", {}), "ops_on_npu": placement["ops_on_npu"],
            "ops_total": placement["ops_total"], "partitions": placement["partitions"]}


def android_bench(device_arg: str, artifacts: list[tuple[dict, Path]], chunk: np.ndarray, threads: list[int],
                  runs: int, warmup: int, tools: dict[str, str], chunk_seconds: float, macs: int | None,
                  work_dir: Path, npu_libs: str | None = None) -> dict:
    """Push and run every artifact an Android tool runs (``tools``: kind -> local binary, PHONE_TOOLS); returns
    {device, artifacts: [...]}. Artifacts whose tool was not given are listed as skipped (with the flag to pass)."""
    adb = Adb(*pick_device(device_arg))
    model = adb.check("shell", "getprop", "ro.product.model").strip()
    abi = adb.check("shell", "getprop", "ro.product.cpu.abi").strip()
    soc = adb.check("shell", "getprop", "ro.soc.model").strip() or None  # Android 12+
    raw = work_dir / "input.raw"
    np.ascontiguousarray(chunk, dtype="<f4").tofile(raw)
    adb.check("shell", "mkdir", "-p", DEVICE_DIR)
    adb.check("push", str(raw), f"{DEVICE_DIR}/input.raw")
    pushed: set[str] = set()
    results = []
    for entry, path in artifacts:
        kind = artifact_kind(entry)
        base = {"file": entry["file"], "backend": entry["backend"], "recipe": entry["recipe"],
                "size_bytes": entry["size_bytes"], "measurements": []}
        if kind == "apple":
            results.append({**base, "status": "skipped: runs only on iOS/macOS (its Core ML delegate)"})
        if kind not in PHONE_TOOLS:
            continue
        tool, local = PHONE_TOOLS[kind], tools.get(kind)
        row = {**base, "tool": tool.binary,
               **(npu_row_fields(entry, soc) if tool.accelerator == "npu" else {"accelerator": tool.accelerator})}
        if tool.needs_npu_libs and local and not npu_libs:
            row["status"] = "skipped: pass --npu-libs DIR (the phone's LiteRT dispatch library and vendor runtime)"
        if not local:
            row["status"] = f"skipped: pass {tool.flag} PATH or --tool {kind}=PATH (the {tool.binary} binary built for Android)"
        if "status" in row:
            results.append(row)
            continue
        push_tool(adb, tool, local, npu_libs, pushed)
        adb.check("push", str(path), f"{DEVICE_DIR}/{path.name}")
        for t in threads:
            cmd = tool.command(path.name, t, warmup, runs)
            m = measurement_from_tool(tool.parse(adb.check("shell", cmd)), t, warmup, chunk_seconds, macs)
            m["command"] = cmd
            row["measurements"].append(m)
        row["status"] = "ran"
        results.append(row)
    return {"kind": "android", "serial": adb.serial, "model": model, "abi": abi, "soc": soc, "artifacts": results}


def push_tool(adb: Adb, tool, local: str, npu_libs: str | None, pushed: set[str]) -> None:
    """The tool's binary (and for an NPU tool the vendor libraries), once per run."""
    if not Path(local).is_file():
        raise VeilError(f"{local}: {tool.flag} binary not found")
    if tool.binary not in pushed:
        adb.check("push", local, f"{DEVICE_DIR}/{tool.binary}")
        adb.check("shell", "chmod", "755", f"{DEVICE_DIR}/{tool.binary}")
        pushed.add(tool.binary)
    if tool.needs_npu_libs and "npu" not in pushed:
        if not Path(npu_libs).is_dir():
            raise VeilError(f"{npu_libs}: --npu-libs is not a directory")
        adb.check("shell", "mkdir", "-p", f"{DEVICE_DIR}/npu")
        for lib in sorted(Path(npu_libs).iterdir()):
            adb.check("push", str(lib), f"{DEVICE_DIR}/npu/{lib.name}")
        pushed.add("npu")


# ---- iOS: a saved xcodebuild log ----------------------------------------------------------------------------

IOS_TEMPLATE = REPO_ROOT / "ios_demo" / "VeilDemo" / "BenchTests" / "VeilPrefixBenchTests.swift"  # the XCTest bench
# MLComputeUnits as the benchmark's marker names them (ComputeUnitsChoice in ios_demo) -> what may execute the prediction
COMPUTE_UNIT_ACCELERATORS = {"cpuOnly": "cpu", "cpuAndGPU": "cpu+gpu", "cpuAndNeuralEngine": "cpu+ane",
                             "all": "cpu+gpu+ane"}
XCODEBUILD_COMMAND = ("xcodebuild test -project ios_demo/VeilDemo/VeilDemo.xcodeproj -scheme VeilDemo "
                      "-configuration Release -destination 'platform=iOS,id=<UDID>' "
                      "-only-testing:VeilBenchTests/VeilPrefixBenchTests -allowProvisioningUpdates 2>&1 "
                      "| tee ios-bench.log")


def read_ios_log(ios_log: str | Path) -> tuple[Path, dict]:
    """Read and parse a saved xcodebuild log; VeilError naming the file when it is unreadable or holds no
    XCTest measurement."""
    path = Path(ios_log)
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        raise VeilError(f"{path}: cannot read the --ios-log file ({exc.strerror or exc})") from None
    parsed = parse_xctest_log(text)
    if not parsed["ok"]:
        raise VeilError(f"{path}: {parsed['error']}; pass the saved output of `xcodebuild test` running "
                        f"{IOS_TEMPLATE.name} on the iPhone")
    return path, parsed


def check_ios(ios_log: str | Path | None) -> None:
    """Fail early: without a log, no-device off macOS and the command to run on macOS; a bad log names itself."""
    if ios_log:
        read_ios_log(ios_log)
        return
    if sys.platform != "darwin" or not shutil.which("xcrun"):
        raise NoDevice("no-device: --device ios needs macOS with Xcode (xcrun devicectl) and an attached iPhone; "
                       "see the protocol in toolkit/bench/phones.py (or pass --ios-log FILE, a saved xcodebuild log)")
    raise VeilError(f"--device ios: run {IOS_TEMPLATE.name} on the iPhone (UDID from `xcrun devicectl list devices`): "
                    f"{XCODEBUILD_COMMAND}; then pass the log: --ios-log ios-bench.log")


def ios_bench(ios_log: str | Path | None, artifacts: list[tuple[dict, Path]] = (), chunk_seconds: float = 1.0,
              macs: int | None = None) -> dict:
    """A saved xcodebuild log of XCTest performance tests -> {kind: ios, log, destination, artifacts: [...]}, one
    row per measured test case. A row is matched to a Core ML artifact of the export by the ``artifact=`` of
    the template's marker line; a log without markers (a test of your own) is matched to the export's only
    Core ML artifact, if it has exactly one."""
    if not ios_log:
        check_ios(None)
    path, parsed = read_ios_log(ios_log)
    coreml = [entry for entry, _ in artifacts if entry["backend"] == "coreml"]
    by_name = {}
    for entry in coreml:
        name = Path(entry["file"]).name
        by_name[name] = by_name[name.removesuffix(".mlpackage")] = entry
    rows = []
    for name, test in parsed["tests"].items():
        marker = test["marker"] or {}
        named = marker.get("artifact")
        entry = by_name.get(named) if named else (coreml[0] if len(coreml) == 1 else None)
        units = marker.get("compute_units")
        row = {"accelerator": COMPUTE_UNIT_ACCELERATORS.get(units, units), "compute_units": units,
               "fallback_ops": None,  # Core ML reports per-op compute units only in Xcode's performance report
               "file": entry["file"] if entry else named, "backend": "coreml",
               "recipe": entry["recipe"] if entry else None, "size_bytes": entry["size_bytes"] if entry else None,
               "tool": "xctest", "test": name, "test_status": test["status"], "artifact_matched": entry is not None,
               "device": marker.get("device"), "os": marker.get("os"),
               "measurements": [measurement_from_xctest(test, chunk_seconds, macs)], "status": "ran"}
        if entry is None:
            row["note"] = (f"artifact {named!r} is not among the export's Core ML artifacts" if named else
                           f"no veil-bench marker and the export has {len(coreml)} Core ML artifacts: "
                           f"not attributed")
        rows.append(row)
    devices = sorted({r["device"] for r in rows if r["device"]})
    return {"kind": "ios", "log": str(path), "destination": parsed["destination"],
            "model": ", ".join(devices) or None, "artifacts": rows}
