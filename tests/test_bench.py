"""`veil bench`: a short real run on a small model (schema-valid JSON, MD, PNG), the phone-runner output parsers
on real output samples of ExecuTorch's executor_runner, LiteRT's benchmark_model and XCTest performance tests
under xcodebuild, the Android plumbing with a fake adb, `--device ios --ios-log` end to end, and the one-line
no-device and bad-log errors. Speeds are never asserted."""
from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from toolkit.bench import phone_tools, ceiling, phones, report
from experiments.cut_points import privacy_by_layer, rejoin_privacy
from toolkit.cli import main as veil_main
from toolkit.exporting.prefix_export import ExportRequest, export_prefix
from toolkit.layer_range import parse_layer_range
from toolkit.model.asr import VeilModel, split
from toolkit.model.checkpoint import save_checkpoint
from toolkit.text.tokenizer import CharTokenizer

from tests.conftest import small_config

FIXTURES = Path(__file__).parent / "fixtures" / "bench"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


# ---- parsers on real output samples -------------------------------------------------------------------------

def test_executor_runner_1x_log_with_iterations():
    p = phone_tools.parse_executor_runner(fixture("executor_runner_1x_k1.txt"))
    assert p["ok"] and p["load_ms"] == pytest.approx(4463.268273)
    assert p["latencies_ms"] == [pytest.approx(241.944288)]
    assert p["executions"] == 1 and p["total_ms"] == pytest.approx(241.944288)
    m = phone_tools.measurement_from_tool(p, threads=1, warmup=0, chunk_seconds=2.0, macs=int(1e9))
    assert m["status"] == "ok" and m["p50_ms"] == pytest.approx(241.944288)
    assert m["rtf"] == pytest.approx(0.241944288 / 2.0)
    assert m["gmacs"] == pytest.approx(1.0 / 0.241944288)
    assert m["load_ms"] == pytest.approx(4463.268273)


def test_executor_runner_summary_line_and_planned_memory():
    p = phone_tools.parse_executor_runner(fixture("executor_runner_add_host.txt"))
    assert p["ok"] and p["latencies_ms"] == [] and p["load_ms"] is None
    assert p["executions"] == 1 and p["mean_ms"] == pytest.approx(0.691078)
    assert p["planned_buffer_bytes"] == 48
    m = phone_tools.measurement_from_tool(p, 1, 0, 2.0, None)
    assert m["latency_statistic"] == "mean" and m["mean_ms"] == pytest.approx(0.691078) and m["p50_ms"] is None


def test_executor_runner_pre_1_0_log_has_no_timing():
    p = phone_tools.parse_executor_runner(fixture("executor_runner_0x_resnet18.txt"))
    assert p["ok"] and p["mean_ms"] is None and p["latencies_ms"] == []
    assert p["planned_buffer_bytes"] == 64346944


def test_executor_runner_failure_is_not_a_pass():
    p = phone_tools.parse_executor_runner("E 00:00:00.1 executorch:executor_runner.cpp:300] Execution of method forward "
                                     "failed with status 0x12\n")
    assert not p["ok"] and "failed with status 0x12" in p["error"]
    assert phone_tools.measurement_from_tool(p, 1, 0, 2.0, None)["status"] == "failed"


def test_benchmark_model_android_with_memory():
    p = phone_tools.parse_benchmark_model(fixture("benchmark_model_android_tf42507.txt"))
    assert p["ok"] and p["threads"] == 4 and p["runs"] == 50
    assert p["mean_ms"] == pytest.approx(33.2094) and p["min_ms"] == pytest.approx(32.641)
    assert p["max_ms"] == pytest.approx(34.005) and p["std_ms"] == pytest.approx(0.450)
    assert p["init_ms"] == pytest.approx(0.855) and p["first_inference_ms"] == pytest.approx(49.060)
    assert p["warmup_mean_ms"] == pytest.approx(34.8251)
    assert p["memory_init_mb"] == 0 and p["memory_overall_mb"] == pytest.approx(12.8672)
    assert p["model_size_mb"] == pytest.approx(0.004448)
    m = phone_tools.measurement_from_tool(p, 4, 1, 2.0, None)
    assert m["latency_statistic"] == "mean" and m["rtf"] == pytest.approx(0.0332094 / 2)
    assert m["peak_rss_inference_bytes"] == int(12.8672 * 1024 * 1024)


def test_benchmark_model_android_single_thread():
    p = phone_tools.parse_benchmark_model(fixture("benchmark_model_android_gr802.txt"))
    assert p["ok"] and p["threads"] == 1 and p["runs"] == 1000
    assert p["mean_ms"] == pytest.approx(1.03966) and p["init_ms"] == pytest.approx(17.851)
    assert p["memory_overall_mb"] is None


def test_benchmark_model_old_summary_format():
    p = phone_tools.parse_benchmark_model(fixture("benchmark_model_android_old_yuenshome.txt"))
    assert p["ok"] and p["runs"] == 15
    assert p["mean_ms"] == pytest.approx(66.7676) and p["init_ms"] == pytest.approx(9.933)
    assert p["first_inference_ms"] == pytest.approx(127.425)


def test_benchmark_model_error_output():
    p = phone_tools.parse_benchmark_model("STARTING!\nERROR: Could not open 'x.tflite'.\nFailed to initialize the interpreter\n")
    assert not p["ok"] and "Failed" in p["error"]


