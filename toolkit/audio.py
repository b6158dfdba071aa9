"""Audio input: decode, mix to mono, resample to 16 kHz, validate at the boundary.

Every path that reads audio for Veil goes through :func:`load_audio`, so a bad file fails the same way
everywhere: a :class:`VeilError` naming the file and the problem. That includes a file cut short (a copy that
stopped, ``head -c``): a WAV whose data chunk promises more bytes than the file holds, a FLAC whose decoder stops
before the sample count its STREAMINFO promises, an Ogg (Opus, Vorbis) stream that ends inside a page or without
its end-of-stream page. libsndfile decodes such files quietly to a shorter signal; Veil refuses them instead of
transcribing part of the audio as if it were all of it.
"""
from __future__ import annotations

import math
import struct
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


def wav_shortfall(head: bytes, size: int) -> str | None:
    """Why a RIFF/WAVE file of ``size`` bytes is cut short (its data chunk promises more than is there), or None."""
    pos = 12
    while pos + 8 <= min(size, len(head)):
        chunk, length = head[pos:pos + 4], struct.unpack("<I", head[pos + 4:pos + 8])[0]
        if chunk == b"data":
            held = size - pos - 8
            streaming = length in (0, 0xFFFFFFFF)  # a writer that never came back to fill in the size
            if not streaming and length > held:
                return f"its data chunk promises {length} bytes and the file holds {held}"
            return None
        pos += 8 + length + (length & 1)
    return None


def ogg_shortfall(data: bytes) -> str | None:
    """Why an Ogg stream is cut short (it ends inside a page, or its last page is not end-of-stream), or None."""
    pos, last_flags = 0, None
    while pos < len(data):
        if data[pos:pos + 4] != b"OggS" or pos + 27 > len(data):
            return f"it ends inside an Ogg page at byte {pos}"
        segments = data[pos + 26]
        if pos + 27 + segments > len(data):
            return f"it ends inside an Ogg page at byte {pos}"
        end = pos + 27 + segments + sum(data[pos + 27:pos + 27 + segments])
        if end > len(data):
            return f"its last Ogg page needs {end - pos} bytes and {len(data) - pos} are there"
        last_flags, pos = data[pos + 5], end
    if last_flags is not None and not last_flags & 0x04:
        return "its last Ogg page is not the end of the stream"
    return None


def truncation(path: Path, decoded_frames: int, promised_frames: int) -> str | None:
    """Why ``path`` holds less audio than it promises, or None (read for WAV and Ogg, counted for the rest)."""
    with open(path, "rb") as f:
        head = f.read(4)
        if head == b"OggS":
            return ogg_shortfall(head + f.read())
        head += f.read(64 * 1024)
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return wav_shortfall(head, path.stat().st_size)
    if promised_frames > decoded_frames:
        return f"its header promises {promised_frames} samples and {decoded_frames} decode"
    return None


def load_audio(path: str | Path, min_samples: int = 400) -> np.ndarray:
    """Read wav/flac/ogg, mix to mono, resample to 16 kHz; return float32 PCM in [-1, 1]."""
    path = Path(path)
    if not path.is_file():
        raise VeilError(f"{path}: no such audio file")
    try:
        promised = sf.info(str(path)).frames
    except Exception as exc:  # soundfile raises LibsndfileError/RuntimeError with a long message
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise VeilError(f"{path}: not a readable audio file ({reason})") from None
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=False)
    except Exception as exc:  # the header opened, the decoder stopped: a truncated or damaged stream
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise VeilError(f"{path}: truncated or corrupt audio (the decoder stopped: {reason})") from None
    if why := truncation(path, len(data), promised):
        raise VeilError(f"{path}: truncated or corrupt audio ({why})")
    if sr < MIN_SOURCE_RATE:
        raise VeilError(f"{path}: sample rate {sr} Hz is below {MIN_SOURCE_RATE} Hz; Veil needs 16 kHz speech")
    if data.size and not np.all(np.isfinite(data)):
        bad = int(np.size(data) - np.count_nonzero(np.isfinite(data)))
        raise VeilError(f"{path}: audio contains {bad} NaN/Inf samples")
    return validate_pcm(to_mono_16k(data, sr), str(path), min_samples)
