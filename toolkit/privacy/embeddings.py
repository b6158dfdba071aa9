"""Frame embeddings at any encoder layer, the material every privacy attack works on.

Layer 0 is the standardized log-mel input (100 frames/s); layer k >= 1 is the output of block k (25 frames/s).
Frames beyond an utterance's true length are trimmed, exactly as the phone's runner trims them.

Two sources:
- a float checkpoint (:func:`layer_embeddings`): the model's own chunked computation, but only as deep as
  the deepest requested layer (no suffix blocks or CTC head when attacking an early layer);
- an exported artifact (:func:`artifact_embeddings`): the prefix run in its real runtime chunk by chunk,
  exactly as on the phone, through the one chunked runner (``toolkit.chunking.run_chunked``).
"""
from __future__ import annotations

import numpy as np
import torch
from tqdm import tqdm

from toolkit.chunking import ChunkSpec, run_chunked
from toolkit.data.dataset import AudioSet, collate, length_batches
from toolkit.model.bottleneck import replay_noise


@torch.no_grad()
def layer_embeddings(model, data: AudioSet, layers: list[int], max_batch_samples: int = 16000 * 120,
                     progress: bool = True) -> dict[int, list[np.ndarray]]:
    """{layer: [ (T_i, d) float32 array per utterance, in data order ]}. Blocks come from
    ``VeilModel.encode``, the model's own forward, run only as deep as the deepest requested block."""
    model.eval()
    noise = replay_noise()
    out = {k: [None] * len(data) for k in layers}
    blocks = [k for k in layers if k >= 1]
    batches = length_batches([len(x) for x in data.pcm], max_batch_samples, seed=None)
    for batch in tqdm(batches, desc="embeddings", unit="batch", disable=not progress, mininterval=2.0):
        pcm, lengths = collate([data.pcm[i] for i in batch])
        if 0 in layers:
            for j, i in enumerate(batch):
                out[0][i] = model.frontend(pcm[j: j + 1, : int(lengths[j])])[0].numpy().astype(np.float32)
        if not blocks:
            continue
        _, res, frame_lengths, _, _ = model.encode(pcm, lengths, max(blocks), keep=tuple(blocks), generator=noise)
        for k in blocks:
            for j, i in enumerate(batch):
                out[k][i] = res[k][j, : int(frame_lengths[j])].numpy().astype(np.float32)
    return out


def artifact_embeddings(runner, data: AudioSet, chunk: ChunkSpec, progress: bool = True,
                        desc: str = "artifact") -> list[np.ndarray]:
    """(T_i, d) per utterance from an exported prefix in its runtime, run as the phone runs it
    (``toolkit.chunking.run_chunked``)."""
    out = []
    for x in tqdm(data.pcm, desc=desc, unit="utt", disable=not progress, mininterval=2.0):
        pcm = x.astype(np.float32) / 32768.0
        out.append(np.ascontiguousarray(run_chunked(runner, pcm, chunk)[0], dtype=np.float32))
    return out
