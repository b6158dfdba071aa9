"""Checkpoint round trip and the errors a bad checkpoint gives."""
import json

import pytest
import torch

from toolkit.errors import VeilError
from toolkit.model.asr import VeilModel
from toolkit.model.checkpoint import config_path, file_sha256, load_checkpoint, save_checkpoint
from toolkit.text.tokenizer import CharTokenizer
from tests.conftest import small_config


@pytest.fixture
def ckpt(tmp_path, small_model):
    return save_checkpoint(tmp_path / "m.safetensors", small_model, CharTokenizer(), ["a", "b", "c", "d"],
                           {"command": "test", "steps": 3})


def test_round_trip(ckpt, small_model):
    model, config = load_checkpoint(ckpt)
    for (k, v), (k2, v2) in zip(small_model.state_dict().items(), model.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)
    assert config["model"]["grl_layers"] == [1] and config["model"]["split_layer"] == 1
    assert config["tokenizer"]["kind"] == "char" and config["speakers"] == ["a", "b", "c", "d"]
    assert config["provenance"]["steps"] == 3
    assert config["weights_sha256"] == file_sha256(ckpt)
    pcm = torch.randn(1, 20000) * 0.1
    with torch.no_grad():
        # identical weights; allclose, not equal: threaded CPU kernels may split sums differently run to run
        assert torch.allclose(model(pcm, torch.tensor([20000]))["log_probs"],
                              small_model(pcm, torch.tensor([20000]))["log_probs"], atol=1e-5)
    assert not list(ckpt.parent.glob(".*"))  # no temp files left


def test_corrupt_weights(ckpt):
    data = ckpt.read_bytes()
    ckpt.write_bytes(data[: len(data) // 2])
    with pytest.raises(VeilError, match="corrupt or unreadable safetensors"):
        load_checkpoint(ckpt)
    ckpt.write_bytes(b"\x00" * 64)
    with pytest.raises(VeilError, match="m.safetensors"):
        load_checkpoint(ckpt)


def test_missing_or_bad_config(ckpt):
    cfg = config_path(ckpt)
    original = cfg.read_text()
    cfg.write_text("{not json")
    with pytest.raises(VeilError, match="corrupt checkpoint config"):
        load_checkpoint(ckpt)
    cfg.write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(VeilError, match="not a Veil checkpoint config"):
        load_checkpoint(ckpt)
    bad = json.loads(original)
    bad["model"]["d_model"] = 32
    cfg.write_text(json.dumps(bad))
    with pytest.raises(VeilError, match="shape"):
        load_checkpoint(ckpt)
    cfg.unlink()
    with pytest.raises(VeilError, match="config m.json is missing"):
        load_checkpoint(ckpt)
    with pytest.raises(VeilError, match="checkpoint not found"):
        load_checkpoint(ckpt.parent / "nope.safetensors")


def test_weights_from_other_architecture(ckpt, tmp_path):
    other = save_checkpoint(tmp_path / "o.safetensors", VeilModel(small_config(n_blocks=3, grl_layers=[])),
                            CharTokenizer(), [], {})
    config_path(other).write_text(config_path(ckpt).read_text())
    with pytest.raises(VeilError, match="do not match the config"):
        load_checkpoint(other)


def test_publish_float16(ckpt, tmp_path, small_model):
    from toolkit.model.checkpoint import publish_checkpoint
    dst = publish_checkpoint(ckpt, tmp_path / "pub.safetensors")
    model, config = load_checkpoint(dst)
    assert config["storage_dtype"] == "float16" and config["provenance"]["source_sha256"] == file_sha256(ckpt)
    assert dst.stat().st_size < 0.6 * ckpt.stat().st_size
    for (k, v), v2 in zip(small_model.state_dict().items(), model.state_dict().values()):
        assert v2.dtype == v.dtype and torch.allclose(v, v2, rtol=1e-3, atol=1e-4), k
