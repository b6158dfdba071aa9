"""The payload codec: exact fp32, bounded fp16 and int8 round-trip errors, sizes, and refusal of bad input."""
from __future__ import annotations

import numpy as np
import pytest

from toolkit import payload
from toolkit.payload import PayloadError


def embeddings(frames=50, dim=144, seed=0) -> np.ndarray:
    """Frames with very different norms (silence next to speech), like real prefix output."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((frames, dim)).astype(np.float32)
    return x * np.geomspace(1e-3, 20.0, frames, dtype=np.float32)[:, None]


def test_fp32_is_exact():
    x = embeddings()
    y, n = payload.roundtrip(x, "fp32")
    assert np.array_equal(x, y)
    assert n == payload.HEADER.size + 4 * x.size


def test_fp16_relative_error_bound():
    x = embeddings()
    y, n = payload.roundtrip(x, "fp16")
    assert n == payload.HEADER.size + 2 * x.size
    # round-to-nearest half precision: relative error <= 2^-11 for normal numbers, absolute 2^-25 below them
    assert np.all(np.abs(y - x) <= np.abs(x) * 2.0 ** -11 + 2.0 ** -24)
    assert not np.array_equal(x, y)


def test_int8_per_frame_error_bound():
    x = embeddings()
    y, n = payload.roundtrip(x, "int8")
    assert n == payload.HEADER.size + 4 * x.shape[0] + x.size
    scale = np.abs(x).max(axis=1) / 127
    err = np.abs(y - x).max(axis=1)
    assert np.all(err <= scale / 2 * (1 + 1e-5) + 1e-12)
    # per-frame scales: the quiet frames keep their own precision (a global scale would flatten them to 0)
    assert np.abs(y[0]).max() > 0
    assert np.all(np.sign(y[np.abs(x) > scale[:, None]]) == np.sign(x[np.abs(x) > scale[:, None]]))


def test_int8_zero_frames_and_empty_message():
    x = np.zeros((3, 8), np.float32)
    y, _ = payload.roundtrip(x, "int8")
    assert np.array_equal(y, x)
    empty = np.zeros((0, 8), np.float32)
    for codec in payload.CODECS:
        y, n = payload.roundtrip(empty, codec)
        assert y.shape == (0, 8) and n == payload.HEADER.size


def test_sizes_per_second_of_audio():
    # 25 frames/s x 144 dims: the numbers the benchmark prints per codec (plus one 10-byte header per 2 s chunk)
    per_chunk = {c: payload.message_bytes(c, 50, 144) for c in payload.CODECS}
    assert per_chunk == {"fp32": 10 + 28800, "fp16": 10 + 14400, "int8": 10 + 200 + 7200}
    assert per_chunk["int8"] / 2.0 <= 4000


@pytest.mark.parametrize("mutate, message", [
    (lambda b: b[:5], "shorter than its"),
    (lambda b: b"XXXX" + b[4:], "does not start with"),
    (lambda b: b[:4] + bytes([9]) + b[5:], "codec id 9"),
    (lambda b: b[:-1], "body bytes"),
])
def test_malformed_messages_are_refused(mutate, message):
    good = payload.encode(embeddings(4, 8), "int8")
    with pytest.raises(PayloadError, match=message):
        payload.decode(mutate(good))


def test_bad_embeddings_are_refused():
    with pytest.raises(PayloadError, match="NaN or Inf"):
        payload.encode(np.array([[np.nan, 1.0]], np.float32), "fp16")
    with pytest.raises(PayloadError, match="float16 range"):
        payload.encode(np.array([[1e6]], np.float32), "fp16")
    with pytest.raises(PayloadError, match="unknown payload codec"):
        payload.encode(np.zeros((1, 2), np.float32), "int4")
    with pytest.raises(PayloadError, match=r"\(frames, dim\)"):
        payload.encode(np.zeros(4, np.float32), "fp32")
