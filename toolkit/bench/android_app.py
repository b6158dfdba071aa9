"""`veil bench EXPORT_DIR --device android[:SERIAL] --app`: the benchmark mode of the Veil demo app on the phone.

The native runners (``executor_runner``, ``benchmark_model``; toolkit/bench/phones.py) time the artifact from an
``adb shell`` process; the app times it where it will run, in a foreground Activity with the scheduler treatment an
app gets, through the same Android runtimes the demo uses (ExecuTorch's AAR, LiteRT's CompiledModel). Both are
measured in one run and listed side by side; the native runners stay the baseline. Veil installs nothing: build the
app from android_demo/ (a release build: debug builds are refused) and install it first.

    adb shell pm path veil.demo                  the app is installed
    adb shell dumpsys package veil.demo          ... and is not a debuggable (debug) build
    adb push *.pte, *.tflite, manifest.json  ->  /sdcard/Android/data/veil.demo/files/exports/<export name>/
    adb push input-<id>.f32                  ->  /sdcard/Android/data/veil.demo/files/veil-bench/
             (the host bench's input chunk, float32 little-endian, so host, runners and app time the same audio)
    per artifact and thread count, a fresh process (-S):
    adb shell am start -W -S -n veil.demo/.BenchmarkActivity --es export <name> --es backend executorch
             --es recipe int8-static --ei threads 1 --ei warmup 5 --ei iterations 50
             --es input <input path> --es run_id <id>
             an ahead-of-time NPU .tflite (recipe npu-qualcomm:SOC) runs on LiteRT's NPU accelerator, with
             --es npu_libs /sdcard/Android/data/veil.demo/files/npu-libs (pushed from --npu-libs DIR: the
             phone's LiteRT dispatch library and vendor runtime, which the app copies into its private dir)
    poll     adb shell cat /sdcard/Android/data/veil.demo/files/veil-bench/<id>.json
             (falling back to `run-as veil.demo cat files/veil-bench/<id>.json`)
    adb shell am force-stop veil.demo

The app writes its result (the veil-bench/1 schema; android_demo/core BenchSchema.kt) to its files dir and a copy to
its external files dir. The copy is what is read back: `run-as` only works for debuggable packages ("run-as: package
not debuggable"), and a benchmark must not be one, while the shell user reads an app's external files dir without it
(the same reason dotnet/android moved from `run-as cat` back to `adb pull` for release test APKs). The document is
checked with report.validate before its rows join the report.
"""
from __future__ import annotations

import json
import re
import time
import uuid
from pathlib import Path

import numpy as np

from toolkit.bench import report
from toolkit.bench.phones import Adb, artifact_kind, npu_row_fields, pick_device
from toolkit.errors import VeilError
from toolkit.exporting.manifest import ExportManifest

PACKAGE = "veil.demo"
BENCH_ACTIVITY = f"{PACKAGE}/.BenchmarkActivity"
APP_FILES = f"/sdcard/Android/data/{PACKAGE}/files"
RESULTS = "veil-bench"
EXPORTS = "exports"
APP_BACKENDS = ("executorch", "litert")
APP_KINDS = ("executorch", "litert", "litert-npu")  # phones.artifact_kind of what the app benchmarks
NPU_LIBS = f"{APP_FILES}/npu-libs"  # where --npu-libs goes; the app copies it into its private files dir
POLL_SECONDS = 2.0
TIMEOUT_SECONDS = 900.0


# ---- parsers ------------------------------------------------------------------------------------------------

_AM_FIELD = re.compile(r"^(Status|LaunchState|Activity|ThisTime|TotalTime|WaitTime): (.*)$", re.M)
_AM_ERROR = re.compile(r"^(Error[^\n]*|Exception occurred[^\n]*|java\.lang\.\w+Exception[^\n]*)$", re.M)
_PKG_FLAGS = re.compile(r"^\s*(?:pkgFlags|flags)=\[([^\]]*)\]", re.M)
_VERSION_NAME = re.compile(r"^\s*versionName=(\S+)", re.M)


