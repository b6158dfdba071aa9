"""Audio input: decode, mix to mono, resample to 16 kHz, validate at the boundary.

Every path that reads audio for Veil goes through :func:`load_audio`, so a bad file fails the same way
everywhere: a :class:`VeilError` naming the file and the problem.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from toolkit.errors import VeilError

SAMPLE_RATE = 16000
MIN_SOURCE_RATE = 8000  # below this the 20-7600 Hz mel range is mostly empty; refuse rather than guess


def validate_pcm(pcm: np.ndarray, source: str, min_samples: int = 400) -> np.ndarray:
    """Check a mono float PCM array; ``min_samples`` is the shortest input that yields one output frame."""
    if pcm.ndim != 1:
        raise VeilError(f"{source}: expected mono audio, got an array of shape {tuple(pcm.shape)}")
    if pcm.size == 0:
        raise VeilError(f"{source}: audio is empty")
    if not np.all(np.isfinite(pcm)):
        bad = int(np.size(pcm) - np.count_nonzero(np.isfinite(pcm)))
        raise VeilError(f"{source}: audio contains {bad} NaN/Inf samples")
    if pcm.size < min_samples:
        raise VeilError(
            f"{source}: audio is {pcm.size} samples ({pcm.size / SAMPLE_RATE * 1000:.1f} ms) at 16 kHz, "
            f"shorter than one output frame ({min_samples} samples)"
        )
    return pcm


def to_mono_16k(data: np.ndarray, sample_rate: int) -> np.ndarray:
    """Average channels and resample (polyphase, exact rational ratio) to 16 kHz float32."""
    if data.ndim == 2:
        data = data.mean(axis=1)
    data = data.astype(np.float64, copy=False)
    if sample_rate != SAMPLE_RATE:
        g = math.gcd(int(sample_rate), SAMPLE_RATE)
        data = resample_poly(data, SAMPLE_RATE // g, int(sample_rate) // g)
    return data.astype(np.float32)


def load_audio(path: str | Path, min_samples: int = 400) -> np.ndarray:
    """Read wav/flac/ogg, mix to mono, resample to 16 kHz; return float32 PCM in [-1, 1]."""
    path = Path(path)
    if not path.is_file():
        raise VeilError(f"{path}: no such audio file")
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=False)
    except Exception as exc:  # soundfile raises LibsndfileError/RuntimeError with a long message
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise VeilError(f"{path}: not a readable audio file ({reason})") from None
    if sr < MIN_SOURCE_RATE:
        raise VeilError(f"{path}: sample rate {sr} Hz is below {MIN_SOURCE_RATE} Hz; Veil needs 16 kHz speech")
    if data.size and not np.all(np.isfinite(data)):
        bad = int(np.size(data) - np.count_nonzero(np.isfinite(data)))
        raise VeilError(f"{path}: audio contains {bad} NaN/Inf samples")
    return validate_pcm(to_mono_16k(data, sr), str(path), min_samples)
