"""The payload codec: exact fp32, bounded fp16 and int8 round-trip errors, sizes, refusal of bad input, and the
VPL2 vq codec (nearest-codeword indices, 8/16-bit, ties, range checks)."""
from __future__ import annotations

import hashlib

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


@pytest.mark.parametrize("mutate, message, reason", [
    (lambda b: b[:5], "shorter than its", "short_header"),
    (lambda b: b"XXXX" + b[4:], "does not start with", "bad_magic"),
    (lambda b: b[:4] + bytes([9]) + b[5:], "codec id 9", "unknown_codec"),
    (lambda b: b[:-1], "body bytes", "body_size"),
    (lambda b: b[:5] + bytes([1]) + b[6:], "aux byte 1", "nonzero_aux"),
    (lambda b: b[:4] + bytes([3]) + bytes([8]) + b[6:], "needs a b'VPL2' header", "codec_not_in_version"),
])
def test_malformed_messages_are_refused(mutate, message, reason):
    good = payload.encode(embeddings(4, 8), "int8")
    with pytest.raises(PayloadError, match=message) as err:
        payload.decode(mutate(good))
    assert err.value.reason == reason


def test_vpl1_bytes_are_unchanged_by_the_vpl2_extension():
    # sha256 of the messages the VPL1-only codec wrote for this input before VPL2 existed
    rng = np.random.default_rng(2024)
    x = (rng.standard_normal((50, 144)) * np.geomspace(1e-3, 20, 50)[:, None]).astype(np.float32)
    golden = {"fp32": "ede3a578b8c80562f819cb85748835eacce3fe38a1cd74ef08c9a0df995d37d1",
              "fp16": "147c4f21dd1f0d6eb272aec29df53533fdc498f72091840dc5542f70dcd3d50b",
              "int8": "9729dab4b24c09af70039ccd0c2a62a4c365f55af2d34105fed64628bead9d7f"}
    for codec, digest in golden.items():
        message = payload.encode(x, codec)
        assert message[:4] == b"VPL1" and hashlib.sha256(message).hexdigest() == digest
        # the same body under a VPL2 header decodes to the same values
        assert np.array_equal(payload.decode(b"VPL2" + message[4:]), payload.decode(message))


def codebook(groups=3, codes=10, dg=4, seed=1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((groups, codes, dg)).astype(np.float32)


def test_vq_picks_the_nearest_codeword_per_group_and_round_trips():
    cb = codebook()
    rng = np.random.default_rng(5)
    picked = rng.integers(0, 10, size=(7, 3))
    z = payload.vq_codewords(picked, cb) + rng.normal(0, 1e-3, (7, 12)).astype(np.float32)
    message = payload.encode_vq(z, cb)
    assert message[:4] == b"VPL2" and message[4] == 3 and message[5] == 8
    assert len(message) == payload.message_bytes("vq", 7, 3, 8) == 10 + 21
    assert np.array_equal(payload.decode_vq(message), picked)
    decoded = payload.decode(message, cb)
    assert decoded.dtype == np.float32 and decoded.shape == (7, 12)
    assert np.array_equal(decoded, payload.vq_codewords(picked, cb))
    # brute force: the chosen code minimizes the squared distance in every group
    for t in range(7):
        for g in range(3):
            d = ((z[t, 4 * g:4 * g + 4].astype(np.float64) - cb[g].astype(np.float64)) ** 2).sum(-1)
            assert d[picked[t, g]] == d.min()


def test_vq_ties_go_to_the_first_code_and_width_follows_the_codebook_size():
    cb = np.zeros((1, 300, 2), np.float32)
    cb[0, :, 0] = np.arange(300)
    z = np.array([[0.5, 0.0], [299.0, 0.0], [10.5, 0.0]], np.float32)  # 0.5 ties codes 0 and 1
    assert payload.vq_indices(z, cb).tolist() == [[0], [299], [10]]
    message = payload.encode_vq(z, cb)
    assert message[5] == 16 and len(message) == 10 + 3 * 2
    assert payload.decode_vq(message).tolist() == [[0], [299], [10]]
    assert payload.encode_vq(z[:1], cb[:, :256])[5] == 8


def test_vq_refuses_indices_outside_the_codebook_and_bad_widths():
    cb = codebook(groups=2, codes=16, dg=2)
    bad = payload.HEADER.pack(b"VPL2", 3, 8, 1, 2) + bytes([3, 16])
    assert payload.decode_vq(bad).tolist() == [[3, 16]]  # the indices decode; the codebook refuses them
    with pytest.raises(PayloadError, match="vq index 16") as err:
        payload.decode(bad, cb)
    assert err.value.reason == "index_out_of_range"
    with pytest.raises(PayloadError) as err:
        payload.decode(bad[:5] + bytes([12]) + bad[6:], cb)
    assert err.value.reason == "bad_index_width"
    with pytest.raises(PayloadError) as err:
        payload.decode(bad)  # no codebook
    assert err.value.reason == "needs_codebook"
    with pytest.raises(PayloadError) as err:
        payload.encode_indices(np.array([[0, 16]]), 16)
    assert err.value.reason == "index_out_of_range"
    with pytest.raises(PayloadError) as err:
        payload.vq_codewords(np.zeros((1, 3), np.int64), cb)
    assert err.value.reason == "bad_shape"
    with pytest.raises(PayloadError) as err:
        payload.encode_vq(np.full((1, 4), np.nan, np.float32), cb)
    assert err.value.reason == "nonfinite"
    with pytest.raises(PayloadError, match="encode_vq"):
        payload.encode(np.zeros((1, 4), np.float32), "vq")


def test_bad_embeddings_are_refused():
    with pytest.raises(PayloadError, match="NaN or Inf"):
        payload.encode(np.array([[np.nan, 1.0]], np.float32), "fp16")
    with pytest.raises(PayloadError, match="float16 range"):
        payload.encode(np.array([[1e6]], np.float32), "fp16")
    with pytest.raises(PayloadError, match="unknown payload codec"):
        payload.encode(np.zeros((1, 2), np.float32), "int4")
    with pytest.raises(PayloadError, match=r"\(frames, dim\)"):
        payload.encode(np.zeros(4, np.float32), "fp32")
