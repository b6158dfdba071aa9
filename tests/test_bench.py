"""`veil bench`: a short real run on a small model (schema-valid JSON, MD, PNG), the phone-runner output parsers
on real output samples of ExecuTorch's executor_runner and LiteRT's benchmark_model, the Android plumbing
with a fake adb, and the one-line no-device error. Speeds are never asserted."""
from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from toolkit.bench import ceiling, phones, report
from toolkit.cli import DEFAULT_CORPUS
from toolkit.cli import main as veil_main

from tests.conftest import small_config

FIXTURES = Path(__file__).parent / "fixtures" / "bench"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


# ---- parsers on real output samples -------------------------------------------------------------------------

def test_executor_runner_1x_log_with_iterations():
    p = phones.parse_executor_runner(fixture("executor_runner_1x_k1.txt"))
    assert p["ok"] and p["load_ms"] == pytest.approx(4463.268273)
    assert p["latencies_ms"] == [pytest.approx(241.944288)]
    assert p["executions"] == 1 and p["total_ms"] == pytest.approx(241.944288)
    m = phones.measurement_from_tool(p, threads=1, warmup=0, chunk_seconds=2.0, macs=int(1e9))
    assert m["status"] == "ok" and m["p50_ms"] == pytest.approx(241.944288)
    assert m["rtf"] == pytest.approx(0.241944288 / 2.0)
    assert m["gmacs"] == pytest.approx(1.0 / 0.241944288)
    assert m["load_ms"] == pytest.approx(4463.268273)


def test_executor_runner_summary_line_and_planned_memory():
    p = phones.parse_executor_runner(fixture("executor_runner_add_host.txt"))
    assert p["ok"] and p["latencies_ms"] == [] and p["load_ms"] is None
    assert p["executions"] == 1 and p["mean_ms"] == pytest.approx(0.691078)
    assert p["planned_buffer_bytes"] == 48
    m = phones.measurement_from_tool(p, 1, 0, 2.0, None)
    assert m["latency_statistic"] == "mean" and m["mean_ms"] == pytest.approx(0.691078) and m["p50_ms"] is None


def test_executor_runner_pre_1_0_log_has_no_timing():
    p = phones.parse_executor_runner(fixture("executor_runner_0x_resnet18.txt"))
    assert p["ok"] and p["mean_ms"] is None and p["latencies_ms"] == []
    assert p["planned_buffer_bytes"] == 64346944


def test_executor_runner_failure_is_not_a_pass():
    p = phones.parse_executor_runner("E 00:00:00.1 executorch:executor_runner.cpp:300] Execution of method forward "
                                     "failed with status 0x12\n")
    assert not p["ok"] and "failed with status 0x12" in p["error"]
    assert phones.measurement_from_tool(p, 1, 0, 2.0, None)["status"] == "failed"


def test_benchmark_model_android_with_memory():
    p = phones.parse_benchmark_model(fixture("benchmark_model_android_tf42507.txt"))
    assert p["ok"] and p["threads"] == 4 and p["runs"] == 50
    assert p["mean_ms"] == pytest.approx(33.2094) and p["min_ms"] == pytest.approx(32.641)
    assert p["max_ms"] == pytest.approx(34.005) and p["std_ms"] == pytest.approx(0.450)
    assert p["init_ms"] == pytest.approx(0.855) and p["first_inference_ms"] == pytest.approx(49.060)
    assert p["warmup_mean_ms"] == pytest.approx(34.8251)
    assert p["memory_init_mb"] == 0 and p["memory_overall_mb"] == pytest.approx(12.8672)
    assert p["model_size_mb"] == pytest.approx(0.004448)
    m = phones.measurement_from_tool(p, 4, 1, 2.0, None)
    assert m["latency_statistic"] == "mean" and m["rtf"] == pytest.approx(0.0332094 / 2)
    assert m["peak_rss_inference_bytes"] == int(12.8672 * 1024 * 1024)


def test_benchmark_model_android_single_thread():
    p = phones.parse_benchmark_model(fixture("benchmark_model_android_gr802.txt"))
    assert p["ok"] and p["threads"] == 1 and p["runs"] == 1000
    assert p["mean_ms"] == pytest.approx(1.03966) and p["init_ms"] == pytest.approx(17.851)
    assert p["memory_overall_mb"] is None


def test_benchmark_model_old_summary_format():
    p = phones.parse_benchmark_model(fixture("benchmark_model_android_old_yuenshome.txt"))
    assert p["ok"] and p["runs"] == 15
    assert p["mean_ms"] == pytest.approx(66.7676) and p["init_ms"] == pytest.approx(9.933)
    assert p["first_inference_ms"] == pytest.approx(127.425)


def test_benchmark_model_error_output():
    p = phones.parse_benchmark_model("STARTING!\nERROR: Could not open 'x.tflite'.\nFailed to initialize the interpreter\n")
    assert not p["ok"] and "Failed" in p["error"]


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
    print("Pixel Fake" if args[2] == "ro.product.model" else "arm64-v8a")
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
    out = phones.android_bench("android", arts, np.zeros((1, 16), np.float32), [1, 2], runs=50, warmup=0,
                               executor_runner=str(runner), benchmark_model=str(bm), chunk_seconds=2.0, macs=None,
                               work_dir=tmp_path)
    assert out["serial"] == "SER1" and out["model"] == "Pixel Fake" and out["abi"] == "arm64-v8a"
    assert [a["backend"] for a in out["artifacts"]] == ["executorch", "litert"]
    et, lite = out["artifacts"]
    assert [m["threads"] for m in et["measurements"]] == [1, 2]
    assert et["measurements"][0]["p50_ms"] == pytest.approx(241.944288)
    assert "--cpu_threads=2" in et["measurements"][1]["command"]
    assert lite["measurements"][0]["mean_ms"] == pytest.approx(33.2094)
    assert "--num_threads=1" in lite["measurements"][0]["command"]
    skipped = phones.android_bench("android", arts[:1], np.zeros((1, 16), np.float32), [1], 50, 0, None, None, 2.0,
                                   None, tmp_path)
    assert skipped["artifacts"][0]["status"].startswith("skipped: pass --executor-runner")


