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
from toolkit.bench.phones import Adb, pick_device
from toolkit.errors import VeilError
from toolkit.exporting.manifest import ExportManifest

PACKAGE = "veil.demo"
BENCH_ACTIVITY = f"{PACKAGE}/.BenchmarkActivity"
APP_FILES = f"/sdcard/Android/data/{PACKAGE}/files"
RESULTS = "veil-bench"
EXPORTS = "exports"
APP_BACKENDS = ("executorch", "litert")
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


def rows_from_app(doc: dict) -> list[dict]:
    """The app's veil-bench/1 document -> device rows as report.render_markdown lists them (file, tool, backend,
    recipe, measurements), each tagged with the app's build."""
    app = doc.get("device", {}).get("app", {})
    rows = []
    for a in doc["artifacts"]:
        rows.append({"file": a.get("file"), "backend": a["backend"], "recipe": a["recipe"],
                     "size_bytes": a["size_bytes"], "tool": a.get("tool", "veil-app"), "runtime": a["runtime"],
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
    """The manifest entries of the artifacts the app runs (ExecuTorch, LiteRT), in manifest order."""
    return [entry for entry, art in manifest.artifacts() if art.backend in APP_BACKENDS]


def push_export(adb: Adb, manifest: ExportManifest) -> str:
    """Push manifest.json and the ExecuTorch/LiteRT artifacts into the app's external files dir; returns the name
    the app is given (the export folder's name)."""
    name = manifest.dir.name
    remote = f"{APP_FILES}/{EXPORTS}/{name}"
    adb.check("shell", "mkdir", "-p", remote, timeout=60)
    for entry in app_artifacts(manifest):
        adb.check("push", str(manifest.dir / entry["file"]), f"{remote}/{entry['file']}")
    # the manifest last: the app never installs a manifest whose artifacts are still on their way
    adb.check("push", str(manifest.path), f"{remote}/{manifest.path.name}")
    return name


def push_to_app(device_arg: str, export_dir: str | Path) -> int:
    """``android_demo/push_export.sh EXPORT_DIR [SERIAL]``: the export, checked by ExportManifest.read (a changed
    or missing artifact is never pushed), into the installed app (any build: the demo screen runs in a debug build
    too)."""
    manifest = ExportManifest.read(Path(export_dir).resolve())
    if not app_artifacts(manifest):
        raise VeilError(f"{manifest.path}: lists no ExecuTorch or LiteRT artifact (export with --target android)")
    adb = Adb(*pick_device(device_arg))
    check_installed(adb, "push_export.sh")
    name = push_export(adb, manifest)
    print(f"pushed {manifest.dir} to {APP_FILES}/{EXPORTS}/{name}; in the app: Refresh exports, pick '{name}'")
    return 0


def start_command(export: str, backend: str, recipe: str, threads: int, warmup: int, iterations: int,
                  input_path: str, run_id: str) -> list[str]:
    return ["shell", "am", "start", "-W", "-S", "-n", BENCH_ACTIVITY, "--es", "export", export,
            "--es", "backend", backend, "--es", "recipe", recipe, "--ei", "threads", str(threads),
            "--ei", "warmup", str(warmup), "--ei", "iterations", str(iterations), "--es", "input", input_path,
            "--es", "run_id", run_id]


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
              timeout_seconds: float = TIMEOUT_SECONDS) -> dict:
    """Run every ExecuTorch/LiteRT artifact of ``manifests`` (read by ExportManifest.read) at every thread count
    in the app; returns {app, artifacts: rows} (rows as rows_from_app gives them; a run the app could not do is a
    row whose measurement failed with the app's error)."""
    adb = Adb(*pick_device(device_arg))
    serial = adb.serial
    info = check_app(adb)
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
                for t in threads:
                    run_id = f"{session}-{entry['backend']}-{entry['recipe']}-t{t}"
                    started = parse_am_start(adb.check(*start_command(name, entry["backend"], entry["recipe"], t,
                                                                      warmup, runs, input_path, run_id)))
                    if not started["ok"]:
                        raise VeilError(f"--app: am start {BENCH_ACTIVITY} on {serial} failed: {started['error']}")
                    doc = wait_result(adb, run_id, poll_seconds, timeout_seconds)
                    if doc.get("status") != "ok":
                        rows.append({"file": entry["file"], "backend": entry["backend"], "recipe": entry["recipe"],
                                     "size_bytes": entry["size_bytes"], "tool": "veil-app", "status": "ran",
                                     "run_id": run_id, "measurements": [
                                         {"status": "failed", "threads": t,
                                          "error": doc.get("error") or "the app reported no error"}]})
                        continue
                    report.validate(doc)
                    rows += rows_from_app(doc)
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
