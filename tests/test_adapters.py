"""Model adapters (toolkit/adapters): other encoders through export, parity and bench.

Each architecture is built with the library's own config class at a small size; weights come from a file the
test writes (no download). Exports run in the real runtimes on the tiny synthesized corpus."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from toolkit.adapters import open_adapter
from toolkit.errors import VeilError
from toolkit.exporting import cli as export_cli

transformers = pytest.importorskip("transformers", reason="transformers is a pinned dependency (pyproject.toml)")


def _w2v_config(cls):
    return cls(hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64, conv_dim=(16,) * 7,
               num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=2, vocab_size=29)


@pytest.mark.parametrize("name, model_cls, config_cls, filename", [
    ("hf-wav2vec2", "Wav2Vec2ForCTC", "Wav2Vec2Config", "model.safetensors"),
    ("hf-hubert", "HubertForCTC", "HubertConfig", "pytorch_model.bin"),
])
def test_wav2vec2_family_prefix_is_the_library_model_cut(tmp_path, name, model_cls, config_cls, filename):
    config = _w2v_config(getattr(transformers, config_cls))
    torch.manual_seed(3)
    model = getattr(transformers, model_cls)(config).eval()
    config.to_json_file(str(tmp_path / "config.json"))
    if filename.endswith(".safetensors"):
        from safetensors.torch import save_file
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / filename))
    else:
        torch.save(model.state_dict(), tmp_path / filename)
    adapter = open_adapter(adapter=name, config=str(tmp_path / "config.json"), weights=tmp_path / filename)
    assert adapter.chunk.chunk_samples == 32000 and adapter.chunk.frame_samples == 320
    pcm = torch.from_numpy(np.random.default_rng(0).standard_normal((1, 32000)).astype(np.float32) * 0.1)
    with torch.no_grad():
        ours = adapter.prefix(2)(pcm)
        padded = torch.nn.functional.pad(pcm, (0, adapter.pad_samples))  # the prefix pads the chunk in-graph
        theirs = model.base_model(padded, output_hidden_states=True).hidden_states[2]
        log_probs = adapter.suffix(2)(ours, torch.ones(1, ours.shape[1], dtype=torch.bool))
        reference = torch.log_softmax(model(padded).logits, dim=-1)
    assert ours.shape == (1, 100, 32)
    assert torch.allclose(ours, theirs, atol=1e-4)
    assert torch.allclose(log_probs, reference, atol=1e-4)  # prefix + suffix = the whole ForCTC model
    assert adapter.identity_sha256() != open_adapter(adapter=name, config="tiny").identity_sha256()


def test_whisper_frontend_and_prefix_match_the_library(tmp_path):
    config = transformers.WhisperConfig(d_model=32, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=64,
                                        decoder_layers=1, decoder_attention_heads=2, decoder_ffn_dim=64,
                                        max_source_positions=100, max_target_positions=16, vocab_size=40,
                                        pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=3)
    torch.manual_seed(4)
    model = transformers.WhisperForConditionalGeneration(config).eval()
    model.save_pretrained(str(tmp_path))  # config.json + model.safetensors, as a user's checkpoint folder
    adapter = open_adapter(adapter="hf-whisper", config=str(tmp_path), weights=tmp_path / "model.safetensors")
    pcm = np.random.default_rng(1).standard_normal(32000).astype(np.float32) * 0.1
    features = transformers.WhisperFeatureExtractor(feature_size=80)._np_extract_fbank_features(pcm[None], "cpu")
    prefix = adapter.prefix(1)  # the library's last hidden state has the final layer norm applied: compare block 1
    with torch.no_grad():
        ours = prefix(torch.from_numpy(pcm)[None])
        logmel = prefix.frontend(torch.from_numpy(pcm)[None])
        theirs = model.model.encoder(torch.from_numpy(features).float(), output_hidden_states=True).hidden_states[1]
    assert np.abs(logmel.numpy() - features).max() < 1e-5
    assert torch.allclose(ours, theirs, atol=1e-4)
    assert adapter.suffix(2) is None


def test_weights_that_do_not_fit_are_one_line(tmp_path):
    from safetensors.torch import save_file
    save_file({"lm_head.weight": torch.zeros(3, 3)}, str(tmp_path / "w.safetensors"))
    (tmp_path / "junk.bin").write_bytes(b"not a checkpoint")
    with pytest.raises(VeilError, match="weights do not fit the model"):
        open_adapter(adapter="hf-wav2vec2", config="tiny", weights=tmp_path / "w.safetensors")
    with pytest.raises(VeilError, match="cannot read weights"):
        open_adapter(adapter="hf-wav2vec2", config="tiny", weights=tmp_path / "junk.bin")
    with pytest.raises(VeilError, match="unknown adapter 'nope'"):
        open_adapter(adapter="nope")
    with pytest.raises(VeilError, match="cut 9 is outside 1..4"):
        open_adapter(adapter="hf-wav2vec2", config="tiny").check_cut(9)


def test_export_prefix_wav2vec2_android_end_to_end(tmp_path, tiny_corpus, capsys):
    """The issue's command: int8 ExecuTorch + LiteRT, run in their runtimes, then parity on real audio."""
    out = tmp_path / "w2v"
    rc = export_cli.main(["--adapter", "hf-wav2vec2", "--config", "tiny", "--cut", "4", "--target", "android",
                          "--corpus", str(tiny_corpus), "--calibration-utts", "6", "--parity-utts", "4",
                          "--out", str(out), "--no-bundle"])
    assert rc == 0, capsys.readouterr().err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["adapter"]["name"] == "hf-wav2vec2" and manifest["split_layer"] == 4
    assert manifest["output"]["shape"] == [1, 100, 64] and manifest["input"]["shape"] == [1, 32000]
    by_backend = {a["backend"]: a for a in manifest["artifacts"]}
    assert by_backend["executorch"]["recipe"] == "int8-static" and by_backend["litert"]["recipe"] == "int8-dynamic"
    pte = by_backend["executorch"]
    assert pte["delegation"]["delegated_subgraphs"] == 1 and not pte["delegation"]["not_delegated"]
    assert manifest["adapter"]["not_delegated"] == {}  # nothing left out of XNNPACK, so nothing to explain
    parity = json.loads((out / "parity.json").read_text())
    assert parity["verdict"] == "pass"
    for a in parity["artifacts"]:
        assert a["runtime"] and a["numeric"]["snr_db"] >= 20.0, (a["file"], a["numeric"]["snr_db"])
        assert a["stress"]["cases"] and np.isfinite(a["cloud"]["dwer"])  # ΔWER through the ForCTC head
    # a foreign model's manifest still names its prefix identity: the weights' own sha256 for a preset
    assert manifest["checkpoint"]["sha256"] == open_adapter(adapter="hf-wav2vec2", config="tiny").identity_sha256()