def parse_am_start(text: str) -> dict:
    """``am start -W`` output -> {ok, status, launch_state, total_ms, wait_ms, error}. ``Status: timeout`` still means
    the activity was started and resumed (it only did not report idle in time), so it is not a failure; an
    ``Error...`` line is."""
    fields = {k: v.strip() for k, v in _AM_FIELD.findall(text)}
    errors = _AM_ERROR.findall(text)

    def ms(key):
        return float(fields[key]) if fields.get(key, "").isdigit() else None
    out = {"ok": False, "status": fields.get("Status"), "launch_state": fields.get("LaunchState"),
           "activity": fields.get("Activity"), "total_ms": ms("TotalTime"), "wait_ms": ms("WaitTime"), "error": None}
    if errors:
        out["error"] = " ".join(e.strip() for e in errors)
    elif out["status"] in ("ok", "timeout"):
        out["ok"] = True
    else:
        out["error"] = "no 'Status:' line in the output of am start -W"
    return out


def parse_package(text: str, package: str = PACKAGE) -> dict:
    """``dumpsys package PKG`` -> {found, debuggable, version}. Only the block of ``package`` is read (dumpsys
    may list others, e.g. under "Hidden system packages")."""
    start = text.find(f"Package [{package}]")
    if start < 0:
        return {"found": False, "debuggable": None, "version": None}
    nxt = text.find("Package [", start + 1)
    block = text[start: nxt if nxt > 0 else len(text)]
    flags = {f for group in _PKG_FLAGS.findall(block) for f in group.split()}
    version = _VERSION_NAME.search(block)
    return {"found": True, "debuggable": "DEBUGGABLE" in flags, "version": version.group(1) if version else None}


def accelerator_of(row: dict) -> str:
    """What the app compiled an artifact row for, from its runners' details (LiteRtPrefix, ExecuTorchPrefix):
    ``npu`` or ``cpu`` (ExecuTorch's XNNPACK is the CPU)."""
    names = {str((m.get("runtime") or {}).get("accelerator") or "cpu").lower() for m in row.get("measurements", [])}
    return "npu" if "npu" in names else "cpu"


def rows_from_app(doc: dict) -> list[dict]:
    """The app's veil-bench/1 document -> device rows as report.render_markdown lists them (file, tool, backend,
    recipe, measurements), each tagged with the app's build."""
    app = doc.get("device", {}).get("app", {})
    rows = []
    for a in doc["artifacts"]:
        rows.append({"file": a.get("file"), "backend": a["backend"], "recipe": a["recipe"],
                     "size_bytes": a["size_bytes"], "tool": a.get("tool", "veil-app"), "runtime": a["runtime"],
                     "accelerator": accelerator_of(a),
                     "measurements": a["measurements"], "status": "ran", "run_id": doc.get("run_id"),
                     "build_type": app.get("build_type"), "app_version": app.get("version")})
    return rows


# ---- the conversation ---------------------------------------------------------------------------------------

def check_installed(adb: Adb, prog: str = "--app") -> None:
    rc, out = adb.run("shell", "pm", "path", PACKAGE, timeout=60)
    if rc != 0 or "package:" not in out:
        raise VeilError(f"{prog}: the Veil demo app ({PACKAGE}) is not installed on {adb.serial}; build it from "
                        f"android_demo/ (./gradlew assembleRelease) and `adb install -r` it: Veil installs nothing")


def check_app(adb: Adb) -> dict:
    """The app is installed and a release (non-debuggable) build; VeilError saying what to do otherwise."""
    check_installed(adb)
    info = parse_package(adb.check("shell", "dumpsys", "package", PACKAGE, timeout=60))
    if info["debuggable"]:
        raise VeilError(f"--app: {PACKAGE} on {adb.serial} is a debuggable (debug) build, which runs many times "
                        f"slower; install the release build (./gradlew assembleRelease)")
    return info


def app_artifacts(manifest: ExportManifest) -> list[dict]:
    """The manifest entries of the artifacts the app benchmarks, in manifest order: ExecuTorch (XNNPACK), LiteRT
    on the CPU, and an ahead-of-time NPU .tflite on LiteRT's NPU accelerator. An ExecuTorch Core ML delegate runs
    only on Apple hardware."""
    return [entry for entry, _ in manifest.artifacts() if artifact_kind(entry) in APP_KINDS]


def pushed_artifacts(manifest: ExportManifest) -> list[dict]:
    """The entries the app installs with an export: every ExecuTorch and LiteRT artifact (the app checks each of
    them against manifest.json when it installs the export, whether or not it can run it)."""
    return [entry for entry, art in manifest.artifacts() if art.backend in APP_BACKENDS]


