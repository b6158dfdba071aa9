"""The export manifest, the one contract between the export and its readers (parity, bench, privacy, the
service, the phone apps): written once, read and checked once (``ExportManifest.read``), with a chunk geometry
(``ChunkSpec``) and a prefix identity; sections a reader does not know are kept, never rejected."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

import export
from toolkit.chunking import ChunkSpec
from toolkit.cli import main as veil_main
from toolkit.errors import VeilError
from toolkit.exporting.manifest import MANIFEST_FORMAT, ExportManifest
from toolkit.exporting.prefix_export import ExportRequest, export_prefix
from toolkit.files import file_sha256
from toolkit.model.asr import VeilModel
from toolkit.model.checkpoint import save_checkpoint
from toolkit.paths import REPO_ROOT
from toolkit.text.tokenizer import CharTokenizer
from tests.conftest import small_config


def write_small_checkpoint(path: Path, seed: int = 0, **overrides) -> Path:
    torch.manual_seed(seed)
    model = VeilModel(small_config(**overrides))
    with torch.no_grad():
        model.frontend.feat_mean.fill_(-6.0)
        model.frontend.feat_std.fill_(3.0)
    return save_checkpoint(path, model, CharTokenizer(), speakers=list("abcd"), provenance={})


@pytest.fixture(scope="module")
def exported(tmp_path_factory, one_torch_thread):
    """An ExecuTorch fp32 export (a backend's name is a target of its own); no corpus: synthetic check audio."""
    work = tmp_path_factory.mktemp("manifest")
    ckpt = write_small_checkpoint(work / "small.safetensors")
    out, manifest = export_prefix(ExportRequest(checkpoint=ckpt, target="executorch", recipes=["fp32"],
                                                out=work / "export", corpus=work / "no-corpus"))
    return ckpt, out, manifest


def copy_with(exported_dir: Path, dest: Path, edit) -> Path:
    shutil.copytree(exported_dir, dest)
    data = json.loads((dest / "manifest.json").read_text())
    edit(data)
    (dest / "manifest.json").write_text(json.dumps(data))
    return dest


def test_the_manifest_carries_geometry_identity_and_artifacts(exported):
    ckpt, out, written = exported
    m = ExportManifest.read(out)
    assert m.data == written.data and m.data["format"] == MANIFEST_FORMAT
    assert m.chunk == ChunkSpec(16000, 16000, 640) == small_config().chunk
    assert (m.chunk.chunk_frames, m.chunk.chunk_seconds, m.chunk.frame_rate_hz) == (25, 1.0, 25.0)
    identity = m.prefix_identity
    assert identity.checkpoint_sha256 == file_sha256(ckpt) and identity.split_layer == m.split_layer == 1
    assert identity.key == f"{file_sha256(ckpt)}:k1" and identity.to_json()["split_layer"] == 1
    assert identity.raw_sha256 == bytes.fromhex(file_sha256(ckpt)) and identity.short == f"{identity.key[:12]}:k1"
    assert m.embedding_dim == small_config().d_model == m.data["output"]["embedding_dim"]
    assert m.recipes == {"executorch": "fp32"} and m.calibration is None
    (entry, art), = m.artifacts()
    assert art.backend == "executorch" and art.path == out / entry["file"] and art.sha256() == entry["sha256"]
    model, _ = m.load_checkpoint()
    assert model.cfg.chunk == m.chunk


def test_sections_a_reader_does_not_know_are_ignored_and_kept(exported, tmp_path):
    """A later version may add optional sections (as the bottleneck section was added): an older reader neither
    rejects them nor drops them when it rewrites the manifest (as parity does)."""
    _, out, _ = exported
    section = {"kind": "voice-filter", "file": "filter.npy", "sha256": "0" * 64}

    def add(data):
        data["voice_filter"] = section
        data["artifacts"][0]["future_field"] = [1, 2]
    d = copy_with(out, tmp_path / "newer", add)
    m = ExportManifest.read(d)
    assert m.section("voice_filter") == section and m.section("nothing") is None
    m.data["parity"] = {"verdict": "pass"}
    m.write()
    again = json.loads((d / "manifest.json").read_text())
    assert again["voice_filter"] == section and again["artifacts"][0]["future_field"] == [1, 2]
    assert again["parity"] == {"verdict": "pass"}


@pytest.mark.parametrize("edit,message", [
    (lambda d: d.update(format="veil-export/2"), "format veil-export/2 is not one this Veil reads"),
    (lambda d: d.update(format="something-else/1"), "not a Veil export manifest"),
    (lambda d: d.pop("split_layer"), "not a Veil export manifest (missing or bad field 'split_layer')"),
    (lambda d: d["output"].pop("frame_samples"), "missing or bad field 'frame_samples'"),
    (lambda d: d["output"].pop("embedding_dim"), "missing or bad field 'embedding_dim'"),
    (lambda d: d["checkpoint"].update(sha256="FC5F"), "checkpoint.sha256 'FC5F' is not 64 lowercase hex digits"),
    (lambda d: d["input"].update(shape=[1, 32000]), "chunk length mismatch"),
    (lambda d: d["artifacts"][0]["input"].update(shape=[1, 8000]),
     "takes 8000-sample chunks (its manifest entry) but manifest.json input.chunk_samples says 16000"),
    (lambda d: d["artifacts"][0].update(sha256="0" * 64), "sha256 differs from manifest.json"),
    (lambda d: d["artifacts"][0].update(file="gone.pte"), "artifact listed in manifest.json is missing"),
    (lambda d: d["artifacts"][0].update(backend="qnn"), "backend 'qnn', which this Veil does not know"),
    (lambda d: d.update(artifacts=[]), "lists no artifacts"),
], ids=["newer-format", "other-format", "field", "frame-samples", "embedding-dim", "checkpoint-sha", "input-shape",
        "entry-shape", "sha256", "missing-file", "unknown-backend", "no-artifacts"])
def test_every_boundary_problem_is_one_line(exported, tmp_path, capsys, edit, message):
    _, out, _ = exported
    d = copy_with(out, tmp_path / "bad", edit)
    with pytest.raises(VeilError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        ExportManifest.read(d)
    # every reader goes through it: bench, for one, fails in one line (no KeyError on an unknown backend)
    assert veil_main(["bench", str(d), "--quick", "--runs", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert message.split(" (")[0].split("'")[0] in err and "\n" not in err and "Traceback" not in err


def test_the_file_itself_is_checked_not_only_the_manifest(exported, tmp_path):
    """A manifest edited consistently (input and entry) still disagrees with what the artifact declares."""
    _, out, _ = exported

    def double(data):
        data["input"].update(shape=[1, 32000], chunk_samples=32000)
        data["artifacts"][0]["input"]["shape"] = [1, 32000]
        data["artifacts"][0]["output"]["shape"] = [1, 50, 64]
    d = copy_with(out, tmp_path / "consistent", double)
    with pytest.raises(VeilError, match=r"takes 16000-sample chunks \(the file declares shape \[1, 16000\]\)"):
        ExportManifest.read(d)


def test_the_checkpoint_must_be_the_one_exported(exported, tmp_path):
    _, out, _ = exported
    m = ExportManifest.read(out)
    other = write_small_checkpoint(tmp_path / "other.safetensors", seed=1)
    with pytest.raises(VeilError, match="not the checkpoint this export was made from"):
        m.load_checkpoint(other)
    with pytest.raises(VeilError, match="checkpoint of this export not found"):
        m.load_checkpoint(tmp_path / "nope.safetensors")
    with pytest.raises(VeilError, match=r"--backend coreml: unknown backend|export has no coreml artifact"):
        ExportManifest.read(out, only=["coreml"])


def test_a_relative_checkpoint_path_is_found_from_the_repository_root(exported, tmp_path, monkeypatch):
    """export-prefix records the checkpoint as it was given (usually relative to the repository); readers that
    run elsewhere (the service, a benchmark) still find it."""
    ckpt, out, _ = exported
    d = copy_with(out, tmp_path / "relative",
                  lambda data: data["checkpoint"].update(path="models/k6-d16-n0.5.safetensors"))
    m = ExportManifest.read(d)
    monkeypatch.chdir(tmp_path)
    assert m.checkpoint_file() == REPO_ROOT / "models" / "k6-d16-n0.5.safetensors"
    assert m.checkpoint_file(ckpt) == ckpt


def test_chunk_geometry():
    chunk = ChunkSpec(16000, 32000, 640)
    assert chunk.frames_for(32001) == 51 and chunk.frames_for(640) == 1 and chunk.chunks_for(32001) == 2
    assert chunk.chunks_for(0) == 1
    with pytest.raises(ValueError, match="chunk_samples=32001 is not a multiple of 640"):
        ChunkSpec(16000, 32001, 640)
    assert export.targets()["ios"] == ["coreml"]
