"""The payload codec: how a chunk of embeddings leaves the phone and arrives in the cloud.

One message carries the embeddings of one prefix chunk (or any run of frames) as bytes::

    header  4 s  magic b"VPL1"
            1 B  codec id (0 fp32, 1 fp16, 2 int8)
            1 B  reserved (0)
            2 H  frames T   (little-endian uint16)
            2 H  dim d      (little-endian uint16)
    body    fp32: T*d float32            fp16: T*d float16
            int8: T float32 scales, then T*d int8 with x ~= q * scale[t] (scale = max|x_t| / 127, per frame)

Per-frame scales keep the int8 error proportional to each frame's own peak (|x - x^| <= scale/2), which a
global scale would not: frame norms vary a lot across silence and speech. The float32 scale costs 4 bytes per
40 ms frame (100 B/s at 25 frames/s). Non-finite embeddings are refused on both sides.
"""
from __future__ import annotations

import struct

import numpy as np

from toolkit.errors import VeilError

MAGIC = b"VPL1"
HEADER = struct.Struct("<4sBBHH")
CODECS = {"fp32": 0, "fp16": 1, "int8": 2}
CODEC_NAMES = {v: k for k, v in CODECS.items()}
INT8_MAX = 127


class PayloadError(VeilError):
    """A payload that cannot be decoded or embeddings that cannot be encoded."""


def body_bytes(codec: str, frames: int, dim: int) -> int:
    """Bytes after the header for ``frames`` x ``dim`` embeddings."""
    if codec == "fp32":
        return 4 * frames * dim
    if codec == "fp16":
        return 2 * frames * dim
    if codec == "int8":
        return 4 * frames + frames * dim
    raise PayloadError(f"unknown payload codec '{codec}' (codecs: {', '.join(CODECS)})")


def message_bytes(codec: str, frames: int, dim: int) -> int:
    return HEADER.size + body_bytes(codec, frames, dim)


def encode(embeddings: np.ndarray, codec: str) -> bytes:
    """(T, d) float embeddings -> one message."""
    if codec not in CODECS:
        raise PayloadError(f"unknown payload codec '{codec}' (codecs: {', '.join(CODECS)})")
    x = np.asarray(embeddings, dtype=np.float32)
    if x.ndim != 2:
        raise PayloadError(f"payload embeddings must be (frames, dim), got shape {x.shape}")
    frames, dim = x.shape
    if frames > 0xFFFF or dim > 0xFFFF:
        raise PayloadError(f"payload of {frames}x{dim} exceeds the 65535 frames/dims of one message")
    if not np.all(np.isfinite(x)):
        raise PayloadError("payload embeddings contain NaN or Inf")
    header = HEADER.pack(MAGIC, CODECS[codec], 0, frames, dim)
    if codec == "fp32":
        return header + x.astype("<f4").tobytes()
    if codec == "fp16":
        if frames and float(np.max(np.abs(x))) > float(np.finfo(np.float16).max):
            raise PayloadError("payload embeddings exceed the float16 range (65504); use fp32 or int8")
        return header + x.astype("<f2").tobytes()
    peak = np.max(np.abs(x), axis=1) if frames else np.zeros(0, np.float32)
    scale = (peak / INT8_MAX).astype(np.float32)
    safe = np.where(scale > 0, scale, 1.0).astype(np.float32)
    q = np.clip(np.rint(x / safe[:, None]), -INT8_MAX, INT8_MAX).astype(np.int8)
    return header + scale.astype("<f4").tobytes() + q.tobytes()


def decode(message: bytes) -> np.ndarray:
    """One message -> (T, d) float32 embeddings."""
    if len(message) < HEADER.size:
        raise PayloadError(f"payload of {len(message)} bytes is shorter than its {HEADER.size}-byte header")
    magic, codec_id, _, frames, dim = HEADER.unpack_from(message)
    if magic != MAGIC:
        raise PayloadError(f"payload does not start with {MAGIC!r} (got {magic!r})")
    if codec_id not in CODEC_NAMES:
        raise PayloadError(f"payload codec id {codec_id} is unknown")
    codec = CODEC_NAMES[codec_id]
    want = body_bytes(codec, frames, dim)
    body = memoryview(message)[HEADER.size:]
    if len(body) != want:
        raise PayloadError(f"{codec} payload of {frames}x{dim} needs {want} body bytes, got {len(body)}")
    if codec == "fp32":
        out = np.frombuffer(body, dtype="<f4").reshape(frames, dim).astype(np.float32)
    elif codec == "fp16":
        out = np.frombuffer(body, dtype="<f2").reshape(frames, dim).astype(np.float32)
    else:
        scale = np.frombuffer(body[: 4 * frames], dtype="<f4").astype(np.float32)
        q = np.frombuffer(body[4 * frames:], dtype=np.int8).reshape(frames, dim)
        out = q.astype(np.float32) * scale[:, None]
    if not np.all(np.isfinite(out)):
        raise PayloadError("payload decodes to NaN or Inf")
    return out


def roundtrip(embeddings: np.ndarray, codec: str) -> tuple[np.ndarray, int]:
    """What the cloud receives for these embeddings, and how many bytes travelled."""
    message = encode(embeddings, codec)
    return decode(message), len(message)
