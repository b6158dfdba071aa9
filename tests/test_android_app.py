"""`veil bench --device android --app`: the adb conversation with the Veil demo app's benchmark mode, against
output samples (tests/fixtures/android/README.md says where each comes from) and a fake adb that answers with them;
the app's JSON (written by the Kotlin core's BenchSchema) through report.validate; the one-line errors. No phone is
attached here: what the app measures is not asserted, only that its document is read, checked and merged."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from toolkit.bench import android_app, report
from toolkit.bench.phones import Adb
from toolkit.cli import main as veil_main
from toolkit.errors import VeilError
from toolkit.exporting.manifest import ExportManifest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures" / "android"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


# ---- parsers ------------------------------------------------------------------------------------------------

def test_am_start_ok_and_timeout_both_mean_the_activity_started():
    ok = android_app.parse_am_start(fixture("am_start_ok.txt"))
    assert ok["ok"] and ok["status"] == "ok" and ok["launch_state"] == "COLD" and ok["total_ms"] == 412
    slow = android_app.parse_am_start(fixture("am_start_timeout.txt"))
    assert slow["ok"] and slow["status"] == "timeout" and slow["total_ms"] is None and slow["wait_ms"] == 11639


def test_am_start_error_is_a_failure_with_the_message():
    bad = android_app.parse_am_start(fixture("am_start_no_activity.txt"))
    assert not bad["ok"]
    assert "Activity class {veil.demo/veil.demo.BenchmarkActivity} does not exist" in bad["error"]
    assert not android_app.parse_am_start("")["ok"]


def test_dumpsys_package_tells_release_from_debug_builds():
    release = android_app.parse_package(fixture("dumpsys_package_release.txt"))
    assert release == {"found": True, "debuggable": False, "version": "0.1.0"}
    assert android_app.parse_package(fixture("dumpsys_package_debug.txt"))["debuggable"] is True
    assert android_app.parse_package(fixture("dumpsys_package_release.txt"), "other.app")["found"] is False


def test_the_apps_document_passes_the_bench_schema_and_becomes_device_rows():
    doc = json.loads(fixture("app_result.json"))
    report.validate(doc)
    rows = android_app.rows_from_app(doc)
    assert [(r["backend"], r["recipe"], r["tool"]) for r in rows] == [("executorch", "int8-static", "veil-app")]
    ok, failed = rows[0]["measurements"]
    assert ok["status"] == "ok" and ok["p50_ms"] <= ok["p90_ms"] <= ok["p99_ms"] and ok["runs"] == 12
    assert failed["status"] == "failed" and failed["error"]
    assert rows[0]["build_type"] == "release"


# ---- the conversation -----------------------------------------------------------------------------------------

def _fake_adb(tmp_path: Path, package_dump: str = "dumpsys_package_release.txt", installed: bool = True,
              result: str = "app_result.json", am_start: str = "am_start_ok.txt") -> tuple[Path, Path]:
    """An `adb` on PATH that answers like a phone with the app installed, logs every call (one JSON list per line)
    and writes each run's result only on the second poll, as a run in progress would."""
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    log = tmp_path / "adb-calls.jsonl"
    adb = bindir / "adb"
    adb.write_text(f"""#!{sys.executable}
import json, os, sys
args = sys.argv[1:]
with open({str(log)!r}, "a") as f:
    f.write(json.dumps(args) + "\\n")
if args[:2] == ["-s", "SER1"]:
    args = args[2:]
fx = {str(FIXTURES)!r}
def show(name):
    sys.stdout.write(open(os.path.join(fx, name)).read())
if args == ["devices"]:
    print("List of devices attached\\nSER1\\tdevice")
elif args[:2] == ["shell", "getprop"]:
    print("SM8650")
elif args[:3] == ["shell", "pm", "path"]:
    if {installed!r}:
        print("package:/data/app/~~Zq1xW8v3R2kP0aT5bC9dEg==/veil.demo-Lm4nOp7QrS8tUv2wXy6zAb==/base.apk")
    else:
        sys.exit(1)
elif args[:3] == ["shell", "dumpsys", "package"]:
    show({package_dump!r})
elif args[:3] == ["shell", "am", "start"]:
    show({am_start!r})
elif args[:2] == ["shell", "cat"]:
    path = args[2]
    run_id = os.path.basename(path)[:-len(".json")]
    seen = os.path.join({str(tmp_path)!r}, "polled-" + run_id)
    if not os.path.exists(seen):
        open(seen, "w").close()
        sys.stderr.write("cat: " + path + ": No such file or directory\\n")
        sys.exit(1)
    doc = json.load(open(os.path.join(fx, {result!r})))
    doc["run_id"] = run_id
    print(json.dumps(doc))
elif args[:2] == ["shell", "run-as"]:
    show("run_as_not_debuggable.txt")
    sys.exit(1)
""")
    adb.chmod(adb.stat().st_mode | stat.S_IEXEC)
    return bindir, log


