"""Export of the on-device prefix: every backend x recipe, real runtimes, manifest, determinism, CLI errors.

A 2-block model (d=64) is exported once per backend x recipe of the registries (module-scoped fixtures), so a
recipe added to a backend is tested here without editing a list. ``.pte`` and
``.tflite`` files run in ``executorch.runtime`` and ``ai_edge_litert``; ``.mlpackage`` files are checked
through their spec, and on Linux loading one for execution must raise ``needs-macos``. Calibration and
check audio are real corpus utterances: conftest's tiny corpus, the same on every machine.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import export
from toolkit.cli import main as veil_main
from toolkit.exporting.calibration import LOUD_SEED, calibration_chunks, manifest_calibration
from toolkit.exporting.cli import main as export_main
from toolkit.exporting.manifest import FLOAT_MODULES, INPUT_NAME, OUTPUT_NAME
from toolkit.files import file_sha256
from toolkit.model.asr import ModelConfig, VeilModel, split
from toolkit.model.checkpoint import load_checkpoint, save_checkpoint
from toolkit.parity.stress import STRESS_SEED, stress_cases
from toolkit.text.tokenizer import CharTokenizer

ON_MACOS = platform.system() == "Darwin"

def _exportable_here(backend: str, recipe) -> str | None:
    """The name to export ``recipe`` by (a recipe with options: its first option), or None when this machine
    lacks what it needs (an NPU recipe without the vendor SDK: tests/test_npu.py covers both cases)."""
    name = f"{recipe.family}:{recipe.options[0]}" if recipe.options else recipe.name
    try:
        export.get_backend(backend).RECIPES.get(name).check_requirements()
    except export.ExportError:
        return None
    return name


RECIPES = [(b, n) for b in export.BACKENDS for r in export.get_backend(b).RECIPES
           if (n := _exportable_here(b, r)) is not None]
# Executable here: the backend's runtime runs on this OS and the recipe needs no other hardware or OS.
RUNNABLE = [(b, r) for b, r in RECIPES if export.get_backend(b).runs_here()
            and export.get_backend(b).RECIPES.get(r).runs_on in (None, "needs-macos" if ON_MACOS else None)]
# Minimum SNR of the runtime's embeddings against the float torch prefix, on held-out real audio, by the
# recipe's precision (the narrower of its weights and its compute).
MIN_SNR_DB = {"fp32": 80.0, "fp16": 45.0, "int8": 18.0, "int4": 12.0}


def recipe_of(backend: str, name: str) -> export.recipes.Recipe:
    return export.get_backend(backend).RECIPES.get(name)


CALIBRATION_UTTS = 4


def write_checkpoint(path: Path, split_layer: int = 2, poison: bool = False) -> Path:
    torch.manual_seed(0)
    model = VeilModel(ModelConfig(n_blocks=2, split_layer=split_layer, d_model=64, n_heads=4, grl_layers=[2],
                                  n_speakers=4))
    with torch.no_grad():  # realistic standardization, so the frontend keeps its sub/div ops
        model.frontend.feat_mean.fill_(-6.0)
        model.frontend.feat_std.fill_(3.0)
        if poison:  # a diverged checkpoint: one NaN weight
            model.blocks[0].ff1.up.weight[0, 0] = float("nan")
    return save_checkpoint(path, model, CharTokenizer(), speakers=["a", "b", "c", "d"], provenance={})


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("export")


@pytest.fixture(scope="module", autouse=True)
def _single_thread(one_torch_thread):
    yield


@pytest.fixture(scope="module")
def checkpoint(work) -> Path:
    return write_checkpoint(work / "small.safetensors")


@pytest.fixture(scope="module")
def prefix(checkpoint):
    model, _ = load_checkpoint(checkpoint)
    return split(model)[0].eval()


@pytest.fixture(scope="module")
def calibration(corpus, prefix):
    chunks, _ = calibration_chunks(corpus / "train", CALIBRATION_UTTS, prefix.chunk_samples)
    return chunks


def test_calibration_loud_set_is_seeded_and_distinct_from_parity_stress_cases(tiny_corpus):
    """Static int8 ranges must cover full-scale input: the loud chunks are part of the calibration set, the same
    on every call (seeded), recorded in the manifest's section and rebuilt from it, and none of them is one of
    parity's stress chunks (so the stress gates measure generalization)."""
    chunk = 16000
    speech, speech_info = calibration_chunks(tiny_corpus / "train", 3, chunk)
    chunks, info = calibration_chunks(tiny_corpus / "train", 3, chunk, loud=True)
    again, _ = calibration_chunks(tiny_corpus / "train", 3, chunk, loud=True)
    loud = chunks[len(speech):]
    assert all(np.array_equal(a, b) for a, b in zip(chunks[:len(speech)], speech))
    assert len(loud) == info["loud"]["chunks"] == len(info["loud"]["cases"]) and "loud" not in speech_info
    assert info["chunks"] == speech_info["chunks"] and LOUD_SEED != STRESS_SEED
    assert all(np.array_equal(a, b) for a, b in zip(chunks, again)) and len(again) == len(chunks)
    assert all(np.array_equal(a, b) for a, b in zip(manifest_calibration(info, chunk), chunks))
    assert len(manifest_calibration(speech_info, chunk)) == len(speech)  # an older manifest: speech only
    assert all(c.shape == (1, chunk) and c.dtype == np.float32 for c in loud)
    peaks = np.array([np.max(np.abs(c)) for c in loud])
    assert np.sum(peaks >= 0.999) >= 10 and peaks.max() <= 1.0 + 1e-6  # full scale, never beyond
    names = {c["name"] for c in info["loud"]["cases"]}
    assert {"noise-uniform", "sweep-linear"} <= names and any(n.startswith("tone-") for n in names)
    assert any("clipped" in n for n in names) and any("-dc" in n for n in names)
    stress = stress_cases(speech[0], chunk, 16000)
    assert not names & {s.name for s in stress}
    assert not any(np.allclose(c, s.pcm, atol=1e-3) for c in loud for s in stress)


