"""Checkpoints: ``<name>.safetensors`` (weights) beside ``<name>.json`` (config + tokenizer + provenance).

Nothing is unpickled on load. The JSON holds everything needed to rebuild the model: architecture,
frontend, chunking, GRL layers and lambda, split layer, tokenizer, speaker list, and provenance (corpus
seed/size, command, steps, metrics). Writes go to temporary files renamed into place.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from toolkit.errors import VeilError
from toolkit.files import atomic_save_tensors, file_sha256, write_json
from toolkit.model.asr import ModelConfig, VeilModel
from toolkit.model.frontend import dft_basis, mel_filterbank
from toolkit.text.tokenizer import CharTokenizer

FORMAT = "veil-checkpoint/1"
# Frontend matrices older checkpoints stored; they must equal what the config derives (the dense DFT basis and
# the full mel filterbank; today's frontend derives its factored DFT from the same config, persistent=False).
DERIVED_BUFFERS = {"frontend.dft": dft_basis, "frontend.mel": mel_filterbank}


def config_path(weights: Path) -> Path:
    return Path(weights).with_suffix(".json")


STORAGE_DTYPES = {"float32": torch.float32, "float16": torch.float16}


def save_checkpoint(path: str | Path, model: VeilModel, tokenizer: CharTokenizer, speakers: list[str],
                    provenance: dict, storage_dtype: str = "float32") -> Path:
    """Write weights then config (each atomically). Returns the weights path.

    ``storage_dtype="float16"`` halves the file (used for the models committed to the repo); loading always
    upcasts to float32, so the float model *is* the stored weights computed in float32."""
    path = Path(path)
    if path.suffix != ".safetensors":
        path = path.with_suffix(".safetensors")
    path.parent.mkdir(parents=True, exist_ok=True)
    dtype = STORAGE_DTYPES[storage_dtype]
    atomic_save_tensors({k: v.to(dtype) if v.is_floating_point() else v for k, v in model.state_dict().items()},
                        path, metadata={"format": FORMAT})
    config = {"format": FORMAT, "model": model.cfg.to_dict(), "tokenizer": tokenizer.to_config(),
              "speakers": list(speakers), "provenance": provenance, "storage_dtype": storage_dtype,
              "weights_sha256": file_sha256(path)}
    write_json(config_path(path), config)
    return path


def read_config(path: str | Path) -> dict:
    path = Path(path)
    cpath = config_path(path)
    if not path.is_file():
        raise VeilError(f"{path}: checkpoint not found")
    if not cpath.is_file():
        raise VeilError(f"{path}: checkpoint config {cpath.name} is missing")
    try:
        config = json.loads(cpath.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise VeilError(f"{cpath}: corrupt checkpoint config ({exc})") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT or "model" not in config:
        raise VeilError(f"{cpath}: not a Veil checkpoint config (expected format {FORMAT})")
    return config


def load_checkpoint(path: str | Path, map_location: str = "cpu") -> tuple[VeilModel, dict]:
    """Rebuild the model from its JSON config and load the safetensors weights (strict)."""
    path = Path(path)
    config = read_config(path)
    try:
        cfg = ModelConfig(**config["model"])
        model = VeilModel(cfg)
    except (TypeError, ValueError) as exc:
        raise VeilError(f"{config_path(path)}: invalid model config ({exc})") from None
    try:
        state = load_file(str(path), device=map_location)
    except (SafetensorError, OSError, ValueError) as exc:
        raise VeilError(f"{path}: corrupt or unreadable safetensors file ({str(exc).splitlines()[0]})") from None
    for name, derive in DERIVED_BUFFERS.items():
        if name in state:
            stored = state.pop(name)
            derived = torch.tensor(derive(cfg.frontend), dtype=torch.float32)
            if stored.shape != derived.shape or not torch.allclose(stored, derived, atol=1e-6):
                raise VeilError(f"{path}: stored {name} does not match the frontend config")
    missing = set(model.state_dict()) - set(state)
    unexpected = set(state) - set(model.state_dict())
    if missing or unexpected:
        raise VeilError(f"{path}: weights do not match the config "
                        f"({len(missing)} missing, {len(unexpected)} unexpected tensors)")
    for k, v in model.state_dict().items():
        if v.shape != state[k].shape:
            raise VeilError(f"{path}: tensor {k} has shape {tuple(state[k].shape)}, config expects {tuple(v.shape)}")
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    model.eval()
    return model, config


def publish_checkpoint(src: str | Path, dst: str | Path, storage_dtype: str = "float16") -> Path:
    """Copy a training checkpoint to a shipped one (``models/``): same config, weights stored compactly."""
    model, config = load_checkpoint(src)
    prov = {**config["provenance"], "published_from": str(src), "source_sha256": file_sha256(src)}
    return save_checkpoint(dst, model, tokenizer_from(config), config["speakers"], prov, storage_dtype)


def tokenizer_from(config: dict) -> CharTokenizer:
    return CharTokenizer.from_config(config["tokenizer"])