def _export(tmp_path: Path) -> ExportManifest:
    """An export folder as push_export sees it (the files are pushed, not run, so their bytes do not matter: the
    manifest is taken as read, without ExportManifest.read's checks of the files)."""
    export = tmp_path / "k6-d16-n0.5-k6"
    export.mkdir()
    manifest = json.loads((Path(__file__).parents[1] / "android_demo/core/src/test/resources/export-manifest.json")
                          .read_text())
    for entry in manifest["artifacts"]:
        (export / entry["file"]).write_bytes(b"artifact")
    (export / "prefix-k4-int8-static.bpte").write_bytes(b"bundled program: not pushed")
    (export / "manifest.json").write_text(json.dumps(manifest))
    return ExportManifest(manifest, export)


def _calls(log: Path) -> list[list[str]]:
    return [json.loads(line)[2:] for line in log.read_text().splitlines() if json.loads(line)[:2] == ["-s", "SER1"]]


def _extras(start: list[str]) -> dict:
    """`am start ... --es K V --ei K V ...` -> {K: V}."""
    i = start.index("--es")
    return dict(zip(start[i + 1::3], start[i + 2::3]))


def test_app_bench_pushes_starts_polls_and_merges(tmp_path, monkeypatch):
    bindir, log = _fake_adb(tmp_path)
    monkeypatch.setenv("PATH", str(bindir) + os.pathsep + os.environ["PATH"])
    monkeypatch.delenv("ADB", raising=False)
    manifest = _export(tmp_path)
    chunk = np.linspace(-0.5, 0.5, 32000, dtype=np.float32).reshape(1, 32000)
    app = android_app.app_bench("android", [manifest], chunk, [1, 2], runs=50, warmup=5,
                                work_dir=tmp_path, poll_seconds=0.01)
    assert app["version"] == "0.1.0" and len(app["artifacts"]) == 4  # 2 artifacts x 2 thread counts
    calls = _calls(log)
    pushed = [c[2] for c in calls if c[0] == "push"]
    remote = "/sdcard/Android/data/veil.demo/files/exports/k6-d16-n0.5-k6"
    assert pushed[1:] == [f"{remote}/prefix-k4-int8-static.pte", f"{remote}/prefix-k4-int8-static.tflite",
                          f"{remote}/manifest.json"]
    assert pushed[0].startswith("/sdcard/Android/data/veil.demo/files/veil-bench/input-")
    raw = next(tmp_path.glob("input-*.f32"))
    assert np.array_equal(np.fromfile(raw, dtype="<f4"), chunk.ravel())
    starts = [c for c in calls if c[:3] == ["shell", "am", "start"]]
    assert len(starts) == 4
    first = starts[0]
    assert first[3:7] == ["-W", "-S", "-n", "veil.demo/.BenchmarkActivity"]
    extras = _extras(first)
    assert extras == {"export": "k6-d16-n0.5-k6", "backend": "executorch", "recipe": "int8-static", "threads": "1",
                      "warmup": "5", "iterations": "50", "input": pushed[0], "run_id": extras["run_id"]}
    assert [(_extras(c)["backend"], _extras(c)["threads"]) for c in starts] == [
        ("executorch", "1"), ("executorch", "2"), ("litert", "1"), ("litert", "2")]
    assert calls[-1] == ["shell", "am", "force-stop", "veil.demo"]
    # every run was polled until its JSON appeared, through the external files dir (run-as needs a debug build)
    assert sum(1 for c in calls if c[:2] == ["shell", "cat"]) == 8
    device = android_app.add_app_rows({"kind": "android", "artifacts": [{"file": "p.pte", "tool": "executor_runner",
                                                                         "measurements": []}]}, app, macs=10**9)
    assert [a["tool"] for a in device["artifacts"]] == ["executor_runner"] + ["veil-app"] * 4
    assert device["artifacts"][1]["measurements"][0]["gmacs"] > 0
    assert device["app"] == {"package": "veil.demo", "version": "0.1.0"}