# ---- XCTest (xcodebuild) logs ---------------------------------------------------------------------------------

def test_xcodebuild_log_from_an_iphone_classic_measure_block():
    p = phones.parse_xctest_log(fixture("xcodebuild_time_iphone_xs_max.txt"))
    assert p["ok"] and p["destination"] is None
    assert list(p["tests"]) == ["SpeedTestTests.CombineTests.testCombineLatestCreating",
                                "SpeedTestTests.CombineTests.testPublishSubjectCreating",
                                "SpeedTestTests.CombineTests.testPublishSubjectPumping"]
    t = p["tests"]["SpeedTestTests.CombineTests.testCombineLatestCreating"]
    assert t["status"] == "passed" and t["seconds"] == pytest.approx(3.484) and t["marker"] is None
    (metric,) = t["metrics"].values()
    assert metric["name"] == "Time" and metric["unit"] == "seconds" and metric["veil_unit"] == "ms"
    assert metric["average"] == pytest.approx(0.317) and metric["average_ms"] == pytest.approx(317.0)
    assert metric["rsd_percent"] == pytest.approx(6.035)
    assert metric["metric_id"] == "com.apple.XCTPerformanceMetric_WallClockTime"
    assert metric["values"][:2] == [pytest.approx(0.373770), pytest.approx(0.315254)] and len(metric["values"]) == 10
    assert metric["values_ms"][-1] == pytest.approx(308.311)
    m = phones.measurement_from_xctest(t, chunk_seconds=2.0, macs=int(1e9))
    assert m["status"] == "ok" and m["runs"] == 10 and m["latency_statistic"] == "p50"
    assert m["p50_ms"] == pytest.approx((309.422 + 310.991) / 2)  # median of the 10 values
    assert m["min_ms"] == pytest.approx(308.293) and m["max_ms"] == pytest.approx(373.770)
    assert m["mean_ms"] == pytest.approx(316.8024) and m["p50_ms"] <= m["p90_ms"] <= m["p99_ms"] <= m["max_ms"]
    assert m["rtf"] == pytest.approx(m["p50_ms"] / 1e3 / 2.0) and m["gmacs"] == pytest.approx(1e3 / m["p50_ms"])
    assert m["load_ms"] is None and m["first_inference_ms"] is None and m["peak_rss_inference_bytes"] is None
    assert m["threads"] is None and m["latency_metric"] == "Time, seconds" and m["rsd_percent"] == pytest.approx(6.035)
    pumping = p["tests"]["SpeedTestTests.CombineTests.testPublishSubjectPumping"]["metrics"]["Time"]
    assert pumping["average"] == pytest.approx(0.142) and pumping["values_ms"][2] == pytest.approx(134.096)


def test_xcodebuild_log_with_clock_and_memory_metrics():
    p = phones.parse_xctest_log(fixture("xcodebuild_clock_memory_ios_simulator.txt"))
    assert p["destination"] == "platform=iOS Simulator,name=iPhone 15,OS=latest"
    (name,) = p["tests"]  # the two tests without measurements are not listed
    assert name == "PulsumTests.LiveWaveformBufferTests.testWaveformPerfFeed30Seconds"
    metrics = p["tests"][name]["metrics"]
    assert list(metrics) == ["Memory Peak Physical", "Memory Physical", "Clock Monotonic Time"]
    peak, phys, clock = metrics.values()
    assert peak["unit"] == "kB" and peak["average_bytes"] == pytest.approx(55266424)
    assert peak["values_bytes"] == [pytest.approx(55266424)] * 5
    assert peak["metric_id"] == "com.apple.dt.XCTMetric_Memory.physical_peak"
    assert phys["average_bytes"] == 0 and phys["values_bytes"] == [0] * 5
    assert clock["unit"] == "s" and clock["average"] == 0.0 and clock["rsd_percent"] == pytest.approx(6.789)
    assert clock["values_ms"] == [pytest.approx(v) for v in (0.158, 0.150, 0.148, 0.178, 0.158)]
    m = phones.measurement_from_xctest(p["tests"][name], chunk_seconds=1.0, macs=None)
    # statistics come from the values: the printed average (3 decimals) reads 0.000 s
    assert m["runs"] == 5 and m["p50_ms"] == pytest.approx(0.158) and m["mean_ms"] == pytest.approx(0.1584)
    assert m["min_ms"] == pytest.approx(0.148) and m["max_ms"] == pytest.approx(0.178)
    assert m["peak_rss_inference_bytes"] == 55266424 and m["peak_rss_load_bytes"] is None
    assert m["latency_metric"] == "Clock Monotonic Time, s" and m["gmacs"] is None


