"""NPU routes: the LiteRT ahead-of-time recipe (SDK missing -> one line; SDK present -> artifact + placement),
its recorded compiler output, and the fp16 stages that loud audio breaks.

CI has no Qualcomm SDK (its official package downloads QAIRT from Qualcomm's site at install time, which CI
cannot reach, and the only other source, the libraries inside the onnxruntime-qnn wheel, carry Qualcomm's
proprietary licence: export/README.md). So the compile itself is tested here on recorded compiler output
(tests/fixtures/npu, with its source), and end to end only where an SDK is found.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import export
from export import litert_npu
from tests.test_export import write_checkpoint
from toolkit.exporting.cli import main as export_main
from toolkit.exporting.manifest import FLOAT_MODULES, INPUT_NAME, OUTPUT_NAME
from toolkit.model.checkpoint import load_checkpoint
from toolkit.model.asr import split
from toolkit.parity.coreml_offline import Float16AfterFrontend
from toolkit.parity.npu_offline import Float16Everywhere
from toolkit.parity.stress import first_gap, stage_snr, stress_cases

FIXTURES = Path(__file__).parent / "fixtures" / "npu"
LITERT = export.get_backend("litert")


def sdk_found() -> bool:
    try:
        litert_npu.find_sdk(litert_npu.QUALCOMM, "probe")
    except export.MissingNpuSdk:
        return False
    return True


@pytest.fixture
def no_sdk(monkeypatch):
    """This machine as CI sees it: no QNN_SDK_ROOT, no importable SDK package."""
    monkeypatch.delenv("QNN_SDK_ROOT", raising=False)
    monkeypatch.setitem(sys.modules, "ai_edge_litert_sdk_qualcomm", None)  # import raises ImportError


# ---- the recipe's name, options and SDK check ----------------------------------------------------------------

def test_npu_recipe_lists_the_socs_of_ai_edge_litert():
    from ai_edge_litert.aot.vendors.qualcomm.target import SocModel
    assert litert_npu.QUALCOMM.socs == tuple(s.value for s in SocModel if s.value != "ALL")
    recipe = LITERT.RECIPES.get("npu-qualcomm:SM8650")
    assert (recipe.name, recipe.family, recipe.option, recipe.runs_on) == \
        ("npu-qualcomm:SM8650", "npu-qualcomm", "SM8650", "needs-device")
    assert recipe.precision == "fp16" and LITERT.RECIPES.get("npu-qualcomm-int8:SM8750").needs_calibration
    assert "npu-qualcomm:SOC" in LITERT.RECIPES.names()
    for bad, says in (("npu-qualcomm", "needs a SOC"), ("npu-qualcomm:SM9999", "unknown SOC 'SM9999'"),
                      ("fp32:SM8650", "has no recipe 'fp32:SM8650'")):
        with pytest.raises(export.UnknownRecipe, match=says):
            LITERT.RECIPES.get(bad)


def test_without_the_sdk_export_prefix_fails_in_one_line_naming_the_package(no_sdk, tmp_path, capsys):
    """The acceptance command, on a machine without the SDK: exit 2, one line, before any slow work."""
    out = tmp_path / "npu"
    rc = export_main(["--checkpoint", str(write_checkpoint(tmp_path / "m.safetensors")), "--target", "android",
                      "--recipe", "litert=npu-qualcomm:SM8650", "--out", str(out), "--no-parity"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert err.startswith("export-prefix: litert npu-qualcomm:SM8650: the Qualcomm NPU compiler needs the QAIRT SDK")
    assert "pip install --no-cache-dir ai-edge-litert-sdk-qualcomm==" in err
    assert "downloads QAIRT 2.50.0.260828 from Qualcomm's site at install time" in err and "QNN_SDK_ROOT" in err
    assert not out.exists() and not list(tmp_path.glob(".npu.partial-*"))


def test_an_sdk_package_installed_empty_is_named_as_such(monkeypatch, tmp_path):
    """What pip leaves when the package's download from Qualcomm failed: the package, no SDK inside."""
    package = tmp_path / "ai_edge_litert_sdk_qualcomm"
    package.mkdir()
    (package / "__init__.py").write_text(  # the real package's API, as it behaves without its data folder
        "import pathlib\n"
        "def get_sdk_path():\n    p = pathlib.Path(__file__).parent / 'data'\n    return p if p.is_dir() else None\n"
        "def path_to_sdk_libs():\n    p = get_sdk_path()\n    return p / 'lib/x86_64-linux-clang' if p else None\n")
    monkeypatch.delenv("QNN_SDK_ROOT", raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "ai_edge_litert_sdk_qualcomm", raising=False)
    with pytest.raises(export.MissingNpuSdk, match=r"ai-edge-litert-sdk-qualcomm is installed but holds no QAIRT "
                                                   r"\(its download from Qualcomm's site failed.*--no-cache-dir"):
        litert_npu.find_sdk(litert_npu.QUALCOMM, "npu-qualcomm:SM8650")
    monkeypatch.setenv("QNN_SDK_ROOT", str(tmp_path))
    with pytest.raises(export.MissingNpuSdk, match="QNN_SDK_ROOT=.* holds no lib/x86_64-linux-clang/libQnnHtp.so"):
        litert_npu.find_sdk(litert_npu.QUALCOMM, "npu-qualcomm:SM8650")


# ---- SDK present: recorded compiler output, and the real compile where an SDK is found -----------------------