def test_a_vq_exports_codebook_is_checked_and_pushed_before_its_manifest(tmp_path, monkeypatch):
    """The phone quantizes with the export's codebook (PayloadEncoder refuses to send anything else for a vq
    export), so push_export sends it with the artifacts, after checking it against the manifest."""
    import hashlib
    bindir, log = _fake_adb(tmp_path)
    monkeypatch.setenv("PATH", str(bindir) + os.pathsep + os.environ["PATH"])
    manifest = _export(tmp_path)
    book = np.arange(1 * 8 * 144, dtype="<f4").tobytes()
    (manifest.dir / "codebook.f32").write_bytes(book)
    manifest.data["bottleneck"] = {"dim": 144, "payload_codec": "vq", "groups": 1, "codes": 8, "codebook": {
        "file": "codebook.f32", "sha256": hashlib.sha256(book).hexdigest(), "shape": [1, 8, 144],
        "dtype": "float32", "byte_order": "little"}}
    adb = Adb(*android_app.pick_device("android:SER1"))
    android_app.push_export(adb, manifest)
    remote = "/sdcard/Android/data/veil.demo/files/exports/k6-d16-n0.5-k6"
    assert [c[2] for c in _calls(log) if c[0] == "push"][-2:] == [f"{remote}/codebook.f32", f"{remote}/manifest.json"]
    (manifest.dir / "codebook.f32").write_bytes(book[:-4])  # changed after export: never pushed
    with pytest.raises(VeilError, match="sha256 differs"):
        android_app.push_export(adb, manifest)


def _with_npu_and_core_ml_delegate(manifest: ExportManifest) -> tuple[list[dict], dict, dict]:
    cpu = [dict(e) for e in manifest.data["artifacts"]]
    recorded = json.loads((REPO / "tests/fixtures/npu/qualcomm-SM8650.json").read_text())["export_prefix_npu_section"]
    npu = dict(cpu[1], recipe="npu-qualcomm:SM8650", file="prefix-k4-npu-qualcomm-SM8650.tflite", npu=recorded)
    ane = dict(cpu[0], recipe="coreml-ane", file="prefix-k4-coreml-ane.pte")
    return cpu, npu, ane


def test_the_app_benchmarks_cpu_and_npu_artifacts_and_installs_every_android_one(tmp_path):
    """An ExecuTorch Core ML delegate runs only on Apple hardware: pushed (the app checks every ExecuTorch/LiteRT
    file of the export when it installs it), never started."""
    manifest = _export(tmp_path)
    cpu, npu, ane = _with_npu_and_core_ml_delegate(manifest)
    manifest.data["artifacts"] = cpu + [npu, ane]
    assert [e["file"] for e in android_app.app_artifacts(manifest)] == [e["file"] for e in cpu + [npu]]
    assert [e["file"] for e in android_app.pushed_artifacts(manifest)] == [e["file"] for e in cpu + [npu, ane]]