def test_xctest_log_with_cpu_metrics_and_no_clock():
    p = phones.parse_xctest_log(fixture("xctest_swift_test_cpu_memory_macos.txt"))
    classic = p["tests"]["SpecificationKitTests.AnySpecificationPerformanceTests.testNestedCompositionPerformance"]
    assert classic["metrics"]["Time"]["values_ms"][0] == pytest.approx(2.907)
    assert phones.measurement_from_xctest(classic, 1.0, None)["p50_ms"] == pytest.approx((2.140 + 2.305) / 2)
    t = p["tests"]["SpecificationKitTests.AnySpecificationPerformanceTests.testWrappedSpecificationOverhead"]
    metrics = t["metrics"]
    assert list(metrics) == ["Memory Physical", "CPU Instructions Retired", "CPU Cycles", "CPU Time",
                             "Memory Peak Physical"]
    assert metrics["Memory Physical"]["values_bytes"] == [pytest.approx(v) for v in (16384, 0, 0, 0, 32768)]
    assert metrics["Memory Physical"]["rsd_percent"] == pytest.approx(133.333)
    assert metrics["CPU Time"]["values_ms"] == [pytest.approx(v) for v in (16.194, 14.182, 12.462, 10.895, 10.415)]
    kinst = metrics["CPU Instructions Retired"]
    assert kinst["unit"] == "kI" and "veil_unit" not in kinst and kinst["average"] == pytest.approx(308575.079)
    assert metrics["CPU Cycles"]["values"][0] == pytest.approx(46862.652)
    assert metrics["Memory Peak Physical"]["values_bytes"][-1] == pytest.approx(23200416)
    m = phones.measurement_from_xctest(t, 1.0, None)  # memory and CPU only: no latency to report
    assert m["status"] == "failed" and "no wall-clock metric" in m["error"] and "CPU Time" in m["error"]


def test_xctest_log_without_measurements():
    p = phones.parse_xctest_log("Test Case '-[A.B testC]' started.\nTest Case '-[A.B testC]' passed (0.001 seconds).\n"
                                "** TEST SUCCEEDED **\n")
    assert not p["ok"] and p["tests"] == {} and "no XCTest performance measurements" in p["error"]


def _template_log(test: str, artifact: str, units: str) -> str:
    """What Veil's XCTest template prints for one test case: its NSLog marker line, then XCTest's lines (the
    measured line is the real clock line of the simulator fixture, renamed to the template's test case)."""
    clock = next(ln for ln in fixture("xcodebuild_clock_memory_ios_simulator.txt").splitlines()
                 if "[Clock Monotonic Time, s]" in ln)
    clock = clock.replace("PulsumTests.LiveWaveformBufferTests testWaveformPerfFeed30Seconds",
                          f"VeilBenchTests.VeilPrefixBenchTests {test}")
    return (f"Test Case '-[VeilBenchTests.VeilPrefixBenchTests {test}]' started.\n"
            f"2026-01-21 09:50:53.852000+0100 VeilBench[812:40123] veil-bench: case={test} artifact={artifact} "
            f"compute_units={units} device=iPhone15,2 os=17.5.1 load_ms=41.250 first_inference_ms=9.875 "
            f"iterations=50\n{clock}\n"
            f"Test Case '-[VeilBenchTests.VeilPrefixBenchTests {test}]' passed (1.234 seconds).\n")


def test_ios_bench_matches_template_rows_to_artifacts(tmp_path):
    log = tmp_path / "ios-bench.log"
    log.write_text(_template_log("testPrefixAll", "p-int8-weights.mlpackage", "all")
                   + _template_log("testPrefixCPUOnly", "other.mlpackage", "cpuOnly"))
    arts = [({"backend": b, "recipe": r, "file": f, "size_bytes": n}, tmp_path / f)
            for b, r, f, n in (("coreml", "int8-weights", "p-int8-weights.mlpackage", 7),
                               ("coreml", "fp16", "p-fp16.mlpackage", 9), ("executorch", "fp32", "p.pte", 5))]
    out = phones.ios_bench(str(log), arts, chunk_seconds=1.0, macs=None)
    assert out["kind"] == "ios" and out["log"] == str(log) and out["model"] == "iPhone15,2"
    matched, other = out["artifacts"]
    assert matched["file"] == "p-int8-weights.mlpackage" and matched["recipe"] == "int8-weights"
    assert matched["artifact_matched"] and matched["size_bytes"] == 7 and matched["os"] == "17.5.1"
    assert matched["test"] == "VeilBenchTests.VeilPrefixBenchTests.testPrefixAll" and matched["tool"] == "xctest"
    (m,) = matched["measurements"]
    assert m["load_ms"] == pytest.approx(41.25) and m["first_inference_ms"] == pytest.approx(9.875)
    assert m["compute_units"] == "all" and m["p50_ms"] == pytest.approx(0.158)
    assert (matched["accelerator"], other["accelerator"]) == ("cpu+gpu+ane", "cpu")  # the compute units' schema field
    assert matched["fallback_ops"] is None  # Core ML names per-op units only in Xcode's performance report
    assert not other["artifact_matched"] and other["file"] == "other.mlpackage" and "not among" in other["note"]
    assert other["measurements"][0]["compute_units"] == "cpuOnly"
    # a log without markers (a test of one's own) goes to the export's only Core ML artifact, else unattributed
    plain = tmp_path / "plain.log"
    plain.write_text(fixture("xcodebuild_time_iphone_xs_max.txt"))
    rows = phones.ios_bench(str(plain), arts[1:], 2.0, None)["artifacts"]
    assert [r["file"] for r in rows] == ["p-fp16.mlpackage"] * 3 and all(r["artifact_matched"] for r in rows)
    rows = phones.ios_bench(str(plain), arts, 2.0, None)["artifacts"]
    assert [r["file"] for r in rows] == [None] * 3 and "not attributed" in rows[0]["note"]


