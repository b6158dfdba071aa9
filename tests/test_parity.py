"""Parity of exported prefixes: real runtimes on real corpus audio, gates, Core ML off macOS, reports.

One small 2-block model (d=64, prefix = frontend + block 1, 1 s chunks) is exported once per module through
``export-prefix`` (parity runs after the export, as by default). Its transcripts are near garbage (random
weights), so the tests assert what parity must get right on any model: fp32 artifacts reproduce the float
transcripts exactly (ΔWER 0, identical 100 %), and gates fail on numbers, not on WER luck.
"""
from __future__ import annotations

import json
import platform
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import export
from export.coreml_backend import feature_dict
from toolkit.chunking import torch_runner
from toolkit.cli import main as veil_main
from toolkit.errors import VeilError
from toolkit.exporting.cli import main as export_main
from toolkit.exporting.manifest import FLOAT_MODULES, INPUT_NAME, OUTPUT_NAME
from toolkit.model.asr import ModelConfig, VeilModel, split
from toolkit.model.checkpoint import load_checkpoint, save_checkpoint
from toolkit.parity import gates
from toolkit.parity.bundled import verify_bundled_program
from toolkit.parity.localize import stage_prefixes
from toolkit.text.tokenizer import CharTokenizer

UTTS = "4"
ON_MACOS = platform.system() == "Darwin"


@pytest.fixture(scope="module", autouse=True)
def _single_thread(one_torch_thread):
    yield


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("parity")


@pytest.fixture(scope="module")
def checkpoint(work) -> Path:
    torch.manual_seed(0)
    model = VeilModel(ModelConfig(n_blocks=2, split_layer=1, d_model=64, n_heads=4, subsampling_channels=16,
                                  chunk_samples=16000, grl_layers=[1], n_speakers=4))
    with torch.no_grad():
        model.frontend.feat_mean.fill_(-6.0)
        model.frontend.feat_std.fill_(3.0)
    return save_checkpoint(work / "small.safetensors", model, CharTokenizer(), speakers=list("abcd"), provenance={})


def export_with_parity(checkpoint, corpus, out, target, recipe, *extra) -> int:
    return export_main(["--checkpoint", str(checkpoint), "--target", target, "--recipe", recipe, "--out", str(out),
                        "--corpus", str(corpus), "--calibration-utts", "2", "--parity-utts", UTTS, *extra])


@pytest.fixture(scope="module")
def android_fp32(work, checkpoint, corpus) -> Path:
    out = work / "android-fp32"
    assert export_with_parity(checkpoint, corpus, out, "android", "fp32") == 0
    return out


@pytest.fixture(scope="module")
def ios_int8(work, checkpoint, corpus) -> tuple[Path, int]:
    out = work / "ios-int8"
    return out, export_with_parity(checkpoint, corpus, out, "ios", "int8-weights")


def parity_json(d: Path) -> dict:
    return json.loads((d / "parity.json").read_text())


# ---- real runtimes ---------------------------------------------------------------------------------------------

def test_fp32_parity_passes_on_each_runnable_backend(android_fp32):
    report = parity_json(android_fp32)
    assert report["verdict"] == "pass"
    assert report["audio"]["utterances"] == int(UTTS) and "eval-speakers" in report["audio"]["split"]
    assert {a["backend"] for a in report["artifacts"]} == {"executorch", "litert"}
    for a in report["artifacts"]:
        assert a["verdict"] == "pass" and a["failures"] == []
        n, c = a["numeric"], a["cloud"]
        assert float(n["snr_db"]) > 80 and n["cosine_min"] > 0.9999 and n["nonfinite"] == 0
        assert n["max_abs_error"] < 1e-3 and n["frames"] > 0
        assert c["dwer"] == 0.0 and c["identical_share"] == 1.0 and c["kl_mean"] < 1e-6
        assert len(a["cosine_over_time"]) == report["plot_utterance"]["frames"]
        st = a["stress"]  # loud and hostile chunks, run in the real runtime: fp32 stays exact on them
        assert [c["case"] for c in st["cases"]] == [c["case"] for c in report["stress_audio"]["cases"]]
        assert len(st["cases"]) == 8 and st["stress_snr_db"] > 60 and st["stress_cosine_mean"] > 0.9999
    manifest = json.loads((android_fp32 / "manifest.json").read_text())
    assert manifest["parity"]["verdict"] == "pass"
    assert all(e["parity"]["verdict"] == "pass" for e in manifest["artifacts"])


def test_report_files_hold_the_metrics(android_fp32):
    report = parity_json(android_fp32)
    md = (android_fp32 / "parity.md").read_text()
    html = (android_fp32 / "parity.html").read_text()
    for a in report["artifacts"]:
        snr = f"{float(a['numeric']['snr_db']):.1f}"
        assert a["file"] in md and snr in md
        assert a["file"] in html and snr in html
    assert html.count("data:image/png;base64,") == 2 and "<script" not in html  # self-contained


