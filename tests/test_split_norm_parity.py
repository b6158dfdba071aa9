"""Parity on the shipped configuration, split_norm="chunk": the per-chunk instance normalization after the split
block is part of what the phone computes, so parity's Core ML fp16 estimate and its localization stages must
compute it too. (They once copied the prefix's forward without it: the shipped export's estimate read SNR
6.3 dB and nothing flagged it.) A 2-block model with the normalization after block 2, exported as shipped."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import export
from toolkit.cli import main as veil_main
from toolkit.exporting.cli import main as export_main
from toolkit.model.asr import ModelConfig, VeilModel, split
from toolkit.model.checkpoint import save_checkpoint
from toolkit.parity import gates
from toolkit.parity.coreml_offline import estimate_prefix
from toolkit.text.tokenizer import CharTokenizer

FP16_GATE_DB = gates.default_gates()["fp16"]["snr"]


def split_norm_model() -> VeilModel:
    torch.manual_seed(0)
    model = VeilModel(ModelConfig(n_blocks=2, split_layer=2, d_model=64, n_heads=4, subsampling_channels=16,
                                  chunk_samples=16000, grl_layers=[2], n_speakers=4, split_norm="chunk"))
    with torch.no_grad():  # realistic standardization, so the frontend keeps its sub/div ops
        model.frontend.feat_mean.fill_(-6.0)
        model.frontend.feat_std.fill_(3.0)
    return model.eval()


def test_fp16_estimate_of_a_split_norm_prefix_is_within_the_fp16_gate():
    """The estimate is the Prefix in float16 after the frontend: against the float32 Prefix it loses only
    float16 precision, split normalization included."""
    prefix = split(split_norm_model())[0].eval()
    pcm = torch.from_numpy(np.random.default_rng(0).standard_normal((4, 16000)).astype(np.float32) * 0.1)
    est = estimate_prefix(prefix, {}, {"tensors": []}, fp16=True)
    with torch.no_grad():
        ref, got = prefix(pcm).numpy(), est(pcm).numpy()
    assert got.dtype == np.float32 and got.shape == ref.shape
    snr = export.snr_db(ref, got)
    assert FP16_GATE_DB < snr < 100, f"fp16 estimate vs the prefix: SNR {snr:.1f} dB"


def test_parity_estimate_and_localization_of_a_split_norm_export(tmp_path, corpus, one_torch_thread):
    """Exported as shipped (Core ML int8-weights computes in fp16), parity's Core ML estimate stays within the
    fp16 gate, and localization's full-depth stage re-exports the ExecuTorch artifact byte for byte."""
    ckpt = save_checkpoint(tmp_path / "split-norm.safetensors", split_norm_model(), CharTokenizer(),
                           speakers=list("abcd"), provenance={})
    out = tmp_path / "export"
    assert export_main(["--checkpoint", str(ckpt), "--target", "all", "--recipe", "fp32", "--recipe",
                        "coreml=int8-weights", "--out", str(out), "--corpus", str(corpus), "--no-parity"]) == 0
    assert veil_main(["parity", str(out), "--corpus", str(corpus), "--parity-utts", "4", "--backend", "executorch",
                      "--backend", "coreml", "--localize", "always", "--no-bundle"]) == 0
    report = json.loads((out / "parity.json").read_text())
    by_backend = {a["backend"]: a for a in report["artifacts"]}
    estimate = by_backend["coreml"]["checked_on_linux"]["fp16_estimate"]
    assert float(estimate["numeric"]["snr_db"]) > FP16_GATE_DB, estimate["numeric"]
    assert estimate["cloud"]["dwer"] <= gates.DWER_MAX
    et = by_backend["executorch"]
    assert et["verdict"] == "pass"
    loc = et["localization"]
    assert [s["stage"] for s in loc["stages"]] == ["frontend+subsampling", "block 1", "block 2"]
    assert loc["full_depth_is_the_artifact"] is True and loc["reproduced"] is True
