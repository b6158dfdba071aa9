"""Veil's own conformer (``toolkit/model``) as an adapter: a checkpoint (``.safetensors`` + JSON config) ->
the same :class:`~toolkit.model.asr.Prefix` and :class:`~toolkit.model.asr.Suffix` the rest of Veil runs, so its
exports are byte-identical to the ones made before adapters existed."""
from __future__ import annotations

from pathlib import Path

from torch import nn

from toolkit.adapters.base import ModelAdapter
from toolkit.errors import VeilError
from toolkit.files import file_sha256
from toolkit.model.asr import split
from toolkit.model.checkpoint import load_checkpoint, tokenizer_from


class VeilAdapter(ModelAdapter):
    name = "veil"
    phone_input = {"kind": "pcm", "frontend": "veil-log-mel (DFT matmul in the graph, float32)"}

    def __init__(self, checkpoint: str | Path, cut: int | None = None):
        self.checkpoint = Path(checkpoint)
        if not self.checkpoint.is_file():
            raise VeilError(f"{self.checkpoint}: checkpoint not found (train one with `veil train`, or pass --checkpoint)")
        self.model, self.config = load_checkpoint(self.checkpoint)
        cfg = self.model.cfg
        self.chunk, self.n_blocks, self.default_cut = cfg.chunk, cfg.n_blocks, cfg.split_layer

    @classmethod
    def of(cls, model, config: dict, checkpoint: str | Path) -> "VeilAdapter":
        """An adapter around an already loaded checkpoint (``ExportManifest.model_adapter``)."""
        self = cls.__new__(cls)
        self.checkpoint, self.model, self.config = Path(checkpoint), model, config
        cfg = model.cfg
        self.chunk, self.n_blocks, self.default_cut = cfg.chunk, cfg.n_blocks, cfg.split_layer
        return self

    def check_cut(self, k: int | None) -> int:
        cfg = self.model.cfg
        k = cfg.split_layer if k is None else k
        if not 1 <= k <= cfg.n_blocks:
            raise VeilError(f"split layer {k} is outside 1..{cfg.n_blocks} (the checkpoint has {cfg.n_blocks} blocks)")
        return k

    def prefix(self, k: int) -> nn.Module:
        return split(self.model, k)[0].eval()

    def suffix(self, k: int) -> nn.Module:
        return split(self.model, k)[1].eval()

    def tokenizer(self):
        return tokenizer_from(self.config)

    def output_dim(self, k: int) -> int:
        return self.model.cfg.prefix_output_dim(k)

    def source(self) -> dict:
        return {"name": self.name, "checkpoint": str(self.checkpoint)}

    def identity_sha256(self) -> str:
        return file_sha256(self.checkpoint)

    def describe(self, k: int) -> str:
        cfg = self.model.cfg
        return (f"checkpoint {self.checkpoint}: {cfg.n_blocks} blocks, d={cfg.d_model}, trained chunked through "
                f"block {cfg.split_layer}; exporting frontend + blocks 1..{k}")