def test_an_npu_artifact_runs_in_the_app_with_the_pushed_npu_libraries(tmp_path, monkeypatch):
    """Recorded app output stands in for a phone with an NPU: what is checked is the conversation (libraries pushed,
    the npu_libs extra, a run id without ':') and the row's NPU fields; the accelerator is the one the app reports."""
    doc = json.loads(fixture("app_result.json"))
    doc["artifacts"][0].update(backend="litert", recipe="npu-qualcomm:SM8650",
                               file="prefix-k4-npu-qualcomm-SM8650.tflite")
    for m in doc["artifacts"][0]["measurements"]:
        m["runtime"] = {"engine": "litert", "api": "CompiledModel", "accelerator": "NPU", "soc": "SM8650", "threads": 1}
    (tmp_path / "npu.json").write_text(json.dumps(doc))
    bindir, log = _fake_adb(tmp_path, result=str(tmp_path / "npu.json"))
    monkeypatch.setenv("PATH", str(bindir) + os.pathsep + os.environ["PATH"])
    monkeypatch.delenv("ADB", raising=False)
    libs = tmp_path / "npu-libs"
    libs.mkdir()
    for name in ("libLiteRtDispatch_Qualcomm.so", "libQnnHtp.so"):
        (libs / name).write_bytes(b"\x7fELF")
    manifest = _export(tmp_path)
    _, npu, ane = _with_npu_and_core_ml_delegate(manifest)
    manifest.data["artifacts"] = [npu, ane]
    app = android_app.app_bench("android", [manifest], np.zeros((1, 32000), np.float32), [1], runs=50, warmup=0,
                                work_dir=tmp_path, poll_seconds=0.01, npu_libs=str(libs))
    calls = _calls(log)
    assert [c[2] for c in calls if c[0] == "push" and "npu-libs" in c[2]] == [
        f"{android_app.NPU_LIBS}/libLiteRtDispatch_Qualcomm.so", f"{android_app.NPU_LIBS}/libQnnHtp.so"]
    (start,) = [c for c in calls if c[:3] == ["shell", "am", "start"]]
    extras = _extras(start)
    assert extras["recipe"] == "npu-qualcomm:SM8650" and extras["npu_libs"] == android_app.NPU_LIBS
    assert ":" not in extras["run_id"]
    (row,) = app["artifacts"]
    assert (row["accelerator"], row["soc"], row["device_soc"], row["soc_matches"]) == ("npu", "SM8650", "SM8650", True)
    assert row["fallback_ops"] == {} and row["ops_on_npu"] == row["ops_total"] == 583 and row["tool"] == "veil-app"
    skipped = android_app.app_bench("android", [manifest], np.zeros((1, 32000), np.float32), [1], runs=50, warmup=0,
                                    work_dir=tmp_path, poll_seconds=0.01)
    assert skipped["artifacts"][0]["status"].startswith("skipped: pass --npu-libs")
    with pytest.raises(VeilError, match="--npu-libs is not a folder of libraries"):
        android_app.app_bench("android", [manifest], np.zeros((1, 32000), np.float32), [1], runs=50, warmup=0,
                              work_dir=tmp_path, poll_seconds=0.01, npu_libs=str(tmp_path / "missing"))