MODULE_SOURCE = '''
import torch
from torch import nn

class Prefix(nn.Module):
    def __init__(self, k):
        super().__init__()
        torch.manual_seed(0)
        self.frontend = nn.Conv1d(1, 16, 400, stride=320)   # PCM -> frames, kept float
        self.blocks = nn.ModuleList(nn.Linear(16, 16) for _ in range(k))

    def forward(self, pcm):
        x = torch.relu(self.frontend(nn.functional.pad(pcm, (0, 80))[:, None, :])).transpose(1, 2)
        n, t, d = x.shape
        x = x.reshape(n * t, d)
        for block in self.blocks:
            x = torch.relu(block(x))
        return x.reshape(n, t, d)

def build(weights=None):
    return {"prefix": Prefix, "n_blocks": 3, "chunk_samples": 16000, "frame_samples": 320}
'''


def test_any_module_exports_with_model_and_cut(tmp_path, tiny_corpus, monkeypatch, capsys):
    (tmp_path / "myasr.py").write_text(MODULE_SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "mod"
    rc = export_cli.main(["--model", "myasr:build", "--cut", "2", "--target", "executorch", "--recipe", "fp32",
                          "--corpus", str(tiny_corpus), "--out", str(out), "--no-parity"])
    assert rc == 0, capsys.readouterr().err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["adapter"]["model"] == "myasr:build" and manifest["adapter"]["has_suffix"] is False
    assert manifest["artifacts"][0]["check"]["snr_db"] > 60
    assert export_cli.main(["--model", "myasr:nothing", "--out", str(tmp_path / "x")]) == 2
    assert "myasr has no function nothing" in capsys.readouterr().err


def test_conformer_loads_a_nemo_state_dict_and_its_rel_shift_is_relative(tmp_path):
    from safetensors.torch import save_file

    from toolkit.adapters.conformer import (ConformerCTC, ConformerConfig, RelPositionMultiHeadAttention, rel_positions,
                                            rel_shift_matrix)
    cfg = ConformerConfig(n_layers=2, d_model=32, n_heads=2, subsampling_conv_channels=16, vocab_size=28)
    torch.manual_seed(5)
    state = {k: v for k, v in ConformerCTC(cfg).state_dict().items()}
    assert "encoder.layers.0.self_attn.linear_pos.weight" in state and "decoder.decoder_layers.0.weight" in state
    state["preprocessor.featurizer.fb"] = torch.zeros(1, 80, 257)  # NeMo's own buffers: recomputed, ignored
    save_file(state, str(tmp_path / "model_weights.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps({"encoder": {"n_layers": 2, "d_model": 32, "n_heads": 2,
                                                                  "subsampling_conv_channels": 16},
                                                      "labels": list(" abcdefghijklmnopqrstuvwxyz'")}))
    adapter = open_adapter(adapter="conformer", config=str(tmp_path / "config.json"),
                           weights=tmp_path / "model_weights.safetensors")
    assert torch.equal(adapter.model.encoder.layers[1].self_attn.pos_bias_u, state["encoder.layers.1.self_attn.pos_bias_u"])
    with torch.no_grad():
        emb = adapter.prefix(1)(torch.randn(1, 32000) * 0.1)
        log_probs = adapter.suffix(1)(emb)
    assert emb.shape == (1, 50, 32) and log_probs.shape == (1, 50, 29)
    assert isinstance(adapter.tokenizer().decode([1, 2, 0, 3]), str)
    # Transformer-XL's rel_shift: the positional score of query i and key j uses the encoding of i - j
    att, t = RelPositionMultiHeadAttention(8, 1).eval(), 5
    x, pos = torch.randn(1, t, 8), rel_positions(t, 8)
    with torch.no_grad():
        q, p = att.linear_q(x)[0] + att.pos_bias_v[0], att.linear_pos(pos)[0]
        k, v = att.linear_k(x)[0] + 0, att.linear_v(x)[0]
        scores = torch.stack([torch.stack([(q[i] - att.pos_bias_v[0] + att.pos_bias_u[0]) @ k[j] + q[i] @ p[t - 1 - (i - j)]
                                           for j in range(t)]) for i in range(t)]) / math.sqrt(8)
        want = att.linear_out(torch.softmax(scores, dim=-1) @ v)
        assert torch.allclose(att(x, pos)[0], want, atol=1e-5)
        assert torch.allclose(att(x, pos, None, rel_shift_matrix(t)), att(x, pos), atol=1e-6)  # the export's form


