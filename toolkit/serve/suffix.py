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

from toolkit.chunking import ChunkSpec
from toolkit.errors import VeilError
from toolkit.exporting.manifest import ExportManifest, PrefixIdentity
from toolkit.files import file_sha256
from toolkit.model.asr import split
from toolkit.model.checkpoint import load_checkpoint, tokenizer_from
from toolkit.payload import check_codebook


class ServedSuffix:
    """``chunk``: the prefix's chunk geometry; ``dim``: dimensions of each embedding frame the suffix receives
    (what the prefix emits: the split block's width, or a bottleneck's), measured on the model itself."""

    def __init__(self, model, config: dict, checkpoint: Path, split_layer: int, sha256: str,
                 codebook: np.ndarray | None = None):
        cfg = model.cfg
        if not 1 <= split_layer <= cfg.n_blocks:
            raise VeilError(f"{checkpoint}: split layer {split_layer} is outside 1..{cfg.n_blocks}")
        prefix, self.suffix = split(model, split_layer)
        self.suffix.eval()
        self.checkpoint = Path(checkpoint)
        self.identity = PrefixIdentity(sha256, split_layer)
        self.chunk: ChunkSpec = cfg.chunk
        with torch.inference_mode():
            self.dim = int(prefix.eval()(torch.zeros(1, self.chunk.chunk_samples)).shape[-1])
        self.tokenizer = tokenizer_from(config)
        self.blank = int(config["tokenizer"].get("blank", 0))
        # The vq hook: a bottleneck model's suffix carries the codebook its phones quantize with, (G, K, dg).
        if codebook is None and getattr(self.suffix, "codebook", None) is not None:
            codebook = self.suffix.codebook.detach().cpu().numpy()
        self.codebook = None if codebook is None else check_codebook(codebook)
        if self.codebook is not None and self.codebook.shape[0] * self.codebook.shape[2] != self.dim:
            raise VeilError(f"{checkpoint}: codebook {self.codebook.shape} does not make {self.dim}-dim vectors "
                            f"(the suffix's input after block {split_layer})")

    @classmethod
    def load(cls, checkpoint: str | Path, split_layer: int | None = None) -> "ServedSuffix":
        """The suffix of ``checkpoint`` after block ``split_layer`` (default: the checkpoint's split layer)."""
        checkpoint = Path(checkpoint)
        model, config = load_checkpoint(checkpoint)
        k = model.cfg.split_layer if split_layer is None else split_layer
        return cls(model, config, checkpoint, k, file_sha256(checkpoint))

    @classmethod
    def for_export(cls, manifest: ExportManifest, checkpoint: str | Path | None = None) -> "ServedSuffix":
        """The suffix matching an export (read with :meth:`ExportManifest.read`): its checkpoint, checked to be
        the exported one, cut at its split layer, receiving the embeddings its manifest describes."""
        path = manifest.checkpoint_file(checkpoint)
        model, config = manifest.load_checkpoint(path)
        served = cls(model, config, path, manifest.split_layer, manifest.prefix_identity.checkpoint_sha256)
        if served.dim != manifest.embedding_dim:
            raise VeilError(f"{manifest.path}: its prefix emits {manifest.embedding_dim}-dim embeddings, the suffix "
                            f"of {path.name} after block {manifest.split_layer} takes {served.dim}")
        return served

    @property
    def codecs(self) -> list[str]:
        """The payload codecs this suffix reads. A codebook model reads vq only: its suffix was trained on
        codewords, and a phone sending continuous vectors would bypass the bottleneck it relies on."""
        return ["vq"] if self.codebook is not None else ["fp32", "fp16", "int8"]

    def labels(self, batch: list[np.ndarray]) -> list[np.ndarray]:
        """Utterances (T_i, d) -> their per-frame CTC argmax labels (T_i,), in one padded suffix call."""
        lengths = [len(x) for x in batch]
        longest = max(lengths)
        if longest == 0:
            return [np.zeros(0, np.int64) for _ in batch]
        x = np.zeros((len(batch), longest, self.dim), np.float32)
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
        c = self.chunk
        return {"checkpoint": self.checkpoint.name, "checkpoint_sha256": self.identity.checkpoint_sha256,
                "split_layer": self.identity.split_layer, "prefix_id": self.identity.key,
                "sample_rate": c.sample_rate, "chunk_samples": c.chunk_samples, "frame_samples": c.frame_samples,
                "dim": self.dim, "codecs": self.codecs,
                "codebook": None if self.codebook is None else list(self.codebook.shape)}


def collapse(labels: np.ndarray, blank: int = 0) -> list[int]:
    """CTC best path -> token ids: merge repeats, drop blanks (``greedy_ids`` after its argmax)."""
    out, prev = [], blank
    for t in np.asarray(labels).tolist():
        if t != prev and t != blank:
            out.append(t)
        prev = t
    return out