def test_loud_calibration_export_is_recorded_and_byte_reproducible(work, checkpoint, corpus):
    """`--calibration-loud`: the manifest records the loud set, parity rebuilds the same calibration from it, and
    two exports give the same bytes."""
    hashes = []
    for name in ("loud-a", "loud-b"):
        out = work / name
        assert export_main(["--checkpoint", str(checkpoint), "--target", "litert", "--recipe", "int8-static",
                            "--out", str(out), "--corpus", str(corpus), "--calibration-utts", "2",
                            "--calibration-loud", "--no-parity"]) == 0
        manifest = json.loads((out / "manifest.json").read_text())
        hashes.append(manifest["artifacts"][0]["sha256"])
    info = manifest["calibration"]
    assert info["loud"]["seed"] == LOUD_SEED and info["loud"]["chunks"] == len(info["loud"]["cases"]) > 0
    assert len(manifest_calibration(info, manifest["input"]["chunk_samples"])) == info["chunks"] + info["loud"]["chunks"]
    assert hashes[0] == hashes[1]


@pytest.fixture(scope="module")
def held_out(corpus, prefix):
    """Chunks from the dev split (not used for calibration) and the float torch prefix's embeddings."""
    chunks, _ = calibration_chunks(corpus / "dev", 2, prefix.chunk_samples)
    with torch.no_grad():
        refs = [prefix(torch.from_numpy(c)).numpy() for c in chunks]
    return chunks, refs


@pytest.fixture(scope="module")
def exported(work, prefix, calibration):
    """``exported(backend, recipe) -> Artifact``, each exported once per module, as the CLI would."""
    cache: dict = {}

    def get(backend: str, recipe: str) -> export.Artifact:
        if (backend, recipe) not in cache:
            module = export.get_backend(backend)
            out = work / "artifacts" / f"{recipe}{module.SUFFIX}"
            out.parent.mkdir(exist_ok=True)
            cache[backend, recipe] = module.export(prefix, (calibration[0],), recipe, out, calibration=calibration,
                                                   float_modules=FLOAT_MODULES, input_name=INPUT_NAME,
                                                   output_name=OUTPUT_NAME)
        return cache[backend, recipe]
    return get


# ---- every backend x recipe exports, with the frontend float ------------------------------------------------