@pytest.mark.parametrize("adapter, cut, pte_recipe", [("hf-whisper", 2, "8da4w"), ("conformer", 2, "8da4w")])
def test_whisper_and_conformer_export_android_and_pass_parity(tmp_path, tiny_corpus, capsys, adapter, cut, pte_recipe):
    out = tmp_path / adapter
    rc = export_cli.main(["--adapter", adapter, "--config", "tiny", "--cut", str(cut), "--target", "android",
                          "--corpus", str(tiny_corpus), "--calibration-utts", "4", "--parity-utts", "2",
                          "--out", str(out), "--no-bundle"])
    assert rc == 0, capsys.readouterr().err
    manifest = json.loads((out / "manifest.json").read_text())
    assert {a["backend"]: a["recipe"] for a in manifest["artifacts"]}["executorch"] == pte_recipe
    assert manifest["adapter"]["phone_input"]["frontend"]
    for entry in manifest["artifacts"]:  # every op XNNPACK left out is named with a reason
        for op in (entry.get("delegation") or {}).get("not_delegated") or {}:
            assert manifest["adapter"]["not_delegated"][entry["file"]][op]["why"]
    parity = json.loads((out / "parity.json").read_text())
    for a in parity["artifacts"]:
        assert a["numeric"]["snr_db"] >= 20.0, (a["file"], a["numeric"]["snr_db"])
    assert (parity["float"].get("status") == "no-suffix") == (adapter == "hf-whisper")


def test_privacy_attacks_another_encoders_layers(tmp_path, tiny_corpus):
    from toolkit import cli
    out = tmp_path / "privacy"
    assert cli.main(["privacy", "--adapter", "hf-wav2vec2", "--config", "tiny", "--layers", "1,3", "--corpus",
                     str(tiny_corpus), "--out", str(out), "--attackers", "legacy"]) == 0
    report = json.loads((out / "privacy.json").read_text())
    model = report["models"]["hf-wav2vec2"]
    assert model["kind"] == "adapter" and model["config"] == "tiny" and sorted(model["layers"]) == ["1", "3"]
    assert model["sha256"] == open_adapter(adapter="hf-wav2vec2", config="tiny").identity_sha256()