def test_parity_renders_again_from_its_json_and_fills_a_readme_table(android_fp32, tmp_path):
    d = tmp_path / "copy"
    shutil.copytree(android_fp32, d)
    (d / "parity.md").unlink()
    readme = tmp_path / "README.md"
    readme.write_text("# Project\n")
    assert veil_main(["render", str(d / "parity.json"), "--readme", str(readme)]) == 0
    assert (d / "parity.md").read_text() == (android_fp32 / "parity.md").read_text()
    text = readme.read_text()
    assert "## Export and parity" in text and "<!-- veil:parity:start -->" in text
    for a in parity_json(android_fp32)["artifacts"]:
        assert f"`{a['file']}` | {a['backend']} {a['recipe']} | {a['size_bytes'] / 1e6:.2f} |" in text


def test_bundled_program_round_trips(android_fp32):
    a = next(a for a in parity_json(android_fp32)["artifacts"] if a["backend"] == "executorch")
    b = a["bundled_program"]
    path = android_fp32 / b["file"]
    assert path.suffix == ".bpte" and path.is_file()
    assert b["verified_here"]["status"] == "ok" and b["verified_here"]["cases_passed"] == b["test_cases"] > 0
    # the runtime really compares: no tolerance at all fails the float32 round-off of XNNPACK
    strict = verify_bundled_program(path, b["test_cases"], atol=0.0)
    assert strict["status"] == "failed" and strict["cases_passed"] < b["test_cases"]


# ---- a wrong artifact fails its gate ------------------------------------------------------------------------------

def test_artifact_from_perturbed_weights_fails_its_gate(work, android_fp32, checkpoint, corpus, capsys):
    d = work / "perturbed"
    shutil.copytree(android_fp32, d)
    model, _ = load_checkpoint(checkpoint)
    with torch.no_grad():  # what a buggy pipeline could ship: slightly wrong block-1 weights
        for p in model.blocks[0].parameters():
            p.add_(0.05 * torch.randn_like(p) * p.std())
    prefix = split(model)[0].eval()
    manifest = json.loads((d / "manifest.json").read_text())
    entry = next(e for e in manifest["artifacts"] if e["backend"] == "executorch")
    chunk = np.zeros((1, 16000), np.float32)
    art = export.get_backend("executorch").export(prefix, (chunk,), "fp32", d / entry["file"],
                                                  float_modules=FLOAT_MODULES, input_name=INPUT_NAME,
                                                  output_name=OUTPUT_NAME)
    entry["sha256"] = art.sha256()
    (d / "manifest.json").write_text(json.dumps(manifest))
    capsys.readouterr()
    rc = veil_main(["parity", str(d), "--corpus", str(corpus), "--parity-utts", UTTS, "--no-bundle"])
    err = capsys.readouterr().err
    assert rc == 1
    assert entry["file"] in err and "snr" in err and "gate 60" in err and "artifacts kept" in err
    assert (d / entry["file"]).is_file()
    report = parity_json(d)
    bad = next(a for a in report["artifacts"] if a["backend"] == "executorch")
    assert report["verdict"] == "fail" and bad["verdict"] == "fail"
    assert "snr" in [f["metric"] for f in bad["failures"]] and float(bad["numeric"]["snr_db"]) < 60
    loc = bad["localization"]  # re-exported from the checkpoint, the gap is gone: not the recipe's fault
    assert [s["stage"] for s in loc["stages"]] == ["frontend+subsampling", "block 1"]
    assert loc["reproduced"] is False and loc["first_gap_stage"] is None
    assert "does not compute this checkpoint" in loc["note"]
    m = json.loads((d / "manifest.json").read_text())
    assert m["parity"]["verdict"] == "fail"
    assert "snr" in [f["metric"] for f in m["parity"]["artifacts"][entry["file"]]["failures"]]


def test_chunk_length_mismatch_is_caught(work, android_fp32, corpus, capsys):
    d = work / "mismatch"
    shutil.copytree(android_fp32, d)
    (d / "parity.json").unlink()
    manifest = json.loads((d / "manifest.json").read_text())
    manifest["input"]["chunk_samples"] = 32000
    manifest["input"]["shape"] = [1, 32000]
    (d / "manifest.json").write_text(json.dumps(manifest))
    capsys.readouterr()
    assert veil_main(["parity", str(d), "--corpus", str(corpus), "--parity-utts", UTTS]) == 2
    err = capsys.readouterr().err
    assert "chunk length mismatch" in err and "16000-sample chunks" in err and "32000" in err
    assert len(err.strip().splitlines()) == 1 and not (d / "parity.json").exists()


# ---- Core ML off macOS ------------------------------------------------------------------------------------------

