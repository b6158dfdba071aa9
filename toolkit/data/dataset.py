"""In-memory utterance sets and length-bucketed batches for training and evaluation.

The default corpus is ~10 h of 16 kHz audio: held as int16 it is ~1.2 GB, so it is decoded once and kept in
RAM instead of re-reading FLAC every step on a 2-core machine.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from toolkit.audio import load_audio
from toolkit.data.librispeech import Utterance


@dataclass
class AudioSet:
    utts: list[Utterance]
    pcm: list[np.ndarray]  # int16 at 16 kHz

    @classmethod
    def load(cls, utts: list[Utterance], desc: str = "loading audio", progress: bool = True) -> "AudioSet":
        pcm = []
        for u in tqdm(utts, desc=desc, unit="utt", disable=not progress, mininterval=2.0):
            x = load_audio(u.path)
            pcm.append(np.clip(np.round(x * 32767.0), -32768, 32767).astype(np.int16))
        return cls(utts, pcm)

    def __len__(self):
        return len(self.utts)


def collate(pcm: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-pad int16 arrays into a float batch (B, S_max) in [-1, 1] and their lengths (B,)."""
    lengths = torch.tensor([len(x) for x in pcm], dtype=torch.long)
    out = torch.zeros(len(pcm), int(lengths.max()))
    for i, x in enumerate(pcm):
        out[i, : len(x)] = torch.from_numpy(x.astype(np.float32) / 32768.0)
    return out, lengths


def length_batches(lengths: list[int], max_batch_samples: int, seed: int | None, max_batch: int = 64) -> list[list[int]]:
    """Group indices of similar length so that (batch size x longest) stays under ``max_batch_samples``.
    With a seed, lengths are jittered before sorting and the batch order is shuffled (per epoch)."""
    rng = random.Random(seed)
    order = sorted(range(len(lengths)),
                   key=lambda i: lengths[i] * (1.0 + (0.1 * rng.random() if seed is not None else 0.0)))
    batches, cur, longest = [], [], 0
    for i in order:
        longest_if = max(longest, lengths[i])
        if cur and (longest_if * (len(cur) + 1) > max_batch_samples or len(cur) >= max_batch):
            batches.append(cur)
            cur, longest_if = [], lengths[i]
        cur.append(i)
        longest = longest_if
    if cur:
        batches.append(cur)
    if seed is not None:
        rng.shuffle(batches)
    return batches
