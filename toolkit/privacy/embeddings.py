"""Frame embeddings at any encoder layer, the material every privacy attack works on.

Layer 0 is the standardized log-mel input (100 frames/s); layer k >= 1 is the output of block k (25 frames/s).
Frames beyond an utterance's true length are trimmed, exactly as the phone's runner trims them.
"""
from __future__ import annotations

import numpy as np
import torch
from tqdm import tqdm

from toolkit.data.dataset import AudioSet, collate, length_batches


@torch.no_grad()
def layer_embeddings(model, data: AudioSet, layers: list[int], max_batch_samples: int = 16000 * 120,
                     progress: bool = True) -> dict[int, list[np.ndarray]]:
    """{layer: [ (T_i, d) float32 array per utterance, in data order ]}."""
    model.eval()
    out = {k: [None] * len(data) for k in layers}
    batches = length_batches([len(x) for x in data.pcm], max_batch_samples, seed=None)
    for batch in tqdm(batches, desc="embeddings", unit="batch", disable=not progress, mininterval=2.0):
        pcm, lengths = collate([data.pcm[i] for i in batch])
        res = model(pcm, lengths, return_layers=True)
        for k in layers:
            if k == 0:
                for j, i in enumerate(batch):
                    feats = model.frontend(pcm[j: j + 1, : int(lengths[j])])[0]
                    out[0][i] = feats.numpy().astype(np.float32)
                continue
            for j, i in enumerate(batch):
                n = int(res["frame_lengths"][j])
                out[k][i] = res["layers"][k][j, :n].numpy().astype(np.float32)
    return out