# ---- the real thing, small ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def corpus(request) -> Path:
    if (DEFAULT_CORPUS / "eval-speakers").is_dir() and (DEFAULT_CORPUS / "dev").is_dir():
        return DEFAULT_CORPUS
    return request.getfixturevalue("tiny_corpus")


@pytest.fixture(scope="module")
def small_export(tmp_path_factory, corpus) -> Path:
    from toolkit.exporting.prefix_export import ExportRequest, export_prefix
    from toolkit.model.asr import VeilModel
    from toolkit.model.checkpoint import save_checkpoint
    from toolkit.text.tokenizer import CharTokenizer
    work = tmp_path_factory.mktemp("bench")
    torch.manual_seed(0)
    model = VeilModel(small_config())
    with torch.no_grad():
        model.frontend.feat_mean.fill_(-6.0)
        model.frontend.feat_std.fill_(3.0)
    ckpt = save_checkpoint(work / "small.safetensors", model, CharTokenizer(), speakers=list("abcd"), provenance={})
    out = work / "export"
    export_prefix(ExportRequest(checkpoint=ckpt, target="android", recipes=["executorch=fp32", "litert=int8-dynamic"],
                                out=out, corpus=corpus))
    return out


@pytest.fixture(scope="module")
def bench_run(small_export, corpus, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bench-run")
    out = tmp / "results"
    rc = veil_main(["bench", str(small_export), "--threads", "1", "--runs", "5", "--warmup", "1", "--quick",
                    "--payload-utts", "2", "--ceiling", "none", "--corpus", str(corpus), "--out", str(out),
                    "--name", "small", "--cache-dir", str(tmp / "cache")])
    assert rc == 0
    return json.loads((out / "small.json").read_text()), out


def test_short_bench_run_gives_schema_valid_json(bench_run):
    doc, out = bench_run
    report.validate(doc)
    assert (out / "small.md").read_text().startswith("# Veil benchmark")
    assert (out / "small.png").read_bytes()[:4] == b"\x89PNG"
    names = [a["name"] for a in doc["artifacts"]]
    assert names == ["torch eager fp32", "onnxruntime fp32", "executorch fp32", "litert int8-dynamic"]
    for a in doc["artifacts"]:
        (m,) = a["measurements"]
        assert m["status"] == "ok", (a["name"], m)
        assert m["runs"] == 5 and m["output_finite"] and m["p50_ms"] > 0 and m["load_ms"] > 0
        assert m["rtf"] == pytest.approx(m["p50_ms"] / 1e3 / 1.0)  # 16000-sample chunks = 1 s
        assert m["peak_rss_inference_bytes"] >= 0 and a["size_bytes"] > 0
    assert doc["artifacts"][2]["measurements"][0]["runtime_threads"]["xnnpack_threadpool"] == 1
    assert doc["prefix"]["macs_per_chunk"] > 0
    assert set(doc["payload"]["codecs"]) == {"fp32", "fp16", "int8"}
    assert doc["payload"]["codecs"]["fp32"]["dwer"] == 0
    kbps = {c: v["kB_per_second"] for c, v in doc["payload"]["codecs"].items()}
    assert kbps["int8"] < kbps["fp16"] < kbps["fp32"]
    assert doc["targets"]["speed"]["status"] in ("met", "not met", "partly met")
    assert doc["command"].startswith("veil bench ") and "--quick" in doc["command"]
    assert doc["settings"]["quick"] is True


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
    assert "expected 1 <= A <= B" in capsys.readouterr().err


def test_ceiling_peaks_and_prefix_macs(small_model):
    from toolkit.model.asr import split
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
    from toolkit.bench.sweep import parse_range, privacy_by_layer
    layer = {"closed_lr": {"accuracy": 95.0, "chance": 3.125}, "closed_mlp": {"accuracy": 94.0},
             "open_xvector": {"eer": 6.0}}
    (tmp_path / "privacy-a.json").write_text(json.dumps({"models": {"m": {"sha256": "abc", "layers": {"3": layer}},
                                                                    "o": {"sha256": "zzz", "layers": {"1": layer}}}}))
    (tmp_path / "privacy-attempts.json").write_text("[]")  # other JSON shapes in the folder are skipped
    found, source = privacy_by_layer("abc", tmp_path)
    assert found == {3: {"closed_lr_accuracy": 95.0, "closed_mlp_accuracy": 94.0, "xvector_eer": 6.0, "chance": 3.125}}
    assert source.endswith("privacy-a.json")
    assert privacy_by_layer("nope", tmp_path) == ({}, None)
    assert parse_range("1..6") == (1, 6) and parse_range("3") == (3, 3)


def test_rejoin_privacy_rewrites_a_recorded_sweep(tmp_path, capsys):
    """Privacy results recorded after a sweep join its rows, and the MD is re-rendered from the JSON."""
    from toolkit.bench.sweep import rejoin_privacy
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
