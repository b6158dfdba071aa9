"""The payload codec: how a chunk of embeddings leaves the phone and arrives in the cloud.

One message carries the embeddings of one prefix chunk (or any run of frames) as bytes; the full byte-level
specification, with test vectors, is ``docs/PROTOCOL.md`` §2::

    header  4 s  magic b"VPL1" (or b"VPL2", see below)
            1 B  codec id (0 fp32, 1 fp16, 2 int8, 3 vq)
            1 B  aux: 0 for fp32/fp16/int8; vq: index width in bits (8 or 16)
            2 H  frames T   (little-endian uint16)
            2 H  dim field  (little-endian uint16): d for fp32/fp16/int8; vq: G, the codebook groups
    body    fp32: T*d float32            fp16: T*d float16
            int8: T float32 scales, then T*d int8 with x ~= q * scale[t] (scale = max|x_t| / 127, per frame)
            vq:   T*G indices, uint8 or uint16, frame-major (frame 0's G indices, then frame 1's, ...)

Per-frame scales keep the int8 error proportional to each frame's own peak (|x - x^| <= scale/2), which a
global scale would not: frame norms vary a lot across silence and speech. The float32 scale costs 4 bytes per
40 ms frame (100 B/s at 25 frames/s). Non-finite embeddings are refused on both sides.

``VPL2`` is the version bump that adds codec 3, ``vq``: vector-quantized bottleneck embeddings sent as codebook
indices (the privacy work's information bottleneck at the split). Encoders write ``VPL1`` for fp32/fp16/int8
(those bytes never change) and ``VPL2`` only for vq; decoders accept ``VPL1`` with codecs 0-2 and ``VPL2`` with
codecs 0-3. A vq message carries indices only: the receiver needs the same codebook, (G, K, dg) float32, to
turn them back into (T, G*dg) vectors (:func:`vq_codewords`).

Every refusal is a :class:`PayloadError` with a machine-readable ``reason`` (listed in ``REASONS``), the same
names the cross-language test vectors use.
"""
from __future__ import annotations

import struct

import numpy as np

from toolkit.errors import VeilError

MAGIC = b"VPL1"
MAGIC_V2 = b"VPL2"
HEADER = struct.Struct("<4sBBHH")
CODECS = {"fp32": 0, "fp16": 1, "int8": 2}          # what VPL1 carries (and what encode() writes)
CODECS_V2 = {**CODECS, "vq": 3}                      # what VPL2 carries
CODEC_NAMES = {v: k for k, v in CODECS_V2.items()}
INT8_MAX = 127
FP16_MAX = 65504.0
VQ_WIDTHS = (8, 16)          # index width in bits
VQ_MAX_CODES = 1 << 16       # K <= 65536: uint16 indices

REASONS = ("short_header", "bad_magic", "unknown_codec", "codec_not_in_version", "nonzero_aux", "bad_index_width",
           "body_size", "nonfinite", "fp16_range", "bad_shape", "too_large", "index_out_of_range", "bad_codebook",
           "needs_codebook")


