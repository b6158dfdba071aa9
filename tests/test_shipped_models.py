"""The checkpoints committed under models/: their size budget and what each one is."""
from __future__ import annotations

from pathlib import Path

from toolkit.exporting.manifest import write_bottleneck
from toolkit.model.checkpoint import load_checkpoint
from toolkit.privacy.frontier import same_phone_blocks

MODELS = Path(__file__).resolve().parents[1] / "models"


def test_the_shipped_checkpoints_fit_the_repos_25_mb():
    files = sorted(MODELS.glob("*.safetensors"))
    assert {f.name for f in files} == {"anonymized.safetensors", "baseline.safetensors", "private.safetensors"}
    assert sum(f.stat().st_size for f in files) <= 25 * 10 ** 6


def test_the_private_model_is_the_anonymized_phone_plus_a_noisy_16_dim_channel(tmp_path):
    private, _ = load_checkpoint(MODELS / "private.safetensors")
    anonymized, _ = load_checkpoint(MODELS / "anonymized.safetensors")
    cfg = private.cfg
    assert (cfg.split_layer, cfg.bottleneck_dim, cfg.vq_codes, cfg.bottleneck_noise) == (4, 16, 0, 2.0)
    # the phone's blocks are the anonymized model's, bit for bit: only the projection and the noise are new
    assert same_phone_blocks(private.eval(), anonymized.eval(), 4)
    section = write_bottleneck(private, 4, tmp_path)
    assert section == {"dim": 16, "payload_codec": "int8", "codebook": None, "noise_std": 2.0}