def test_recorded_compiler_output_gives_the_manifests_placement():
    """The compiler's own report on the shipped prefix (fixture, with its source), parsed with ai_edge_litert's
    expression, gives the placement export-prefix wrote into the manifest: 583/583 ops on the HTP, 1 partition."""
    recorded = json.loads((FIXTURES / "qualcomm-SM8650.json").read_text())
    log = (FIXTURES / "apply_plugin-qualcomm-SM8650.log").read_text()
    stats = litert_npu.partition_stats_from_log(log)
    placement = litert_npu.placement(stats, recorded["compiled_op_census"])
    section = recorded["export_prefix_npu_section"]
    assert placement == section["placement"]
    assert placement["ops_on_npu"] == placement["ops_total"] == sum(recorded["source_op_census"].values()) == 583
    assert placement["partitions"] == 1 and placement["dispatch_ops"] == 1 and placement["fully_on_npu"]
    assert section["soc"] == "SM8650" and section["source_recipe"] == "fp32"
    assert section["source_sha256"] == recorded["source_sha256"]
    assert "Applying plugin with SDK version: v2.51.0" in log and section["sdk"]["version"].startswith("2.51.0")
    with pytest.raises(ValueError, match="no partitioned subgraph"):
        litert_npu.placement(litert_npu.partition_stats_from_log("Failed"), {})


def test_compiled_model_census_reads_the_flatbuffer_without_an_interpreter(tmp_path):
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU()).eval()
    art = LITERT.export(mlp, (np.zeros((1, 64), np.float32),), "fp32", tmp_path / "mlp.tflite")
    assert litert_npu.op_census(art.path.read_bytes()) == {"FULLY_CONNECTED": 1}


@pytest.mark.skipif(not sdk_found(), reason="no Qualcomm SDK on this machine (QNN_SDK_ROOT or "
                                            "ai-edge-litert-sdk-qualcomm with QAIRT): the compile runs where one is")
def test_with_the_sdk_the_npu_artifact_and_its_placement_are_written(tmp_path):
    model, _ = load_checkpoint(write_checkpoint(tmp_path / "m.safetensors"))
    prefix = split(model)[0].eval()
    x = np.random.default_rng(0).uniform(-0.3, 0.3, (1, prefix.chunk_samples)).astype(np.float32)
    art = LITERT.export(prefix, (x,), "npu-qualcomm:SM8650", tmp_path / "npu.tflite", float_modules=FLOAT_MODULES,
                        input_name=INPUT_NAME, output_name=OUTPUT_NAME)
    npu = art.details["npu"]
    assert art.recipe == "npu-qualcomm:SM8650" and npu["soc"] == "SM8650" and npu["sdk"]["version"]
    p = npu["placement"]
    assert p["ops_on_npu"] > 0 and p["ops_on_npu"] + p["ops_on_cpu"] == p["ops_total"] and p["partitions"] >= 1
    assert litert_npu.op_census(art.path.read_bytes()).get("DISPATCH_OP") == p["dispatch_ops"] >= 1
    assert LITERT.input_shape(art) == (1, prefix.chunk_samples)
    with pytest.raises(export.NeedsDevice, match="needs-device: litert npu-qualcomm:SM8650"):
        export.load(art)


# ---- loud audio: where an fp16 path breaks -------------------------------------------------------------------

def test_stress_audio_is_deterministic_and_within_full_scale():
    speech = np.random.default_rng(1).standard_normal(20000).astype(np.float32) * 0.1
    a, b = stress_cases(speech, 16000, 16000), stress_cases(speech, 16000, 16000)
    assert [c.name for c in a] == ["tone-100hz", "tone-1000hz", "tone-4000hz", "tone-7000hz", "speech-clipped",
                                   "noise-full-scale", "near-silence", "dc-offset"]
    for x, y in zip(a, b):
        assert x.pcm.shape == (1, 16000) and x.pcm.dtype == np.float32 and np.array_equal(x.pcm, y.pcm)
        assert np.max(np.abs(x.pcm)) <= 1.0
    peaks = {c.name: float(np.max(np.abs(c.pcm))) for c in a}
    assert peaks["tone-1000hz"] > 0.999 and peaks["speech-clipped"] == 1.0 and peaks["near-silence"] < 2e-4
    assert abs(float(np.mean(a[-1].pcm)) - 0.5) < 0.05  # the DC offset


def test_fp16_frontend_breaks_on_a_full_scale_tone_and_the_stage_is_named(tmp_path):
    """An NPU computing the frontend in fp16 (the LiteRT NPU route) loses a full-scale tone at the frontend; the
    same encoder after an fp32 frontend (Core ML, the ExecuTorch Core ML delegate) keeps it."""
    model, _ = load_checkpoint(write_checkpoint(tmp_path / "m.safetensors"))
    prefix = split(model)[0].eval()
    tone = next(c for c in stress_cases(np.zeros(100), prefix.chunk_samples, 16000) if c.name == "tone-4000hz")
    everywhere = stage_snr(prefix, Float16Everywhere(prefix), tone.pcm)
    assert [s["stage"] for s in everywhere] == ["frontend", "subsampling", "block 1", "block 2", "output"]
    assert first_gap(everywhere, 30.0) == "frontend" and everywhere[0]["snr_db"] < 30.0
    import copy
    after = stage_snr(prefix, Float16AfterFrontend(copy.deepcopy(prefix)), tone.pcm)
    assert after[0]["snr_db"] > 60.0 and first_gap(after, 30.0) is None  # fp32 frontend, output rounded to fp16
