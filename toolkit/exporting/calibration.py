"""Calibration audio for static quantization: real corpus utterances cut into the prefix's PCM chunks.

Utterances are picked deterministically and spread over speakers (round-robin over the sorted speaker list),
so the same corpus and count always give the same chunks, hence byte-identical calibrated artifacts. Every
chunk of an utterance is kept, the zero-padded last one included: the phone sees such chunks too.
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from toolkit.audio import load_audio
from toolkit.data.librispeech import Utterance, read_librispeech
from toolkit.errors import VeilError

# Default calibration size. 32 was enough for the plain prefix; the instance-normalized split-4 prefix gave
# LiteRT int8-static ΔWER +1.25 pp on the parity set with 32 utterances and +0.42 pp with 128.
CALIBRATION_UTTS = 128


def pick_utterances(utts: list[Utterance], count: int) -> list[Utterance]:
    """``count`` utterances, one per speaker in turn (speakers and their utterances in sorted order)."""
    by_speaker: dict[str, list[Utterance]] = defaultdict(list)
    for u in sorted(utts, key=lambda u: u.utt_id):
        by_speaker[u.speaker].append(u)
    queues = [by_speaker[s] for s in sorted(by_speaker)]
    picked, depth = [], 0
    while len(picked) < count and any(depth < len(q) for q in queues):
        picked += [q[depth] for q in queues if depth < len(q)][: count - len(picked)]
        depth += 1
    return picked


def chunk_pcm(pcm: np.ndarray, chunk_samples: int) -> list[np.ndarray]:
    """(S,) float32 -> list of fresh (1, chunk_samples) arrays, the last one zero-padded."""
    n = max(1, -(-len(pcm) // chunk_samples))
    padded = np.zeros(n * chunk_samples, dtype=np.float32)
    padded[: len(pcm)] = pcm
    return [padded[i * chunk_samples:(i + 1) * chunk_samples].reshape(1, chunk_samples).copy() for i in range(n)]


def calibration_chunks(split_dir: str | Path, count: int, chunk_samples: int) -> tuple[list[np.ndarray], dict]:
    """Chunks of ``count`` utterances from a LibriSpeech-layout split, plus a JSON-ready description."""
    split_dir = Path(split_dir)
    if count < 1:
        raise VeilError(f"--calibration-utts must be at least 1, got {count}")
    if not split_dir.is_dir():
        raise VeilError(f"{split_dir}: calibration corpus split not found (set --corpus, or choose a recipe "
                        f"that needs no calibration, e.g. --recipe int8-dynamic)")
    picked = pick_utterances(read_librispeech(split_dir, probe_lengths=False), count)
    chunks: list[np.ndarray] = []
    seconds = 0.0
    for u in picked:
        pcm = load_audio(u.path)
        seconds += len(pcm) / 16000
        chunks += chunk_pcm(pcm, chunk_samples)
    info = {"corpus_split": str(split_dir), "utterances": len(picked), "speakers": len({u.speaker for u in picked}),
            "chunks": len(chunks), "audio_seconds": round(seconds, 2), "utterance_ids": [u.utt_id for u in picked]}
    return chunks, info