@pytest.mark.skipif(ON_MACOS, reason="on macOS Core ML executes and parity runs for real")
def test_coreml_reports_needs_macos_not_pass(ios_int8):
    out, rc = ios_int8
    assert rc == 0
    report = parity_json(out)
    (a,) = report["artifacts"]
    assert a["verdict"] == "needs-macos" and report["verdict"] == "needs-macos"
    assert "numeric" not in a and a["execution"]["status"] == "needs-macos"
    linux = a["checked_on_linux"]
    assert linux["spec_vs_manifest"]["status"] == "ok"
    w = linux["weights_vs_torch"]
    assert w["matched"] >= 20 and w["unmatched"] == [] and w["compressed"] > 0
    assert 1e-4 < w["max_rel_error"] < 0.05  # int8 per-channel dequantization error, not zero, not broken
    est = linux["fp16_estimate"]
    assert est["label"] == "estimate" and "never a pass" in est["how"]
    assert 20 < float(est["numeric"]["snr_db"]) < 80
    # the package's own program, run by the MIL reference interpreter and gated; Core ML itself still needs a Mac
    mil = linux["mil_reference"]
    assert mil["label"] == "mil-reference (Linux)" and mil["verdict"] == "pass" and a["failures"] == []
    assert mil["program"]["compressed_weights"] > 0 and mil["program"]["compute_dtypes"]["fp16"] > 0
    assert abs(float(mil["numeric"]["snr_db"]) - float(est["numeric"]["snr_db"])) < 3
    assert len(mil["stress"]["cases"]) == 8 and mil["stress"]["nonfinite"] == 0
    md = (out / "parity.md").read_text()
    assert "needs-macos" in md and "mil-reference (Linux) pass" in md and f"{float(mil['numeric']['snr_db']):.1f}" in md
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["parity"]["verdict"] == "needs-macos"
    assert manifest["artifacts"][0]["parity"]["measured_by"] == "mil-reference (Linux)"


def test_coreml_feature_dict_matches_the_spec(ios_int8):
    """What CoreMLRunner hands MLModel.predict on macOS, checked here against the package's spec."""
    out, _ = ios_int8
    manifest = json.loads((out / "manifest.json").read_text())
    art = export.Artifact.from_json(manifest["artifacts"][0], out)
    spec = export.get_backend("coreml").describe(art.path)
    pcm = np.linspace(-0.5, 0.5, 16000, dtype=np.float64)
    feed = feature_dict(art, pcm)
    assert list(feed) == [spec["inputs"][0]["name"]]
    x = feed[INPUT_NAME]
    assert list(x.shape) == spec["inputs"][0]["shape"] and x.dtype == np.float32 and x.flags.c_contiguous
    with pytest.raises(ValueError):
        feature_dict(art, np.zeros(8000, np.float32))


# ---- gates ------------------------------------------------------------------------------------------------------

def test_gates_defaults_overrides_and_errors(tmp_path):
    g = gates.parse_gate_args([])
    assert gates.gate_for(g, "executorch", "fp32") == {"snr": 60.0, "dwer": 1.0, "stress_snr": 60.0,
                                                      "stress_cos": 0.9999}
    assert gates.gate_for(g, "litert", "npu-qualcomm:SM8650")["stress_snr"] == 30.0  # by its family, fp16
    assert gates.gate_for(g, "litert", "fp16")["snr"] == 35.0
    assert gates.gate_for(g, "coreml", "palettized-4bit")["snr"] == 15.0
    f = tmp_path / "gates.json"
    f.write_text(json.dumps({"int8-static": {"snr": 25}}))
    g = gates.parse_gate_args(["litert/int8-static:dwer=0.5,kl=0.01"], str(f))
    speech = lambda gate: {k: v for k, v in gate.items() if not k.startswith("stress_")}  # noqa: E731
    assert speech(gates.gate_for(g, "litert", "int8-static")) == {"snr": 25.0, "dwer": 0.5, "kl": 0.01}
    assert speech(gates.gate_for(g, "executorch", "int8-static")) == {"snr": 25.0, "dwer": 1.0}
    assert gates.gate_for(g, "executorch", "int8-static")["stress_cos"] == 0.9
    fails = gates.check({"snr": 25.0, "dwer": 1.0}, {"snr_db": 24.0, "dwer": -3.0})
    assert [x["metric"] for x in fails] == ["snr"]  # a WER gain never fails
    assert gates.describe_failure(fails[0]) == "snr 24.000 dB < gate 25"
    assert gates.check({"dwer": 1.0}, {"dwer": float("nan")})  # undefined fails
    for bad in (["int8:snr"], ["snr=3"], ["int8:foo=1"], ["int8:snr=abc"]):
        with pytest.raises(VeilError):
            gates.parse_gate_args(bad)


# ---- one definition of the phone's computation ------------------------------------------------------------------

def test_localization_stages_are_the_prefixes_split_returns():
    """Stage j of a split-norm model is split(model, j)'s prefix: the normalization after the split block is in
    the stage that includes the block, and the full-depth stage computes exactly the exported prefix."""
    torch.manual_seed(0)
    model = VeilModel(ModelConfig(n_blocks=3, split_layer=2, d_model=64, n_heads=4, subsampling_channels=16,
                                  chunk_samples=16000, split_norm="chunk")).eval()
    chunk = (np.random.default_rng(1).standard_normal((1, 16000)) * 0.1).astype(np.float32)
    stages = stage_prefixes(model, 3)
    assert [len(s.blocks) for s in stages] == [0, 1, 2, 3] and [s.norm_after for s in stages] == [0, 0, 2, 2]
    for j, stage in enumerate(stages[1:], 1):
        np.testing.assert_array_equal(torch_runner(stage)(chunk), torch_runner(split(model, j)[0])(chunk))
