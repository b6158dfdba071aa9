"""Calibration audio for static quantization: real corpus utterances cut into the prefix's PCM chunks.

Utterances are picked deterministically and spread over speakers (round-robin over the sorted speaker list),
so the same corpus and count always give the same chunks, hence byte-identical calibrated artifacts. Every
chunk of an utterance is kept, the zero-padded last one included: the phone sees such chunks too.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from toolkit.audio import SAMPLE_RATE, load_audio
from toolkit.chunking import chunk_pcm, pick_utterances
from toolkit.data.librispeech import read_librispeech
from toolkit.errors import VeilError

# Default calibration size. 32 was enough for the plain prefix; the instance-normalized split-4 prefix gave
# LiteRT int8-static ΔWER +1.25 pp on the parity set with 32 utterances and +0.42 pp with 128.
CALIBRATION_UTTS = 128


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
        seconds += len(pcm) / SAMPLE_RATE
        chunks += chunk_pcm(pcm, chunk_samples)
    info = {"corpus_split": str(split_dir), "utterances": len(picked), "speakers": len({u.speaker for u in picked}),
            "chunks": len(chunks), "audio_seconds": round(seconds, 2), "utterance_ids": [u.utt_id for u in picked]}
    return chunks, info
