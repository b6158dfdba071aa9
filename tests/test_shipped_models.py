"""The checkpoints committed under models/: their size budget and what each one is."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from toolkit.exporting.manifest import write_bottleneck
from toolkit.model.checkpoint import load_checkpoint
from toolkit.paths import DEFAULT_MODEL, NORMALIZED

MODELS = Path(__file__).resolve().parents[1] / "models"
SHIPPED = {"k6-d16-n0.5.safetensors", "baseline.safetensors", "normalized.safetensors"}


def test_the_shipped_checkpoints_fit_the_repos_25_mb():
    files = sorted(MODELS.glob("*.safetensors"))
    assert {f.name for f in files} == SHIPPED
    assert sum(f.stat().st_size for f in files) <= 25 * 10 ** 6


def test_every_shipped_model_has_its_card_and_metrics_and_the_default_recognizes():
    """No model file without its .json and its `veil evaluate` metrics; the default's test WER is <= 35 %."""
    for name in SHIPPED:
        stem = name.removesuffix(".safetensors")
        assert (MODELS / f"{stem}.json").is_file() and (MODELS / f"metrics-{stem}.json").is_file(), stem
    metrics = json.loads((MODELS / f"metrics-{DEFAULT_MODEL.stem}.json").read_text())
    assert metrics["checkpoint"] == f"models/{DEFAULT_MODEL.name}" and metrics["results"]["test"]["wer"] <= 35.0


def test_the_default_is_the_normalized_models_first_blocks_then_a_noisy_16_dim_channel_after_block_6(tmp_path):
    """Every command's default: the normalized model's frontend and blocks 1-4 bit for bit (frozen in training),
    its blocks 5-6 fine-tuned to run chunk-local on the phone, a 144 -> 16 projection at unit RMS and N(0, 0.5^2)
    noise on the phone; the cloud runs its own two blocks."""
    assert DEFAULT_MODEL == MODELS / "k6-d16-n0.5.safetensors"
    default, _ = load_checkpoint(DEFAULT_MODEL)
    normalized, _ = load_checkpoint(NORMALIZED)
    cfg = default.cfg
    assert (cfg.split_layer, cfg.norm_layer, cfg.split_norm, cfg.split_norm_floor) == (6, 4, "chunk", 0.01)
    assert (cfg.bottleneck_dim, cfg.vq_codes, cfg.bottleneck_noise, cfg.suffix_blocks) == (16, 0, 0.5, 2)
    for mine, theirs in ((default.frontend, normalized.frontend), (default.subsampling, normalized.subsampling),
                         *zip(default.blocks[:4], normalized.blocks[:4])):
        a, b = mine.state_dict(), theirs.state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(p, q) for p, q in zip(default.blocks[4].parameters(), normalized.blocks[4].parameters()))
    section = write_bottleneck(default, 6, tmp_path)
    assert section == {"dim": 16, "payload_codec": "int8", "codebook": None, "noise_std": 0.5}