@pytest.mark.parametrize("backend,recipe", RECIPES, ids=[f"{b}-{r}" for b, r in RECIPES])
def test_every_backend_recipe_exports(exported, prefix, backend, recipe):
    art = exported(backend, recipe)
    spec = recipe_of(backend, recipe)
    assert art.path.exists() and art.size_bytes > 100_000
    assert art.path.suffix == export.get_backend(backend).SUFFIX
    assert art.input_shape == (1, prefix.chunk_samples)
    assert art.output_shape == (1, prefix.chunk_samples // 640, 64)
    assert len(art.sha256()) == 64 and art.export_seconds > 0
    if backend == "executorch":
        d = art.details["delegation"]
        delegated = sum(r["ops"] for r in d["by_backend"].values()) if "by_backend" in d else d["ops_delegated"]
        assert delegated > 0.8 * d["ops_total"], d
    elif backend == "litert":
        ops = art.details["ops"]
        assert ops["input_dtypes"] == ["float32"] and ops["output_dtypes"] == ["float32"]
        assert ops["float_module_ops"] >= 10 and ops["float_module_ops_quantized"] == 0, ops
        assert (ops["int8_ops"] > 0) == (spec.compute == "int8"), ops
    else:
        mil = art.details["mil"]
        assert mil["float_module_ops"] >= 10 and mil["float_module_ops_fp32"] == mil["float_module_ops"], mil
        assert mil["float_module_ops_compressed"] == 0, mil
        assert (mil["compressed_weights"] > 0) == (spec.weights in ("int8", "int4")), mil


@pytest.mark.parametrize("recipe", ["fp32", "int8-static"])
def test_executorch_prefix_is_one_xnnpack_graph(exported, recipe):
    """Layer norms, means and shape-only ops are rewritten into ops XNNPACK lowers
    (export/xnnpack_decompositions.py): nothing is left on portable kernels to cut the graph."""
    d = exported("executorch", recipe).details["delegation"]
    assert d["delegated_subgraphs"] == 1 and d["not_delegated"] == {}, d


def test_litert_int8_static_is_one_xnnpack_graph_of_int8_compute_and_data_movement(exported):
    """int8-static quantizes the fully connected and conv ops and the transposes, slices and pads between them.
    Attention's batch matmuls (XNNPACK takes no int8 BATCH_MATMUL: each one cut the graph), the layer norms,
    softmax, SiLU, residual adds and reshapes stay float32, so XNNPACK runs the whole graph as one partition; the
    frontend and the graph's input and output stay float32."""
    ops = exported("litert", "int8-static").details["ops"]
    assert ops["xnnpack_partitions"] == 1, ops
    assert set(ops["int8_by_op"]) == {"FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE", "SLICE",
                                      "PAD"}, ops
    assert {"BATCH_MATMUL", "MEAN", "SQUARED_DIFFERENCE", "RSQRT", "SOFTMAX", "LOGISTIC", "ADD", "MUL",
            "RESHAPE"} <= set(ops["float_by_op"]), ops
    assert ops["float_module_ops"] >= 10 and ops["float_module_ops_quantized"] == 0, ops
    assert ops["input_dtypes"] == ["float32"] and ops["output_dtypes"] == ["float32"], ops
    assert exported("litert", "fp32").details["ops"]["xnnpack_partitions"] == 1


@pytest.mark.parametrize("backend", list(export.BACKENDS))
def test_compressed_recipes_are_smaller_than_fp32(exported, backend):
    fp32 = exported(backend, "fp32").size_bytes
    for b, name in RECIPES:
        if b == backend and recipe_of(b, name).precision != "fp32":
            assert exported(b, name).size_bytes < 0.8 * fp32, name


# ---- real runtimes -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("backend,recipe", RUNNABLE, ids=[f"{b}-{r}" for b, r in RUNNABLE])
def test_runtime_matches_torch(exported, held_out, backend, recipe):
    art = exported(backend, recipe)
    precision = recipe_of(backend, recipe).precision
    run = export.load(art)
    chunks, refs = held_out
    outs = [run(c) for c in chunks]
    for out in outs:
        assert out.shape == art.output_shape and out.dtype == np.float32
    snr = export.snr_db(np.concatenate(refs), np.concatenate(outs))
    assert snr >= MIN_SNR_DB[precision], f"{backend} {recipe}: SNR {snr:.1f} dB"
    if precision != "fp32":  # the recipe really changed the arithmetic
        assert snr < 80.0, f"{backend} {recipe}: SNR {snr:.1f} dB looks unquantized"


def test_8da4w_falls_back_to_int8_where_groups_of_32_do_not_fit(work):
    """XNNPACK delegates int4 weights only in groups of a multiple of 32; a Linear with 48 inputs gets int8."""
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Linear(64, 48), torch.nn.SiLU(), torch.nn.Linear(48, 32)).eval()
    x = np.random.default_rng(0).standard_normal((4, 64)).astype(np.float32)
    art = export.get_backend("executorch").export(mlp, (x,), "8da4w", work / "mlp-8da4w.pte")
    assert art.details["int4_linears"] == 1 and art.details["int8_fallback_linears"] == ["2"]
    with torch.no_grad():
        ref = mlp(torch.from_numpy(x)).numpy()
    assert 8.0 < export.snr_db(ref, export.load(art)(x)) < 60.0


