"""Model adapters: how export, parity, bench and privacy see an encoder (``docs/ADAPTERS.md``).

``ADAPTERS`` maps each ``--adapter`` name to its class's module and name (imported on use: the Hugging Face
adapters import ``transformers``). Adding an architecture is one new module here plus one line below.
"""
from __future__ import annotations

import importlib
from pathlib import Path

from toolkit.adapters.base import ModelAdapter
from toolkit.adapters.module import ModuleAdapter
from toolkit.adapters.veil import VeilAdapter
from toolkit.errors import VeilError

ADAPTERS = {  # --adapter NAME -> (module, class)
    "veil": ("toolkit.adapters.veil", "VeilAdapter"),
    "hf-wav2vec2": ("toolkit.adapters.hf_wav2vec2", "HFWav2Vec2Adapter"),
    "hf-hubert": ("toolkit.adapters.hf_wav2vec2", "HFHubertAdapter"),
    "hf-whisper": ("toolkit.adapters.hf_whisper", "HFWhisperAdapter"),
    "conformer": ("toolkit.adapters.conformer", "ConformerAdapter"),
}


def open_adapter(*, adapter: str | None = None, config: str | None = None, weights: str | Path | None = None,
                 model: str | None = None, checkpoint: str | Path | None = None, cut: int | None = None) -> ModelAdapter:
    """The adapter a command line names: ``--model MODULE:FUNCTION`` (any nn.Module), ``--adapter NAME``
    (``--config``, ``--weights``), or else Veil's own ``--checkpoint``."""
    if model:
        if adapter not in (None, "module"):
            raise VeilError(f"--model and --adapter {adapter} exclude each other (--model is the 'module' adapter)")
        return ModuleAdapter(model, weights, cut)
    if adapter in (None, "veil"):
        if config or weights:
            raise VeilError("--config and --weights go with --adapter (a Veil checkpoint is --checkpoint)")
        return VeilAdapter(checkpoint, cut)
    if adapter == "module":
        raise VeilError("--adapter module needs --model MODULE:FUNCTION")
    if adapter not in ADAPTERS:
        raise VeilError(f"unknown adapter '{adapter}' (adapters: {', '.join([*ADAPTERS, 'module'])})")
    module, cls = ADAPTERS[adapter]
    return getattr(importlib.import_module(module), cls)(config=config, weights=weights, cut=cut)


def from_source(source: dict) -> ModelAdapter:
    """Rebuild the adapter a manifest's ``adapter`` section records (parity, bench and their workers)."""
    name = source.get("name")
    if name == "veil":
        return open_adapter(checkpoint=source["checkpoint"])
    if name == "module":
        return open_adapter(model=source["model"], weights=source.get("weights"))
    return open_adapter(adapter=name, config=source.get("config"), weights=source.get("weights"))
