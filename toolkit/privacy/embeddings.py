"""Frame embeddings at any encoder layer, the material every privacy attack works on.

Layer 0 is the standardized log-mel input (100 frames/s); layer k >= 1 is the output of block k (25 frames/s).
Frames beyond an utterance's true length are trimmed, exactly as the phone's runner trims them.

Two sources:
- a float checkpoint (:func:`layer_embeddings`): the model's own chunked computation, but only as deep as
  the deepest requested layer (no suffix blocks or CTC head when attacking an early layer);
- an exported artifact (:func:`artifact_embeddings`): the prefix run in its real runtime chunk by chunk,
  exactly as on the phone, through the parity checker's chunked runner.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from tqdm import tqdm

from toolkit.data.dataset import AudioSet, collate, length_batches
from toolkit.model.asr import frames_for


@torch.no_grad()
def encoder_layers(model, pcm: torch.Tensor, lengths: torch.Tensor, layers: list[int]) -> tuple[dict, torch.Tensor]:
    """Block outputs ``{k: (B, T, d)}`` for ``layers`` (all >= 1), computed as ``VeilModel.forward`` computes
    them (blocks 1..split_layer chunk-local, later blocks over the whole utterance) but stopping at the
    deepest requested block. Returns the outputs and the valid frame count per utterance."""
    cfg = model.cfg
    b, s = pcm.shape
    cs, cf = cfg.chunk_samples, cfg.chunk_frames
    deepest = max(layers)
    n_chunks = max(1, math.ceil(s / cs))
    chunks = torch.nn.functional.pad(pcm, (0, n_chunks * cs - s)).reshape(b * n_chunks, cs)
    valid = (torch.arange(n_chunks)[None, :] * cs < lengths[:, None]).reshape(-1)
    idx = valid.nonzero().squeeze(1)
    x_chunks, kept = model.encode_chunks(chunks[idx], min(deepest, cfg.split_layer),
                                         keep=tuple(k for k in layers if k <= cfg.split_layer))

    def unchunk(y):
        full = y.new_zeros(b * n_chunks, cf, y.shape[-1])
        full[idx] = y
        return full.reshape(b, n_chunks * cf, y.shape[-1])

    out = {k: unchunk(v) for k, v in kept.items()}
    frame_lengths = frames_for(lengths, cfg.frame_samples)
    if deepest > cfg.split_layer:
        mask = torch.arange(n_chunks * cf)[None, :] < frame_lengths[:, None]
        x = unchunk(x_chunks)
        for i in range(cfg.split_layer, deepest):
            x = model.blocks[i](x, mask)
            if i + 1 in layers:
                out[i + 1] = x
    return out, frame_lengths


@torch.no_grad()
def layer_embeddings(model, data: AudioSet, layers: list[int], max_batch_samples: int = 16000 * 120,
                     progress: bool = True) -> dict[int, list[np.ndarray]]:
    """{layer: [ (T_i, d) float32 array per utterance, in data order ]}."""
    model.eval()
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
        res, frame_lengths = encoder_layers(model, pcm, lengths, blocks)
        for k in blocks:
            for j, i in enumerate(batch):
                out[k][i] = res[k][j, : int(frame_lengths[j])].numpy().astype(np.float32)
    return out


def artifact_embeddings(runner, data: AudioSet, chunk_samples: int, frame_samples: int,
                        progress: bool = True, desc: str = "artifact") -> list[np.ndarray]:
    """(T_i, d) per utterance from an exported prefix in its runtime: ``chunk_samples`` chunks, the last one
    zero-padded, frames concatenated and trimmed to ceil(S / frame_samples), as the phone's runner does."""
    from toolkit.parity.check import run_chunked
    out = []
    for x in tqdm(data.pcm, desc=desc, unit="utt", disable=not progress, mininterval=2.0):
        pcm = x.astype(np.float32) / 32768.0
        out.append(np.ascontiguousarray(run_chunked(runner, pcm, chunk_samples, frame_samples)[0], dtype=np.float32))
    return out