def push_export(adb: Adb, manifest: ExportManifest) -> str:
    """Push manifest.json, the ExecuTorch/LiteRT artifacts and a vq bottleneck's codebook into the app's external
    files dir; returns the name the app is given (the export folder's name)."""
    name = manifest.dir.name
    remote = f"{APP_FILES}/{EXPORTS}/{name}"
    adb.check("shell", "mkdir", "-p", remote, timeout=60)
    for entry in pushed_artifacts(manifest):
        adb.check("push", str(manifest.dir / entry["file"]), f"{remote}/{entry['file']}")
    book = (manifest.section("bottleneck") or {}).get("codebook")
    if book:  # a vq export's phone quantizes with it: checked here (sha256, size) before it is pushed
        manifest.codebook()
        adb.check("push", str(manifest.dir / book["file"]), f"{remote}/{book['file']}")
    # the manifest last: the app never installs a manifest whose artifacts are still on their way
    adb.check("push", str(manifest.path), f"{remote}/{manifest.path.name}")
    return name


def push_to_app(device_arg: str, export_dir: str | Path) -> int:
    """``android_demo/push_export.sh EXPORT_DIR [SERIAL]``: the export, checked by ExportManifest.read (a changed
    or missing artifact is never pushed), into the installed app (any build: the demo screen runs in a debug build
    too)."""
    manifest = ExportManifest.read(Path(export_dir).resolve())
    if not pushed_artifacts(manifest):
        raise VeilError(f"{manifest.path}: lists no ExecuTorch or LiteRT artifact (export with --target android)")
    adb = Adb(*pick_device(device_arg))
    check_installed(adb, "push_export.sh")
    name = push_export(adb, manifest)
    print(f"pushed {manifest.dir} to {APP_FILES}/{EXPORTS}/{name}; in the app: Refresh exports, pick '{name}'")
    return 0


def start_command(export: str, backend: str, recipe: str, threads: int, warmup: int, iterations: int,
                  input_path: str, run_id: str, npu_libs: str | None = None) -> list[str]:
    return ["shell", "am", "start", "-W", "-S", "-n", BENCH_ACTIVITY, "--es", "export", export,
            "--es", "backend", backend, "--es", "recipe", recipe, "--ei", "threads", str(threads),
            "--ei", "warmup", str(warmup), "--ei", "iterations", str(iterations), "--es", "input", input_path,
            "--es", "run_id", run_id] + (["--es", "npu_libs", npu_libs] if npu_libs else [])


def push_npu_libs(adb: Adb, npu_libs: str | Path) -> str:
    """Push the phone's LiteRT dispatch library and vendor NPU runtime (the files of ``npu_libs``) to where the
    app's benchmark mode installs them from; returns that folder on the phone."""
    libs = sorted(p for p in Path(npu_libs).iterdir() if p.is_file()) if Path(npu_libs).is_dir() else []
    if not libs:
        raise VeilError(f"{npu_libs}: --npu-libs is not a folder of libraries")
    adb.check("shell", "rm", "-rf", NPU_LIBS, timeout=60)
    adb.check("shell", "mkdir", "-p", NPU_LIBS, timeout=60)
    for lib in libs:
        adb.check("push", str(lib), f"{NPU_LIBS}/{lib.name}")
    return NPU_LIBS


def read_result(adb: Adb, run_id: str) -> dict | None:
    """The app's result document for ``run_id``, or None while it is not written yet."""
    for args in (("shell", "cat", f"{APP_FILES}/{RESULTS}/{run_id}.json"),
                 ("shell", "run-as", PACKAGE, "cat", f"files/{RESULTS}/{run_id}.json")):
        rc, out = adb.run(*args, timeout=60)
        text = out.strip()
        if rc == 0 and text.startswith("{"):
            try:
                return json.loads(text)
            except json.JSONDecodeError:
                return None  # caught mid-write on a device without atomic rename: read again
    return None


def wait_result(adb: Adb, run_id: str, poll_seconds: float, timeout_seconds: float) -> dict:
    deadline = time.monotonic() + timeout_seconds
    while True:
        doc = read_result(adb, run_id)
        if doc is not None:
            return doc
        if time.monotonic() > deadline:
            raise VeilError(f"--app: no result from {BENCH_ACTIVITY} on {adb.serial} after {timeout_seconds:.0f} s "
                            f"(run {run_id}); see `adb logcat -s VeilBench`")
        time.sleep(poll_seconds)