def test_a_run_the_app_refused_is_a_failed_row(tmp_path, monkeypatch):
    failure = {"format": "veil-bench/1", "status": "failed", "run_id": "x", "error": "LiteRT: native library "
               "libLiteRt.so failed to load (UnsatisfiedLinkError)", "device": {"app": {"build_type": "release"}}}
    (tmp_path / "failed.json").write_text(json.dumps(failure))
    bindir, _ = _fake_adb(tmp_path, result=str(tmp_path / "failed.json"))
    monkeypatch.setenv("PATH", str(bindir) + os.pathsep + os.environ["PATH"])
    monkeypatch.delenv("ADB", raising=False)
    manifest = _export(tmp_path)
    app = android_app.app_bench("android", [manifest], np.zeros((1, 32000), np.float32), [1], runs=50,
                                warmup=0, work_dir=tmp_path, poll_seconds=0.01)
    assert [r["measurements"][0]["status"] for r in app["artifacts"]] == ["failed", "failed"]
    assert "UnsatisfiedLinkError" in app["artifacts"][0]["measurements"][0]["error"]


@pytest.mark.parametrize("kind,want", [
    ("debug", r"is a debuggable \(debug\) build"),
    ("missing", "is not installed on SER1"),
    ("no-activity", "does not exist"),
])
def test_app_problems_are_one_clear_error(tmp_path, monkeypatch, kind, want):
    bindir, _ = _fake_adb(tmp_path, package_dump="dumpsys_package_debug.txt" if kind == "debug" else
                          "dumpsys_package_release.txt", installed=kind != "missing",
                          am_start="am_start_no_activity.txt" if kind == "no-activity" else "am_start_ok.txt")
    monkeypatch.setenv("PATH", str(bindir) + os.pathsep + os.environ["PATH"])
    monkeypatch.delenv("ADB", raising=False)
    manifest = _export(tmp_path)
    with pytest.raises(VeilError, match=want):
        android_app.app_bench("android", [manifest], np.zeros((1, 32000), np.float32), [1], 50, 0,
                              tmp_path, poll_seconds=0.01)


def test_a_result_that_never_comes_times_out_with_a_hint(tmp_path, monkeypatch):
    bindir, _ = _fake_adb(tmp_path)
    monkeypatch.setenv("PATH", str(bindir) + os.pathsep + os.environ["PATH"])
    monkeypatch.delenv("ADB", raising=False)
    adb = Adb("adb", "SER1")
    with pytest.raises(VeilError, match="no result from veil.demo/.BenchmarkActivity .* see `adb logcat"):
        android_app.wait_result(adb, "never", poll_seconds=0.01, timeout_seconds=0.0)


def test_cli_app_flag_needs_an_android_device_and_checks_the_app_first(tmp_path, monkeypatch, capsys):
    assert veil_main(["bench", str(tmp_path), "--app"]) == 2
    assert "--app goes with --device android" in capsys.readouterr().err
    bindir, _ = _fake_adb(tmp_path, package_dump="dumpsys_package_debug.txt")
    monkeypatch.setenv("PATH", str(bindir) + os.pathsep + os.environ["PATH"])
    monkeypatch.delenv("ADB", raising=False)
    # tmp_path holds no export: the debug build is refused before that (or any slow work) is looked at
    assert veil_main(["bench", str(tmp_path), "--device", "android", "--app"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "veil.demo on SER1 is a debuggable (debug) build" in err


def test_push_export_sh_checks_the_export_before_anything_is_pushed(tmp_path, monkeypatch):
    """android_demo/push_export.sh reads the export like every reader (ExportManifest.read): an artifact whose
    bytes differ from manifest.json is refused in one line, and adb is never asked to push anything."""
    bindir, log = _fake_adb(tmp_path)
    manifest = _export(tmp_path)  # its artifacts' bytes are not the exported ones
    env = {**os.environ, "PATH": str(bindir) + os.pathsep + os.environ["PATH"]}
    env.pop("ADB", None)
    run = subprocess.run(["bash", str(REPO / "android_demo" / "push_export.sh"), str(manifest.dir), "SER1"],
                         env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert run.stderr.startswith("push_export.sh: ") and "sha256 differs from manifest.json" in run.stderr
    assert not log.exists() or not any(c and c[0] == "push" for c in _calls(log))