# ---- devices -------------------------------------------------------------------------------------------------

def _fake_adb(tmp_path: Path, devices: str) -> Path:
    """An `adb` on PATH that lists ``devices`` and answers shell commands with the real output samples."""
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    adb = bindir / "adb"
    adb.write_text(f"""#!{sys.executable}
import sys
args = sys.argv[1:]
if args[:2] == ["-s", "SER1"]:
    args = args[2:]
if args == ["devices"]:
    print("List of devices attached")
    print({devices!r}, end="")
elif args[:2] == ["shell", "getprop"]:
    print({{"ro.product.model": "Pixel Fake", "ro.soc.model": "SM8650"}}.get(args[2], "arm64-v8a"))
elif args and args[0] == "shell" and "benchmark_litert_model" in " ".join(args):
    print(open({str(FIXTURES / 'benchmark_litert_model_cpu_host.txt')!r}).read())
elif args and args[0] == "shell" and "executor_runner" in " ".join(args):
    print(open({str(FIXTURES / 'executor_runner_1x_k1.txt')!r}).read())
elif args and args[0] == "shell" and "benchmark_model" in " ".join(args):
    print(open({str(FIXTURES / 'benchmark_model_android_tf42507.txt')!r}).read())
""")
    adb.chmod(adb.stat().st_mode | stat.S_IEXEC)
    return bindir


