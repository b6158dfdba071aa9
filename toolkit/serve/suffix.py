"""The cloud half of one checkpoint: its suffix (blocks k+1..L + CTC head), tokenizer, identity and codebook.

``labels`` is the one compute call of the service: a batch of utterances (each a (T_i, d) float32 array of
embeddings) padded to the longest, masked, run through the float suffix once; it returns each utterance's
per-frame CTC argmax labels. Greedy CTC text is the collapse of those labels, so partials can mix labels
computed at different times (see ``toolkit/serve/session.py``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from toolkit.errors import VeilError
from toolkit.model.asr import split
from toolkit.model.checkpoint import file_sha256, load_checkpoint, tokenizer_from
from toolkit.payload import check_codebook
from toolkit.serve.identity import Geometry, PrefixIdentity


class ServedSuffix:
    def __init__(self, model, config: dict, checkpoint: Path, split_layer: int, sha256: str,
                 codebook: np.ndarray | None = None):
        cfg = model.cfg
        if not 1 <= split_layer <= cfg.n_blocks:
            raise VeilError(f"{checkpoint}: split layer {split_layer} is outside 1..{cfg.n_blocks}")
        _, self.suffix = split(model, split_layer)
        self.suffix.eval()
        self.checkpoint = Path(checkpoint)
        self.identity = PrefixIdentity(sha256, split_layer)
        self.geometry = Geometry(cfg.frontend.sample_rate, cfg.chunk_samples, cfg.frame_samples, cfg.d_model)
        self.tokenizer = tokenizer_from(config)
        self.blank = int(config["tokenizer"].get("blank", 0))
        # The vq hook: a bottleneck model's suffix carries the codebook its phones quantize with, (G, K, dg).
        if codebook is None and getattr(self.suffix, "codebook", None) is not None:
            codebook = self.suffix.codebook.detach().cpu().numpy()
        self.codebook = None if codebook is None else check_codebook(codebook)
        if self.codebook is not None and self.codebook.shape[0] * self.codebook.shape[2] != cfg.d_model:
            raise VeilError(f"{checkpoint}: codebook {self.codebook.shape} does not make {cfg.d_model}-dim vectors")

    @classmethod
    def load(cls, checkpoint: str | Path, split_layer: int | None = None) -> "ServedSuffix":
        checkpoint = Path(checkpoint)
        model, config = load_checkpoint(checkpoint)
        k = model.cfg.split_layer if split_layer is None else split_layer
        return cls(model, config, checkpoint, k, file_sha256(checkpoint))

    @property
    def codecs(self) -> list[str]:
        return ["fp32", "fp16", "int8"] + (["vq"] if self.codebook is not None else [])

    def labels(self, batch: list[np.ndarray]) -> list[np.ndarray]:
        """Utterances (T_i, d) -> their per-frame CTC argmax labels (T_i,), in one padded suffix call."""
        lengths = [len(x) for x in batch]
        longest = max(lengths)
        if longest == 0:
            return [np.zeros(0, np.int64) for _ in batch]
        x = np.zeros((len(batch), longest, self.geometry.dim), np.float32)
        for i, emb in enumerate(batch):
            x[i, : len(emb)] = emb
        mask = torch.arange(longest)[None, :] < torch.tensor(lengths)[:, None]
        with torch.inference_mode():
            best = self.suffix(torch.from_numpy(x), mask).argmax(-1).numpy()
        return [best[i, :n].astype(np.int64) for i, n in enumerate(lengths)]

    def text(self, labels: np.ndarray) -> str:
        """Greedy CTC: merge repeats, drop blanks, map ids to characters."""
        return self.tokenizer.decode(collapse(labels, self.blank))

    def describe(self) -> dict:
        g = self.geometry
        return {"checkpoint": self.checkpoint.name, "checkpoint_sha256": self.identity.checkpoint_sha256,
                "split_layer": self.identity.split_layer, "prefix_id": str(self.identity),
                "sample_rate": g.sample_rate, "chunk_samples": g.chunk_samples, "frame_samples": g.frame_samples,
                "dim": g.dim, "codecs": self.codecs,
                "codebook": None if self.codebook is None else list(self.codebook.shape)}


def collapse(labels: np.ndarray, blank: int = 0) -> list[int]:
    """CTC best path -> token ids: merge repeats, drop blanks (``greedy_ids`` after its argmax)."""
    out, prev = [], blank
    for t in np.asarray(labels).tolist():
        if t != prev and t != blank:
            out.append(t)
        prev = t
    return out