def test_runner_rejects_wrong_input_shape(exported):
    run = export.load(exported("litert", "fp32"))
    with pytest.raises(ValueError, match="input shape"):
        run(np.zeros((1, 1000), np.float32))


@pytest.mark.parametrize("recipe", ["fp16", "int8-weights"])
def test_coreml_spec_declares_the_io(exported, prefix, recipe):
    spec = export.get_backend("coreml").describe(exported("coreml", recipe).path)
    assert spec["model_type"] == "mlProgram"
    assert spec["spec_version"] >= 8  # iOS 17
    assert spec["inputs"] == [{"name": INPUT_NAME, "shape": [1, prefix.chunk_samples], "dtype": "float32"}]
    assert spec["outputs"] == [{"name": OUTPUT_NAME, "shape": [1, prefix.chunk_samples // 640, 64],
                                "dtype": "float32"}]


@pytest.mark.skipif(ON_MACOS, reason="asserts the needs-macos error, which only other systems raise")
def test_coreml_execution_needs_macos(exported):
    with pytest.raises(export.NeedsMacOS, match="needs-macos"):
        export.load(exported("coreml", "int8-weights"))


# ---- the interface's own errors ----------------------------------------------------------------------------

def test_unknown_recipe_names_backend_and_recipe():
    with pytest.raises(export.UnknownRecipe, match=r"coreml has no recipe 'int8-static' \(coreml recipes: fp16"):
        export.get_backend("coreml").RECIPES.get("int8-static")
    with pytest.raises(export.UnknownBackend, match="unknown export backend 'onnx'"):
        export.get_backend("onnx")


def test_every_recipe_states_its_precision_and_every_backend_its_facts():
    """What parity gates, bench dtypes and help texts derive from: nothing downstream lists recipes by name."""
    for b in export.BACKENDS:
        module = export.get_backend(b)
        assert module.TARGET in ("android", "ios") and module.RUNTIME and module.SUFFIX.startswith(".")
        assert module.DEFAULT_RECIPE in module.RECIPES
        for r in module.RECIPES:
            assert r.weights in export.recipes.PRECISIONS and r.compute in export.recipes.PRECISIONS
            assert r.precision == max(r.weights, r.compute, key=export.recipes.PRECISIONS.index)
    assert export.targets() == {"android": ["executorch", "litert"], "ios": ["coreml"],
                                "all": ["executorch", "litert", "coreml"]}
    with pytest.raises(ValueError, match="weights='int3'"):
        export.recipes.Recipe("x", "", "int3", "fp32", False, None)


@pytest.mark.parametrize("backend,recipe", [(b, export.get_backend(b).DEFAULT_RECIPE) for b in export.BACKENDS])
def test_every_backend_reads_back_what_its_file_declares(exported, prefix, backend, recipe):
    """input_shape and check_spec read the artifact file itself (its runtime or spec), on any OS."""
    module = export.get_backend(backend)
    art = exported(backend, recipe)
    assert module.input_shape(art) == (1, prefix.chunk_samples)
    io = {"input": {"name": INPUT_NAME, "shape": [1, prefix.chunk_samples], "dtype": "float32"},
          "output": {"name": OUTPUT_NAME, "shape": [1, prefix.chunk_samples // 640, 64], "dtype": "float32"}}
    assert module.check_spec(art, io) == []
    wrong = {**io, "input": {**io["input"], "shape": [1, 2 * prefix.chunk_samples]}}
    (mismatch,) = module.check_spec(art, wrong)
    assert str(2 * prefix.chunk_samples) in mismatch


def test_static_recipe_without_calibration_refuses(prefix, work):
    with pytest.raises(export.MissingCalibration, match="executorch int8-static"):
        export.get_backend("executorch").export(prefix, (np.zeros((1, prefix.chunk_samples), np.float32),),
                                                "int8-static", work / "never.pte")
    assert not (work / "never.pte").exists()


class DataDependent(torch.nn.Module):
    """Branches on a tensor value: torch.export (inside every converter) cannot capture it."""

    def forward(self, x):
        return x * 2 if x.sum() > 0 else x - 1


@pytest.mark.skipif(ON_MACOS, reason="asserts the needs-macos error, which only other systems raise")
def test_executorch_coreml_delegate_takes_the_encoder_and_leaves_the_frontend_fp32(exported):
    """The Core ML delegate computes in fp16: the log-mel frontend must stay outside it (on XNNPACK, fp32), so a
    loud input cannot overflow its power spectrum; the runtime here has no Core ML backend: needs-macos."""
    art = exported("executorch", "coreml-ane")
    d = art.details["delegation"]
    assert d["backend"] == "CoreMLBackend" and d["compute_unit"] == "CPU_AND_NE" and d["compute_precision"] == "fp16"
    assert d["delegated_subgraphs"] == 1 and d["ops_delegated"] > 0.6 * d["ops_total"], d
    assert d["float_module_ops_in_coreml"] == 0
    xnnpack = d["by_backend"]["XnnpackBackend"]
    assert xnnpack["ops"] >= 10 and xnnpack["float_module_ops"] == xnnpack["ops"], d
    with pytest.raises(export.NeedsMacOS, match="needs-macos: executorch coreml-ane .*CoreMLBackend is not registered"):
        export.load(art)


@pytest.mark.parametrize("backend,recipe", [(b, export.get_backend(b).RECIPES.names()[0]) for b in export.BACKENDS])
def test_converter_failure_is_one_line_naming_backend_and_recipe(work, backend, recipe):
    x = np.ones((1, 640), np.float32)
    with pytest.raises(export.ConversionFailed) as info:
        export.get_backend(backend).export(DataDependent(), (x,), recipe, work / f"fail-{backend}")
    message = str(info.value)
    assert message.startswith(f"{backend} {recipe}: conversion failed: ") and "\n" not in message
    assert info.value.__cause__ is not None  # the converter's traceback is kept for the log


# ---- the CLI: one real export in a subprocess ---------------------------------------------------------------

def cli_command() -> list[str]:
    script = Path(sys.executable).parent / "export-prefix"
    return [str(script)] if script.exists() else [sys.executable, "-m", "toolkit.exporting.cli"]


@pytest.fixture(scope="module")
def cli_export(work, checkpoint, corpus):
    out = work / "cli-out"
    proc = subprocess.run([*cli_command(), "--checkpoint", str(checkpoint), "--target", "all", "--out", str(out),
                           "--corpus", str(corpus), "--calibration-utts", str(CALIBRATION_UTTS),
                           "--no-parity"],  # parity has its own tests (tests/test_parity.py)
                          capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, json.loads((out / "manifest.json").read_text()), proc


def test_cli_writes_artifacts_and_manifest(cli_export, checkpoint):
    out, manifest, proc = cli_export
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "prefix-k2-int8-static.pte",
                                                     "prefix-k2-int8-static.tflite",
                                                     "prefix-k2-int8-weights.mlpackage"]
    assert manifest["checkpoint"]["sha256"] == file_sha256(checkpoint)
    assert manifest["checkpoint"]["config"]["n_blocks"] == 2
    assert manifest["split_layer"] == 2 and manifest["trained_chunked_through"] == 2
    assert manifest["chunked_beyond_training"] is False
    assert manifest["recipe"] == {"executorch": "int8-static", "litert": "int8-static", "coreml": "int8-weights"}
    assert manifest["input"] == {**manifest["input"], "name": "pcm", "shape": [1, 32000], "dtype": "float32",
                                 "sample_rate": 16000, "chunk_samples": 32000}
    assert manifest["output"] == {**manifest["output"], "name": "embeddings", "shape": [1, 50, 64],
                                  "dtype": "float32", "frames_per_chunk": 50, "frame_rate_hz": 25.0,
                                  "embedding_dim": 64}
    assert manifest["calibration"]["utterances"] == CALIBRATION_UTTS
    assert manifest["calibration"]["chunks"] >= CALIBRATION_UTTS
    assert "loud" not in manifest["calibration"]  # speech only unless --calibration-loud
    assert {"torch", "executorch", "litert-torch", "ai-edge-litert", "coremltools"} <= set(manifest["libraries"])
    for entry in manifest["artifacts"]:
        path = out / entry["file"]
        art = export.Artifact.from_json(entry, out)
        assert entry["sha256"] == art.sha256() and entry["size_bytes"] == art.size_bytes
        assert entry["export_seconds"] > 0 and entry["libraries"]
        assert entry["input"]["shape"] == manifest["input"]["shape"]
        assert entry["output"]["shape"] == manifest["output"]["shape"]
        assert path.exists()
    delegation = manifest["artifacts"][0]["delegation"]
    assert manifest["artifacts"][0]["backend"] == "executorch" and 0 < delegation["ops_delegated"] <= delegation["ops_total"]
    assert "prefix-k2-int8-static.pte" in proc.stdout and "needs-macos" in proc.stdout  # the summary
    assert "[3/3] coreml int8-weights" in proc.stderr  # progress per step


def test_cli_artifacts_run_and_match_the_manifest(cli_export, held_out):
    out, manifest, _ = cli_export
    chunks, refs = held_out
    for entry in manifest["artifacts"]:
        art = export.Artifact.from_json(entry, out)
        if entry["backend"] == "coreml":
            if not ON_MACOS:
                assert entry["check"]["status"] == "needs-macos"
                with pytest.raises(export.NeedsMacOS):
                    export.load(art)
            assert entry["spec"]["inputs"][0]["shape"] == manifest["input"]["shape"]
            continue
        floor = MIN_SNR_DB[recipe_of(entry["backend"], entry["recipe"]).precision]
        assert entry["check"]["status"] == "ran" and entry["check"]["snr_db"] >= floor
        y = export.load(art)(chunks[0])
        assert list(y.shape) == manifest["output"]["shape"] and y.dtype.name == manifest["output"]["dtype"]
        assert export.snr_db(refs[0], y) >= floor


def test_exports_are_byte_identical_across_processes(cli_export, exported):
    """The CLI subprocess and this process exported the same checkpoint + recipe + calibration."""
    out, manifest, _ = cli_export
    for entry in manifest["artifacts"]:
        assert entry["deterministic"] is True
        mine = exported(entry["backend"], entry["recipe"])
        assert mine.sha256() == entry["sha256"], f"{entry['file']} differs between two exports"


def test_split_layer_beyond_training_is_recorded_and_out_dir_replaced(work, corpus):
    ckpt = write_checkpoint(work / "trained-k1.safetensors", split_layer=1)
    out = work / "beyond"
    for _ in range(2):  # the second run replaces the first export in place
        rc = export_main(["--checkpoint", str(ckpt), "--target", "ios", "--recipe", "fp32", "--split-layer", "2",
                          "--out", str(out), "--corpus", str(corpus), "--no-parity"])
        assert rc == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["split_layer"] == 2 and manifest["trained_chunked_through"] == 1
    assert manifest["chunked_beyond_training"] is True and manifest["calibration"] is None
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "prefix-k2-fp32.mlpackage"]
    assert not [p for p in work.iterdir() if p.name.startswith(".beyond")]


# ---- CLI errors: one line, exit 2, nothing left behind ------------------------------------------------------

def assert_one_line_error(capsys, rc: int, *fragments: str, prog: str = "export-prefix",
                          after_progress: bool = False) -> str:
    """Exit 2 and the error as the last stderr line; before any work started, the only line."""
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert err and err[-1].startswith(f"{prog}: "), err
    assert after_progress or len(err) == 1, err
    assert not any("Traceback" in line for line in err), err
    for fragment in fragments:
        assert fragment in err[-1], err[-1]
    return err[-1]


def assert_nothing_written(parent: Path, name: str) -> None:
    assert not (parent / name).exists()
    assert not [p.name for p in parent.iterdir() if p.name.startswith(f".{name}.")]


@pytest.mark.parametrize("args,fragments", [
    (["--target", "watch"], ["unknown target 'watch'", "android, ios, all"]),
    (["--target", "ios", "--recipe", "int8-static"], ["coreml has no recipe 'int8-static'", "int8-weights"]),
    (["--target", "android", "--recipe", "coreml=fp16"], ["backend coreml is not part of target 'android'"]),
    (["--target", "android", "--recipe", "litert=8da4w"], ["litert has no recipe '8da4w'"]),
    (["--split-layer", "3"], ["split layer 3 is outside 1..2"]),
    (["--split-layer", "0"], ["split layer 0 is outside 1..2"]),
], ids=["target", "recipe", "recipe-backend", "recipe-for-backend", "split-high", "split-zero"])
def test_cli_rejects_bad_requests(capsys, work, checkpoint, args, fragments):
    rc = export_main(["--checkpoint", str(checkpoint), "--out", str(work / "bad-request"), *args])
    assert_one_line_error(capsys, rc, *fragments)
    assert_nothing_written(work, "bad-request")


def test_cli_error_is_one_line_also_as_veil_export(capsys, work, checkpoint):
    rc = veil_main(["export-prefix", "--checkpoint", str(checkpoint), "--target", "desktop"])
    assert_one_line_error(capsys, rc, "unknown target 'desktop'", prog="veil export-prefix")


def test_cli_missing_checkpoint(capsys, work):
    rc = export_main(["--checkpoint", str(work / "nope.safetensors"), "--out", str(work / "missing")])
    assert_one_line_error(capsys, rc, "nope.safetensors", "checkpoint not found")
    assert_nothing_written(work, "missing")


@pytest.mark.parametrize("damage", ["weights", "config"])
def test_cli_corrupt_checkpoint(capsys, work, checkpoint, damage):
    bad = work / f"corrupt-{damage}.safetensors"
    shutil.copy(checkpoint, bad)
    shutil.copy(checkpoint.with_suffix(".json"), bad.with_suffix(".json"))
    target = bad if damage == "weights" else bad.with_suffix(".json")
    target.write_bytes(target.read_bytes()[:200])
    rc = export_main(["--checkpoint", str(bad), "--out", str(work / "corrupt")])
    assert_one_line_error(capsys, rc, "corrupt")
    assert_nothing_written(work, "corrupt")


def test_cli_output_dir_not_writable(capsys, work, checkpoint):
    blocker = work / "a-file"
    blocker.write_text("not a directory")
    rc = export_main(["--checkpoint", str(checkpoint), "--target", "ios", "--out", str(blocker / "export")])
    assert_one_line_error(capsys, rc, "not writable")
    occupied = work / "occupied"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("mine")
    rc = export_main(["--checkpoint", str(checkpoint), "--target", "ios", "--out", str(occupied)])
    assert_one_line_error(capsys, rc, "not empty")
    assert [p.name for p in occupied.iterdir()] == ["notes.txt"]


def test_cli_converter_failure(capsys, work, corpus):
    """A diverged checkpoint (a NaN weight) makes PT2E calibration fail inside the converter stack."""
    ckpt = write_checkpoint(work / "diverged.safetensors", poison=True)
    rc = export_main(["--checkpoint", str(ckpt), "--target", "android", "--recipe", "executorch=int8-static",
                      "--out", str(work / "diverged-out"), "--corpus", str(corpus),
                      "--calibration-utts", "1"])
    line = assert_one_line_error(capsys, rc, "executorch int8-static: conversion failed", "full log: ",
                                 after_progress=True)
    log = Path(line.rsplit("full log: ", 1)[1].rstrip(")"))
    assert "Traceback" in log.read_text()
    log.unlink()
    assert_nothing_written(work, "diverged-out")
