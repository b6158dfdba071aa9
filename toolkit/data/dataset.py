"""In-memory utterance sets and length-bucketed batches for training and evaluation.

The default corpus is ~10 h of 16 kHz audio: held as int16 it is ~1.2 GB, so it is decoded once and kept in
RAM instead of re-reading FLAC every step on a 2-core machine.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

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
    def load(cls, utts: list[Utterance], desc: str = "loading audio", progress: bool = True, workers: int = 1,
             cache: bool = False) -> "AudioSet":
        """Decode every utterance (``workers`` processes). With ``cache``, the decoded int16 audio is kept
        in ``<split>/.veil-cache/`` (one .npy, memory-mapped by later runs and by parallel trainers),
        keyed by the utterance ids and file sizes, so a changed corpus is decoded afresh."""
        path = _cache_path(utts) if cache and utts else None
        if path is not None and path.exists():
            offs = json.loads(path.with_suffix(".json").read_text())["offsets"]
            flat = np.load(path, mmap_mode="r")
            if len(offs) == len(utts) + 1 and offs[-1] == flat.shape[0]:
                return cls(utts, [flat[offs[i]:offs[i + 1]] for i in range(len(utts))])
        paths = [str(u.path) for u in utts]
        # the bar is closed (its line ended) before an error about a file is printed below it
        if workers > 1:
            with ProcessPoolExecutor(workers) as pool, tqdm(pool.map(_decode, paths, chunksize=64), total=len(paths),
                                                            desc=desc, unit="utt", disable=not progress,
                                                            mininterval=2.0) as bar:
                pcm = list(bar)
        else:
            with tqdm(paths, desc=desc, unit="utt", disable=not progress, mininterval=2.0) as bar:
                pcm = [_decode(p) for p in bar]
        if path is not None:
            _write_cache(path, pcm)
        return cls(utts, pcm)

    def __len__(self):
        return len(self.utts)


def _decode(path: str) -> np.ndarray:
    x = load_audio(path)
    return np.clip(np.round(x * 32767.0), -32768, 32767).astype(np.int16)


def _cache_path(utts: list[Utterance]) -> Path:
    h = hashlib.sha256()
    for u in utts:
        h.update(f"{u.utt_id}:{u.path.name}:{u.path.stat().st_size}\n".encode())
    root = Path(utts[0].path).parents[2]  # <split>/<spk>/<chapter>/<file>
    return root / ".veil-cache" / f"pcm-{h.hexdigest()[:16]}.npy"


def _write_cache(path: Path, pcm: list[np.ndarray]) -> None:
    """Atomically: the .json (offsets) first, then the .npy that marks the cache complete."""
    path.parent.mkdir(parents=True, exist_ok=True)
    offsets = np.concatenate([[0], np.cumsum([len(x) for x in pcm])]).tolist()
    meta_tmp = path.with_suffix(f".json.{os.getpid()}.tmp")
    meta_tmp.write_text(json.dumps({"offsets": offsets}))
    os.replace(meta_tmp, path.with_suffix(".json"))
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npy.tmp")
    with os.fdopen(fd, "wb") as f:
        np.save(f, np.concatenate(pcm) if pcm else np.zeros(0, np.int16))
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


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
