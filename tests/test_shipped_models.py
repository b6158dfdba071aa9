"""The checkpoints committed under models/: their size budget and what each one is."""
from __future__ import annotations

from pathlib import Path

from toolkit.exporting.manifest import write_bottleneck
from toolkit.model.checkpoint import load_checkpoint
from toolkit.paths import DEFAULT_ANONYMIZED
from experiments.evaluate import same_phone_blocks

MODELS = Path(__file__).resolve().parents[1] / "models"


def test_the_shipped_checkpoints_fit_the_repos_25_mb():
    files = sorted(MODELS.glob("*.safetensors"))
    assert {f.name for f in files} == {"anonymized.safetensors", "baseline.safetensors", "normalized.safetensors"}
    assert sum(f.stat().st_size for f in files) <= 25 * 10 ** 6


def test_the_default_model_is_the_normalized_phone_plus_a_noisy_16_dim_channel(tmp_path):
    """Every command's default is the privacy point: the normalized model's phone blocks, bit for bit, then a
    144 -> 16 projection and N(0, 1.5^2) noise on the phone."""
    assert DEFAULT_ANONYMIZED == MODELS / "anonymized.safetensors"
    anonymized, _ = load_checkpoint(MODELS / "anonymized.safetensors")
    normalized, _ = load_checkpoint(MODELS / "normalized.safetensors")
    cfg = anonymized.cfg
    assert (cfg.split_layer, cfg.bottleneck_dim, cfg.vq_codes, cfg.bottleneck_noise) == (4, 16, 0, 1.5)
    assert (normalized.cfg.split_layer, normalized.cfg.bottleneck_dim, normalized.cfg.split_norm) == (4, 0, "chunk")
    assert same_phone_blocks(anonymized.eval(), normalized.eval(), 4)
    section = write_bottleneck(anonymized, 4, tmp_path)
    assert section == {"dim": 16, "payload_codec": "int8", "codebook": None, "noise_std": 1.5}