def app_bench(device_arg: str, manifests: list[ExportManifest], chunk: np.ndarray, threads: list[int], runs: int,
              warmup: int, work_dir: Path, poll_seconds: float = POLL_SECONDS,
              timeout_seconds: float = TIMEOUT_SECONDS, npu_libs: str | None = None) -> dict:
    """Run every artifact the app benchmarks (app_artifacts) of ``manifests`` (read by ExportManifest.read) at every
    thread count in the app; returns {app, artifacts: rows} (rows as rows_from_app gives them; a run the app could
    not do is a row whose measurement failed with the app's error). An NPU artifact runs with the libraries of
    ``npu_libs`` and its row carries accelerator, SoCs and the compiler's fallback ops; without ``npu_libs`` it is
    a skipped row naming the flag."""
    adb = Adb(*pick_device(device_arg))
    serial = adb.serial
    info = check_app(adb)
    device_soc = adb.check("shell", "getprop", "ro.soc.model", timeout=60).strip() or None  # Android 12+
    wants_npu = any(artifact_kind(e) == "litert-npu" for m in manifests for e in app_artifacts(m))
    remote_libs = push_npu_libs(adb, npu_libs) if npu_libs and wants_npu else None
    session = uuid.uuid4().hex[:8]
    raw = work_dir / f"input-{session}.f32"
    np.ascontiguousarray(chunk, dtype="<f4").tofile(raw)
    input_path = f"{APP_FILES}/{RESULTS}/{raw.name}"
    adb.check("shell", "mkdir", "-p", f"{APP_FILES}/{RESULTS}", timeout=60)
    adb.check("push", str(raw), input_path)
    rows = []
    try:
        for manifest in manifests:
            name = push_export(adb, manifest)
            for entry in app_artifacts(manifest):
                npu = artifact_kind(entry) == "litert-npu"
                extra = npu_row_fields(entry, device_soc) if npu else {}
                if npu and not remote_libs:
                    rows.append({"file": entry["file"], "backend": entry["backend"], "recipe": entry["recipe"],
                                 "size_bytes": entry["size_bytes"], "tool": "veil-app", "measurements": [], **extra,
                                 "status": "skipped: pass --npu-libs DIR (the phone's LiteRT dispatch library and "
                                           "vendor runtime)"})
                    continue
                for t in threads:
                    # no ':' in a file name on the phone's shared storage (npu-qualcomm:SM8650)
                    run_id = f"{session}-{entry['backend']}-{entry['recipe']}-t{t}".replace(":", "-")
                    started = parse_am_start(adb.check(*start_command(name, entry["backend"], entry["recipe"], t,
                                                                      warmup, runs, input_path, run_id,
                                                                      remote_libs if npu else None)))
                    if not started["ok"]:
                        raise VeilError(f"--app: am start {BENCH_ACTIVITY} on {serial} failed: {started['error']}")
                    doc = wait_result(adb, run_id, poll_seconds, timeout_seconds)
                    if doc.get("status") != "ok":
                        rows.append({"file": entry["file"], "backend": entry["backend"], "recipe": entry["recipe"],
                                     "size_bytes": entry["size_bytes"], "tool": "veil-app", "status": "ran",
                                     "run_id": run_id, **extra, "measurements": [
                                         {"status": "failed", "threads": t,
                                          "error": doc.get("error") or "the app reported no error"}]})
                        continue
                    report.validate(doc)
                    rows += [{**extra, **row} for row in rows_from_app(doc)]  # the app says what it compiled for
    finally:
        adb.run("shell", "am", "force-stop", PACKAGE, timeout=60)
    return {"package": PACKAGE, "version": info["version"], "artifacts": rows}


def add_app_rows(device: dict, app: dict, macs: int | None) -> dict:
    """Join the app's rows to the native runners' device section (same phone), adding GMAC/s from the host's MAC
    count; the app's build is recorded under ``app``."""
    for row in app["artifacts"]:
        for m in row["measurements"]:
            if m.get("status") == "ok" and macs and m.get("p50_ms"):
                m["gmacs"] = macs / (m["p50_ms"] / 1e3) / 1e9
    device["artifacts"] = list(device.get("artifacts", [])) + app["artifacts"]
    device["app"] = {"package": app["package"], "version": app["version"]}
    return device