def test_no_adb_is_a_no_device_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("ADB", raising=False)
    assert veil_main(["bench", str(tmp_path), "--device", "android"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("veil bench: no-device: adb not found") and "\n" not in err


def test_adb_without_device_is_a_no_device_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(_fake_adb(tmp_path, "\n")))
    monkeypatch.delenv("ADB", raising=False)
    assert veil_main(["bench", str(tmp_path), "--device", "android"]) == 2
    assert "no-device: adb lists no attached Android device" in capsys.readouterr().err
    assert veil_main(["bench", str(tmp_path), "--device", "android:OTHER"]) == 2
    assert "no-device: Android device 'OTHER' is not attached" in capsys.readouterr().err


def test_ios_off_macos_is_a_no_device_error(tmp_path, capsys):
    if sys.platform == "darwin":
        pytest.skip("on macOS --device ios looks for a real device")
    assert veil_main(["bench", str(tmp_path), "--device", "ios"]) == 2
    assert "no-device: --device ios needs macOS" in capsys.readouterr().err


def test_ios_on_macos_without_log_names_the_xcodebuild_command(tmp_path, monkeypatch, capsys):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    xcrun = bindir / "xcrun"
    xcrun.write_text("#!/bin/sh\nexit 0\n")
    xcrun.chmod(0o755)
    monkeypatch.setenv("PATH", str(bindir))
    monkeypatch.setattr(phones.sys, "platform", "darwin")
    assert veil_main(["bench", str(tmp_path), "--device", "ios"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "no-device" not in err
    assert "xcodebuild test -project ios_demo/VeilDemo/VeilDemo.xcodeproj" in err
    assert "-destination 'platform=iOS,id=<UDID>'" in err
    assert "VeilPrefixBenchTests.swift" in err and "--ios-log ios-bench.log" in err


def test_bad_ios_log_is_a_one_line_error(tmp_path, capsys):
    empty = tmp_path / "empty.log"
    empty.write_text("Build succeeded\n** TEST SUCCEEDED **\n")
    binary = tmp_path / "binary.log"
    binary.write_bytes(bytes(range(256)) * 4)
    for bad, want in ((empty, "no XCTest performance measurements"), (binary, "no XCTest performance measurements"),
                      (tmp_path / "missing.log", "cannot read the --ios-log file"),
                      (tmp_path, "cannot read the --ios-log file")):
        # fails before any slow work: tmp_path holds no export (that error would come later)
        assert veil_main(["bench", str(tmp_path), "--device", "ios", "--ios-log", str(bad)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"veil bench: {bad}: {want}") and "\n" not in err and "Traceback" not in err
    assert veil_main(["bench", str(tmp_path), "--ios-log", str(empty)]) == 2
    assert "--ios-log goes with --device ios" in capsys.readouterr().err


def test_android_plumbing_with_fake_adb(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(_fake_adb(tmp_path, "SER1\tdevice\n")) + os.pathsep + os.environ["PATH"])
    monkeypatch.delenv("ADB", raising=False)
    runner, bm = tmp_path / "executor_runner", tmp_path / "benchmark_model"
    runner.write_bytes(b"\x7fELF")
    bm.write_bytes(b"\x7fELF")
    arts = []
    for backend, name in (("executorch", "p.pte"), ("litert", "p.tflite"), ("coreml", "p.mlpackage")):
        (tmp_path / name).write_bytes(b"x")
        arts.append(({"backend": backend, "recipe": "int8-static", "file": name, "size_bytes": 1}, tmp_path / name))
    (tmp_path / "p-ane.pte").write_bytes(b"x")  # ExecuTorch's Core ML delegate: an Apple artifact, listed, not run
    arts.append(({"backend": "executorch", "recipe": "coreml-ane", "file": "p-ane.pte", "size_bytes": 1},
                 tmp_path / "p-ane.pte"))
    out = phones.android_bench("android", arts, np.zeros((1, 16), np.float32), [1, 2], runs=50, warmup=0,
                               tools={"executorch": str(runner), "litert": str(bm)}, chunk_seconds=2.0, macs=None,
                               work_dir=tmp_path)
    assert out["serial"] == "SER1" and out["model"] == "Pixel Fake" and out["abi"] == "arm64-v8a"
    assert [a["backend"] for a in out["artifacts"]] == ["executorch", "litert", "executorch"]
    et, lite, ane = out["artifacts"]
    assert ane["status"] == "skipped: runs only on iOS/macOS (its Core ML delegate)" and ane["measurements"] == []
    assert "| p-ane.pte | — | — | skipped: runs only on iOS/macOS (its Core ML delegate) |" in report.android_lines(out)[-1]
    assert [m["threads"] for m in et["measurements"]] == [1, 2]
    assert et["measurements"][0]["p50_ms"] == pytest.approx(241.944288)
    assert "--cpu_threads=2" in et["measurements"][1]["command"]
    assert lite["measurements"][0]["mean_ms"] == pytest.approx(33.2094)
    assert "--num_threads=1" in lite["measurements"][0]["command"]
    skipped = phones.android_bench("android", arts[:1], np.zeros((1, 16), np.float32), [1], 50, 0, {}, 2.0,
                                   None, tmp_path)
    assert skipped["artifacts"][0]["status"].startswith("skipped: pass --executor-runner")


def test_a_new_phone_tool_is_one_registry_entry(tmp_path, monkeypatch, capsys):
    """A fake runner kind, added in one place, is a `veil bench` flag, runs over adb, and is a tool name the
    report schema accepts (and only registered tools are)."""
    fake = phone_tools.PhoneTool(
        "fake", "fake_runner", lambda name, t, warmup, runs: f"cd {phone_tools.DEVICE_DIR} && ./fake_runner {name} {t}",
        lambda text: {"tool": "fake_runner", "ok": "mean=" in text, "error": None,
                      "mean_ms": float(text.split("mean=")[1].split()[0]) if "mean=" in text else None},
        lambda parsed, warmup: {"mean_ms": parsed["mean_ms"], "runs": 1}, "a runner made up by this test")
    monkeypatch.setitem(phone_tools.PHONE_TOOLS, "fake", fake)
    monkeypatch.setattr(phones, "artifact_kind", lambda entry: "fake")
    with pytest.raises(SystemExit):
        veil_main(["bench", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "fake = a runner made up by this test" in help_text and "--fake-runner PATH" in help_text
    adb = tmp_path / "bin"
    adb.mkdir()
    (adb / "adb").write_text("#!/bin/sh\ncase \"$*\" in *devices*) printf 'List of devices attached\\nS1\\tdevice\\n';; "
                             "*fake_runner*) echo 'mean=12.5 ms';; *getprop*) echo 'Pixel Fake';; esac\n")
    (adb / "adb").chmod(0o755)
    monkeypatch.setenv("PATH", str(adb) + os.pathsep + os.environ["PATH"])
    monkeypatch.delenv("ADB", raising=False)
    binary, art = tmp_path / "fake_runner", tmp_path / "p.bin"
    binary.write_bytes(b"\x7fELF")
    art.write_bytes(b"x")
    out = phones.android_bench("android", [({"backend": "executorch", "recipe": "fp32", "file": "p.bin",
                                             "size_bytes": 1}, art)], np.zeros((1, 16), np.float32), [1], 5, 0,
                               {"fake": str(binary)}, 2.0, None, tmp_path)
    (row,) = out["artifacts"]
    assert row["tool"] == "fake_runner" and row["measurements"][0]["mean_ms"] == 12.5
    doc = json.loads((Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "2026-11-26-vm.json").read_text())
    doc["device"] = out
    report.validate(doc)
    monkeypatch.delitem(phone_tools.PHONE_TOOLS, "fake")
    with pytest.raises(report.SchemaError, match="'fake_runner' is no known phone tool"):
        report.validate(doc)


def test_benchmark_litert_model_results_and_its_failure_without_an_npu():
    ok = phone_tools.parse_benchmark_litert_model(fixture("benchmark_litert_model_cpu_host.txt"))
    assert ok["ok"] and ok["runs"] == 5 and ok["fully_accelerated"] is True
    assert (ok["init_ms"], ok["first_inference_ms"], ok["mean_ms"], ok["median_ms"]) == (48.74, 45.11, 31.86, 32.04)
    m = phone_tools.measurement_from_tool(ok, 1, 2, 2.0, None)
    assert m["status"] == "ok" and m["p50_ms"] == 32.04 and m["latency_statistic"] == "p50"
    assert m["rtf"] == pytest.approx(0.03204 / 2.0) and m["fully_accelerated"] is True
    failed = phone_tools.parse_benchmark_litert_model(fixture("benchmark_litert_model_npu_unavailable_host.txt"))
    assert not failed["ok"] and "Failed to allocate tensors" in failed["error"]
    assert phone_tools.measurement_from_tool(failed, 1, 2, 2.0, None)["status"] == "failed"


def test_android_npu_artifact_runs_through_the_compiled_model_benchmark(tmp_path, monkeypatch):
    """An NPU artifact goes to LiteRT's CompiledModel benchmark with the NPU accelerator and the phone's vendor
    libraries; the row records accelerator, SoCs and the compiler's CPU fallback ops (recorded output: no NPU)."""
    monkeypatch.setenv("PATH", str(_fake_adb(tmp_path, "SER1\tdevice\n")) + os.pathsep + os.environ["PATH"])
    monkeypatch.delenv("ADB", raising=False)
    tool, libs = tmp_path / "benchmark_litert_model", tmp_path / "npu-libs"
    tool.write_bytes(b"\x7fELF")
    libs.mkdir()
    (libs / "libLiteRtDispatch_Qualcomm.so").write_bytes(b"\x7fELF")
    (tmp_path / "p.tflite").write_bytes(b"x")
    recorded = json.loads((FIXTURES.parent / "npu" / "qualcomm-SM8650.json").read_text())
    entry = {"backend": "litert", "recipe": "npu-qualcomm:SM8650", "file": "p.tflite", "size_bytes": 1,
             "npu": recorded["export_prefix_npu_section"]}
    arts = [(entry, tmp_path / "p.tflite")]
    out = phones.android_bench("android", arts, np.zeros((1, 16), np.float32), [1], runs=5, warmup=2,
                               tools={"litert-npu": str(tool)}, chunk_seconds=2.0, macs=None,
                               work_dir=tmp_path, npu_libs=str(libs))
    (row,) = out["artifacts"]
    assert out["soc"] == "SM8650" and row["tool"] == "benchmark_litert_model" and row["status"] == "ran"
    assert (row["accelerator"], row["soc"], row["device_soc"], row["soc_matches"]) == ("npu", "SM8650", "SM8650", True)
    assert row["fallback_ops"] == {} and row["ops_on_npu"] == row["ops_total"] == 583 and row["partitions"] == 1
    (m,) = row["measurements"]
    assert m["p50_ms"] == 32.04 and m["fully_accelerated"] is True
    assert "--use_npu=true" in m["command"] and "--dispatch_library_path=npu" in m["command"]
    assert "ADSP_LIBRARY_PATH=npu" in m["command"]
    table = "\n".join(report.android_lines(out))
    assert "SoC SM8650" in table and "| p.tflite | benchmark_litert_model | npu (SM8650) | 1 |" in table
    no_libs = phones.android_bench("android", arts, np.zeros((1, 16), np.float32), [1], 5, 2,
                                   {"litert-npu": str(tool)}, 2.0, None, tmp_path)
    assert no_libs["artifacts"][0]["status"].startswith("skipped: pass --npu-libs")
    no_tool = phones.android_bench("android", arts, np.zeros((1, 16), np.float32), [1], 5, 2, {}, 2.0, None,
                                   tmp_path)
    assert no_tool["artifacts"][0]["status"].startswith("skipped: pass --benchmark-litert-model")


# ---- the real thing, small ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("bench")
    torch.manual_seed(0)
    model = VeilModel(small_config())
    with torch.no_grad():
        model.frontend.feat_mean.fill_(-6.0)
        model.frontend.feat_std.fill_(3.0)
    return save_checkpoint(work / "small.safetensors", model, CharTokenizer(), speakers=list("abcd"), provenance={})


@pytest.fixture(scope="module")
def small_export(small_checkpoint, corpus) -> Path:
    out = small_checkpoint.parent / "export"
    export_prefix(ExportRequest(checkpoint=small_checkpoint, target="android",
                                recipes=["executorch=fp32", "litert=int8-dynamic"], out=out, corpus=corpus))
    return out


@pytest.fixture(scope="module")
def ios_export(small_checkpoint, corpus) -> Path:
    """A Core ML-only export: with --no-baselines nothing runs on the host, so an --ios-log bench is cheap."""
    out = small_checkpoint.parent / "export-ios"
    export_prefix(ExportRequest(checkpoint=small_checkpoint, target="ios", recipes=["coreml=fp16"], out=out,
                                corpus=corpus))
    return out


@pytest.fixture(scope="module")
def bench_run(small_export, corpus, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bench-run")
    out = tmp / "results"
    rc = veil_main(["bench", str(small_export), "--threads", "1", "--runs", "5", "--warmup", "1", "--quick",
                    "--payload-utts", "2", "--ceiling", "none", "--corpus", str(corpus), "--out", str(out),
                    "--name", "small", "--cache-dir", str(tmp / "cache"), "--profile"])
    assert rc == 0
    return json.loads((out / "small.json").read_text()), out


def test_short_bench_run_gives_schema_valid_json(bench_run):
    doc, out = bench_run
    report.validate(doc)
    assert (out / "small.md").read_text().startswith("# Veil benchmark")
    assert (out / "small.png").read_bytes()[:4] == b"\x89PNG"
    names = [a["name"] for a in doc["artifacts"]]
    assert names == ["torch eager fp32", "onnxruntime fp32", "onnxruntime int8-static", "executorch fp32",
                     "litert int8-dynamic"]
    for a in doc["artifacts"]:
        (m,) = a["measurements"]
        assert m["status"] == "ok", (a["name"], m)
        assert m["runs"] == 5 and m["output_finite"] and m["p50_ms"] > 0 and m["load_ms"] > 0
        assert m["rtf"] == pytest.approx(m["p50_ms"] / 1e3 / 1.0)  # 16000-sample chunks = 1 s
        assert m["peak_rss_inference_bytes"] >= 0 and a["size_bytes"] > 0
    assert doc["artifacts"][3]["measurements"][0]["runtime_threads"]["xnnpack_threadpool"] == 1
    assert doc["prefix"]["macs_per_chunk"] > 0
    assert set(doc["payload"]["codecs"]) == {"fp32", "fp16", "int8"}
    assert doc["payload"]["codecs"]["fp32"]["dwer"] == 0
    kbps = {c: v["kB_per_second"] for c, v in doc["payload"]["codecs"].items()}
    assert kbps["int8"] < kbps["fp16"] < kbps["fp32"]
    assert doc["targets"]["speed"]["status"] in ("met", "not met", "partly met")
    assert doc["command"].startswith("veil bench ") and "--quick" in doc["command"]
    assert doc["settings"]["quick"] is True


@pytest.mark.parametrize("log", ["xcodebuild_time_iphone_xs_max.txt", "xcodebuild_clock_memory_ios_simulator.txt"])
def test_bench_with_ios_log_writes_the_device_results(ios_export, corpus, tmp_path, log):
    out = tmp_path / "results"
    rc = veil_main(["bench", str(ios_export), "--no-baselines", "--ceiling", "none", "--threads", "1", "--runs", "1",
                    "--rounds", "1", "--warmup", "0", "--quick", "--payload-utts", "1", "--no-plots",
                    "--corpus", str(corpus), "--out", str(out), "--name", "ios",
                    "--device", "ios", "--ios-log", str(FIXTURES / log)])
    assert rc == 0
    doc = json.loads((out / "ios.json").read_text())
    report.validate(doc)
    (coreml,) = doc["artifacts"]
    assert coreml["backend"] == "coreml" and coreml["status"] == "needs-macos"
    device = doc["device"]
    assert device["kind"] == "ios" and device["log"] == str(FIXTURES / log)
    assert f"--ios-log {FIXTURES / log}" in doc["command"]
    parsed = phones.parse_xctest_log(fixture(log))
    assert [r["test"] for r in device["artifacts"]] == list(parsed["tests"])
    for row in device["artifacts"]:  # no marker: the export's only Core ML artifact
        assert row["file"] == Path(coreml["file"]).name and row["recipe"] == "fp16" and row["artifact_matched"]
        (m,) = row["measurements"]
        assert m["status"] == "ok" and m["runs"] > 0 and m["p50_ms"] > 0
        assert m["rtf"] == pytest.approx(m["p50_ms"] / 1e3 / doc["chunk"]["seconds"])
        assert m["gmacs"] == pytest.approx(doc["prefix"]["macs_per_chunk"] / (m["p50_ms"] / 1e3) / 1e9)
    first = device["artifacts"][0]["measurements"][0]
    if log.startswith("xcodebuild_time"):
        assert first["p50_ms"] == pytest.approx((309.422 + 310.991) / 2) and device["destination"] is None
    else:
        assert first["peak_rss_inference_bytes"] == 55266424 and device["destination"].startswith("platform=iOS Sim")
    md = (out / "ios.md").read_text()
    assert "## Phone (iOS)" in md and device["artifacts"][0]["test"] in md


def test_onnxruntime_int8_baseline_keeps_the_frontend_float_and_reports_its_parity(bench_run):
    doc, out = bench_run
    fp32, int8 = (next(a for a in doc["artifacts"] if a["name"] == n)
                  for n in ("onnxruntime fp32", "onnxruntime int8-static"))
    assert int8["dtype"] == "int8" and int8["size_bytes"] < fp32["size_bytes"]  # d=64: the float frontend dominates
    assert int8["quantization"]["float_nodes"] >= 10 and int8["quantization"]["calibration_chunks"] > 0
    assert fp32["parity"]["snr_db"] > 80 and fp32["parity"]["dwer"] == 0  # same float model, other runtime
    assert 12 < int8["parity"]["snr_db"] < fp32["parity"]["snr_db"], int8["parity"]
    assert "vs_onnxruntime_int8" in doc["targets"] and "Parity of the baselines" in (out / "small.md").read_text()


def test_profile_gives_a_per_operator_table_of_every_artifact(bench_run):
    doc, out = bench_run
    et = next(a for a in doc["artifacts"] if a["backend"] == "executorch")
    prof = et["profile"]
    assert prof["status"] == "ok" and prof["operator_ms_total"] > 0
    assert sum(o["share"] for o in prof["operators"]) == pytest.approx(1.0)
    assert all(o["delegated"] for o in prof["operators"]), prof["operators"]  # one XNNPACK graph, nothing outside
    assert any("Fully Connected" in o["operator"] for o in prof["operators"])
    assert et["delegation"]["delegated_subgraphs"] == 1
    lite = next(a for a in doc["artifacts"] if a["backend"] == "litert")
    assert lite["profile"]["status"] == "no-op-profiler" and lite["profile"]["ops"]["ops"] > 0
    assert "## Per-operator profile" in (out / "small.md").read_text()


def test_schema_rejects_broken_documents(bench_run):
    good, _ = bench_run
    bad = json.loads(json.dumps(good))
    bad["artifacts"][0]["measurements"][0]["p99_ms"] = -1.0
    with pytest.raises(report.SchemaError, match="percentiles"):
        report.validate(bad)
    bad = json.loads(json.dumps(good))
    del bad["payload"]["codecs"]["int8"]["dwer"]
    with pytest.raises(report.SchemaError, match="dwer"):
        report.validate(bad)
    bad = json.loads(json.dumps(good))
    bad["artifacts"][1]["measurements"][0]["runs"] = "many"
    with pytest.raises(report.SchemaError, match="runs"):
        report.validate(bad)


def test_too_few_runs_and_bad_dirs_are_one_line_errors(tmp_path, capsys):
    assert veil_main(["bench", str(tmp_path), "--runs", "10"]) == 2
    assert "at least 50 timed runs" in capsys.readouterr().err
    assert veil_main(["bench", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip()
    assert "no manifest.json" in err and "\n" not in err
    assert veil_main(["bench", "--sweep-split", "1..2"]) == 2
    assert "--sweep-split needs --recipe" in capsys.readouterr().err
    assert veil_main(["bench", "--sweep-split", "3..1", "--recipe", "fp32"]) == 2
    assert "range 3..1 runs backwards" in capsys.readouterr().err
    assert veil_main(["bench", "--sweep-split", "1..9", "--recipe", "fp32"]) == 2
    assert "--sweep-split 1..9: [7, 8, 9] outside 1..6" in capsys.readouterr().err


def test_ceiling_peaks_and_prefix_macs(small_model):
    prefix = split(small_model)[0]
    macs = ceiling.prefix_macs(prefix, small_model.cfg.chunk_samples)
    assert macs["macs_per_chunk"] == sum(macs["per_module"][k] for k in ("frontend", "subsampling", "blocks.0"))
    rows = [{"status": "ok", "threads": 1, "dtype": "fp32", "gmacs": 10.0, "name": "a"},
            {"status": "ok", "threads": 1, "dtype": "fp32", "gmacs": 30.0, "name": "b"},
            {"status": "failed", "threads": 1, "dtype": "int8", "name": "c"},
            {"status": "ok", "threads": 2, "dtype": "int8", "gmacs": 5.0, "name": "d"}]
    assert ceiling.peaks(rows) == {"fp32": {"1": {"gmacs": 30.0, "kernel": "b"}},
                                   "int8": {"2": {"gmacs": 5.0, "kernel": "d"}}}


def test_sweep_joins_recorded_privacy_by_checkpoint_hash(tmp_path):
    layer = {"closed_lr": {"accuracy": 95.0, "chance": 3.125}, "closed_mlp": {"accuracy": 94.0},
             "open_xvector": {"eer": 6.0}}
    (tmp_path / "privacy-a.json").write_text(json.dumps({"models": {"m": {"sha256": "abc", "layers": {"3": layer}},
                                                                    "o": {"sha256": "zzz", "layers": {"1": layer}}}}))
    (tmp_path / "privacy-attempts.json").write_text("[]")  # other JSON shapes in the folder are skipped
    found, source = privacy_by_layer("abc", tmp_path)
    assert found == {3: {"closed_lr_accuracy": 95.0, "closed_mlp_accuracy": 94.0, "xvector_eer": 6.0, "chance": 3.125}}
    assert source.endswith("privacy-a.json")
    assert privacy_by_layer("nope", tmp_path) == ({}, None)
    assert parse_layer_range("1..6", 1, 6) == [1, 2, 3, 4, 5, 6] and parse_layer_range("3", 1, 6) == [3]
    assert parse_layer_range("all", 1, 3) == [1, 2, 3] and parse_layer_range("0,2..3", 0, 6) == [0, 2, 3]


def test_rejoin_privacy_rewrites_a_recorded_sweep(tmp_path, capsys):
    """Privacy results recorded after a sweep join its rows, and the MD is re-rendered from the JSON."""
    recorded = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "2026-11-26-vm-sweep-executorch-int8-static.json"
    doc = json.loads(recorded.read_text())
    for r in doc["rows"]:
        r["privacy"] = None
    sweep = tmp_path / "s.json"
    sweep.write_text(json.dumps(doc))
    rejoin_privacy(sweep, plots=False)
    assert json.loads(sweep.read_text())["privacy"]["status"] == "pending"
    layers = {str(k): {"closed_lr": {"accuracy": 90.0 - k, "chance": 3.125}, "closed_mlp": {"accuracy": 80.0},
                       "open_xvector": {"eer": 5.0 + k}} for k in range(1, 7)}
    (tmp_path / "privacy-x.json").write_text(json.dumps(
        {"models": {"anonymized": {"sha256": doc["checkpoint"]["sha256"], "layers": layers}}}))
    rejoin_privacy(sweep, plots=False)
    out = json.loads(sweep.read_text())
    assert out["privacy"]["status"] == "joined" and out["privacy"]["layers"] == [1, 2, 3, 4, 5, 6]
    assert {r["split_layer"]: r["privacy"]["xvector_eer"] for r in out["rows"]}[4] == 9.0
    assert "| 4 | 86.0 |" in (tmp_path / "s.md").read_text()
    (tmp_path / "bad.json").write_text(json.dumps({"rows": []}))
    assert veil_main(["bench", "--rejoin-privacy", str(tmp_path / "bad.json")]) == 2
    assert "not a `veil bench --sweep-split` result" in capsys.readouterr().err