class PayloadError(VeilError):
    """A payload that cannot be decoded or embeddings that cannot be encoded. ``reason`` is one of REASONS."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


def body_bytes(codec: str, frames: int, dim: int, index_bits: int = 16) -> int:
    """Bytes after the header for ``frames`` x ``dim`` embeddings (vq: ``dim`` = G indices of ``index_bits``)."""
    if codec == "fp32":
        return 4 * frames * dim
    if codec == "fp16":
        return 2 * frames * dim
    if codec == "int8":
        return 4 * frames + frames * dim
    if codec == "vq":
        return (index_bits // 8) * frames * dim
    raise PayloadError(f"unknown payload codec '{codec}' (codecs: {', '.join(CODECS_V2)})", "unknown_codec")


def message_bytes(codec: str, frames: int, dim: int, index_bits: int = 16) -> int:
    return HEADER.size + body_bytes(codec, frames, dim, index_bits)


def encode(embeddings: np.ndarray, codec: str) -> bytes:
    """(T, d) float embeddings -> one VPL1 message (fp32, fp16 or int8). vq: :func:`encode_vq`."""
    if codec == "vq":
        raise PayloadError("the vq codec encodes with its codebook: use encode_vq(z, codebook)", "needs_codebook")
    if codec not in CODECS:
        raise PayloadError(f"unknown payload codec '{codec}' (codecs: {', '.join(CODECS_V2)})", "unknown_codec")
    x = np.asarray(embeddings, dtype=np.float32)
    if x.ndim != 2:
        raise PayloadError(f"payload embeddings must be (frames, dim), got shape {x.shape}", "bad_shape")
    frames, dim = x.shape
    if frames > 0xFFFF or dim > 0xFFFF:
        raise PayloadError(f"payload of {frames}x{dim} exceeds the 65535 frames/dims of one message", "too_large")
    if not np.all(np.isfinite(x)):
        raise PayloadError("payload embeddings contain NaN or Inf", "nonfinite")
    header = HEADER.pack(MAGIC, CODECS[codec], 0, frames, dim)
    if codec == "fp32":
        return header + x.astype("<f4").tobytes()
    if codec == "fp16":
        if frames and float(np.max(np.abs(x))) > FP16_MAX:
            raise PayloadError("payload embeddings exceed the float16 range (65504); use fp32 or int8", "fp16_range")
        return header + x.astype("<f2").tobytes()
    peak = np.max(np.abs(x), axis=1) if frames else np.zeros(0, np.float32)
    scale = (peak / INT8_MAX).astype(np.float32)
    safe = np.where(scale > 0, scale, 1.0).astype(np.float32)
    q = np.clip(np.rint(x / safe[:, None]), -INT8_MAX, INT8_MAX).astype(np.int8)
    return header + scale.astype("<f4").tobytes() + q.tobytes()


def read_header(message: bytes) -> tuple[int, str, int, int, int]:
    """Check a message's header against its length; returns (version 1|2, codec, aux, frames, dim field)."""
    if len(message) < HEADER.size:
        raise PayloadError(f"payload of {len(message)} bytes is shorter than its {HEADER.size}-byte header",
                           "short_header")
    magic, codec_id, aux, frames, dim = HEADER.unpack_from(message)
    if magic not in (MAGIC, MAGIC_V2):
        raise PayloadError(f"payload does not start with {MAGIC!r} or {MAGIC_V2!r} (got {magic!r})", "bad_magic")
    version = 1 if magic == MAGIC else 2
    if codec_id not in CODEC_NAMES:
        raise PayloadError(f"payload codec id {codec_id} is unknown", "unknown_codec")
    codec = CODEC_NAMES[codec_id]
    if version == 1 and codec not in CODECS:
        raise PayloadError(f"payload codec id {codec_id} ({codec}) needs a {MAGIC_V2!r} header", "codec_not_in_version")
    if codec == "vq":
        if aux not in VQ_WIDTHS:
            raise PayloadError(f"vq payload index width {aux} bits is not 8 or 16", "bad_index_width")
    elif aux != 0:
        raise PayloadError(f"{codec} payload has aux byte {aux}; it must be 0", "nonzero_aux")
    want = body_bytes(codec, frames, dim, aux)
    if len(message) - HEADER.size != want:
        what = f"{frames}x{dim}" if codec != "vq" else f"{frames} frames x {dim} groups of {aux}-bit indices"
        raise PayloadError(f"{codec} payload of {what} needs {want} body bytes, got {len(message) - HEADER.size}",
                           "body_size")
    return version, codec, aux, frames, dim


def decode(message: bytes, codebook: np.ndarray | None = None) -> np.ndarray:
    """One message -> (T, d) float32 embeddings. A vq message needs the ``codebook`` (G, K, dg) its indices
    point into and decodes to the (T, G*dg) codewords."""
    _, codec, _, frames, dim = read_header(message)
    body = memoryview(message)[HEADER.size:]
    if codec == "vq":
        if codebook is None:
            raise PayloadError("a vq payload decodes only with the served model's codebook", "needs_codebook")
        return vq_codewords(decode_vq(message), codebook)
    if codec == "fp32":
        out = np.frombuffer(body, dtype="<f4").reshape(frames, dim).astype(np.float32)
    elif codec == "fp16":
        out = np.frombuffer(body, dtype="<f2").reshape(frames, dim).astype(np.float32)
    else:
        scale = np.frombuffer(body[: 4 * frames], dtype="<f4").astype(np.float32)
        q = np.frombuffer(body[4 * frames:], dtype=np.int8).reshape(frames, dim)
        out = q.astype(np.float32) * scale[:, None]
    if not np.all(np.isfinite(out)):
        raise PayloadError("payload decodes to NaN or Inf", "nonfinite")
    return out


def roundtrip(embeddings: np.ndarray, codec: str) -> tuple[np.ndarray, int]:
    """What the cloud receives for these embeddings, and how many bytes travelled."""
    message = encode(embeddings, codec)
    return decode(message), len(message)


# ---- vq: codebook indices (VPL2, codec 3) ------------------------------------------------------------------

def check_codebook(codebook: np.ndarray) -> np.ndarray:
    """A codebook is (G groups, K codes, dg dims) finite float32 with 1 <= K <= 65536."""
    cb = np.asarray(codebook)
    if cb.ndim != 3 or 0 in cb.shape:
        raise PayloadError(f"a vq codebook must be (groups, codes, dims), got shape {cb.shape}", "bad_codebook")
    if cb.shape[1] > VQ_MAX_CODES:
        raise PayloadError(f"a vq codebook has at most {VQ_MAX_CODES} codes per group, got {cb.shape[1]}",
                           "bad_codebook")
    cb = cb.astype(np.float32)
    if not np.all(np.isfinite(cb)):
        raise PayloadError("the vq codebook contains NaN or Inf", "bad_codebook")
    return cb


def index_bits(codes: int) -> int:
    """Index width for a codebook of ``codes`` entries per group: 8 bits up to 256 codes, else 16."""
    return 8 if codes <= 256 else 16


def vq_indices(z: np.ndarray, codebook: np.ndarray) -> np.ndarray:
    """(T, G*dg) continuous bottleneck vectors -> (T, G) nearest-codeword indices, int64.

    index[t, g] = argmin_k sum_j (z[t, g*dg + j] - cb[g, k, j])^2, computed in float64 from the float32 inputs,
    summing j = 0, 1, ... in order (no pairwise or fused sums), the first minimum winning a tie: the exact rule
    every implementation follows so that phones and server agree index for index."""
    cb = check_codebook(codebook)
    groups, codes, dg = cb.shape
    x = np.asarray(z, dtype=np.float32)
    if x.ndim != 2 or x.shape[1] != groups * dg:
        raise PayloadError(f"vq input must be (frames, {groups * dg}) for a {groups}x{codes}x{dg} codebook, "
                           f"got shape {x.shape}", "bad_shape")
    if not np.all(np.isfinite(x)):
        raise PayloadError("vq input contains NaN or Inf", "nonfinite")
    x64 = x.astype(np.float64).reshape(len(x), groups, 1, dg)
    c64 = cb.astype(np.float64)[None]                       # (1, G, K, dg)
    dist = np.zeros((len(x), groups, codes), np.float64)
    for j in range(dg):                                     # in order, one term at a time
        diff = x64[..., j] - c64[..., j]
        dist += diff * diff
    return np.argmin(dist, axis=2).astype(np.int64)         # argmin returns the first minimum


def encode_indices(indices: np.ndarray, codes: int) -> bytes:
    """(T, G) indices into a codebook of ``codes`` entries per group -> one VPL2 vq message."""
    idx = np.asarray(indices)
    if idx.ndim != 2:
        raise PayloadError(f"vq indices must be (frames, groups), got shape {idx.shape}", "bad_shape")
    frames, groups = idx.shape
    if frames > 0xFFFF or groups > 0xFFFF:
        raise PayloadError(f"vq payload of {frames}x{groups} exceeds the 65535 frames/groups of one message",
                           "too_large")
    if not 1 <= codes <= VQ_MAX_CODES:
        raise PayloadError(f"a vq codebook has 1..{VQ_MAX_CODES} codes, got {codes}", "bad_codebook")
    bad = idx[(idx < 0) | (idx >= codes)]
    if bad.size:
        raise PayloadError(f"vq index {int(bad[0])} is outside 0..{codes - 1}", "index_out_of_range")
    bits = index_bits(codes)
    header = HEADER.pack(MAGIC_V2, CODECS_V2["vq"], bits, frames, groups)
    return header + idx.astype("<u1" if bits == 8 else "<u2").tobytes()


def encode_vq(z: np.ndarray, codebook: np.ndarray) -> bytes:
    """(T, G*dg) bottleneck vectors -> their nearest codewords' indices as one VPL2 vq message."""
    cb = check_codebook(codebook)
    return encode_indices(vq_indices(z, cb), cb.shape[1])


def decode_vq(message: bytes) -> np.ndarray:
    """One vq message -> (T, G) indices, int64 (range-checked against a codebook by :func:`vq_codewords`)."""
    _, codec, bits, frames, groups = read_header(message)
    if codec != "vq":
        raise PayloadError(f"expected a vq payload, got {codec}", "unknown_codec")
    body = memoryview(message)[HEADER.size:]
    return np.frombuffer(body, dtype="<u1" if bits == 8 else "<u2").reshape(frames, groups).astype(np.int64)


def vq_codewords(indices: np.ndarray, codebook: np.ndarray) -> np.ndarray:
    """(T, G) indices -> (T, G*dg) float32: frame t is cb[0, i[t,0]], cb[1, i[t,1]], ... concatenated.
    An index >= K (or a G that differs from the codebook's) is a PayloadError."""
    cb = check_codebook(codebook)
    groups, codes, dg = cb.shape
    idx = np.asarray(indices, dtype=np.int64)
    if idx.ndim != 2 or idx.shape[1] != groups:
        raise PayloadError(f"vq payload has {idx.shape[-1] if idx.ndim == 2 else '?'} groups per frame, the "
                           f"codebook {groups}", "bad_shape")
    bad = idx[(idx < 0) | (idx >= codes)]
    if bad.size:
        raise PayloadError(f"vq index {int(bad[0])} is outside the codebook's 0..{codes - 1}", "index_out_of_range")
    out = cb[np.arange(groups)[None, :], idx]               # (T, G, dg)
    return out.reshape(len(idx), groups * dg).astype(np.float32)
