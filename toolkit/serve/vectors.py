"""Cross-language test vectors of the protocol and the payload codec (``veil protocol vectors``).

The Kotlin and Swift cores implement docs/PROTOCOL.md on their own; these files are how they prove they
agree with the Python reference byte for byte. Everything is generated here from the reference code:

- ``chunker/``: a real corpus PCM snippet cut into 2-s chunks, the last zero-padded, with its true sample count;
- ``payload/``: the codecs on edge cases (fp16 subnormals, ties, 65504, refusals; int8 half-to-even; vq with
  small committed codebooks, 8- and 16-bit indices, ties) and malformed payloads with their error reasons;
- ``frames/``: one frame of every message type with its fields, and malformed frames with their error codes;
- ``sessions/``: a whole real session per codec (the shipped model's prefix on the snippet): every client frame,
  the expected decoded embeddings of each chunk, every server reply;
- ``scenarios/``: client frame sequences with the replies or error codes a server must give (the Python
  server's tests replay them against a live server);
- ``lifecycle.json``: the phone apps' session lifecycle (toolkit/serve/lifecycle.py), transitions and scenarios.

``index.json`` lists every file with its meaning, shapes and expected values; ``README.md`` explains the layout.
Binary conventions: ``.bin`` files are exact message bytes; ``.f32`` files are raw little-endian float32,
row-major, shape in the index. The PCM snippet is an input: regenerating without ``--audio`` reuses the
committed one, so the vectors change only when the code or the model does.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from toolkit import payload
from toolkit.audio import load_audio
from toolkit.chunking import ChunkSpec, chunk_pcm
from toolkit.errors import VeilError
from toolkit.files import file_sha256, replace_dir, temp_dir_beside
from toolkit.model.asr import split
from toolkit.model.checkpoint import load_checkpoint
from toolkit.serve import lifecycle
from toolkit.serve import protocol as p
from toolkit.serve.admission import Admission, AdmissionLimits
from toolkit.serve.auth import TokenStore
from toolkit.serve.protocol import ProtocolError
from toolkit.serve.session import Conversation, SessionLimits, run_direct
from toolkit.serve.suffix import ServedSuffix

FORMAT = "veil-testvectors/1"
TEST_TOKEN = "veil-test-token"
SESSION_ID = bytes(range(16))
SESSION_CODECS = ("fp32", "fp16", "int8")
SCENARIO_CODEC = "int8"


class VectorWriter:
    """Files into a folder, each recorded with its meaning."""

    def __init__(self, root: Path):
        self.root = root
        self.written: dict[bytes, str] = {}

    def bytes(self, rel: str, data: bytes, reuse: bool = False) -> str:
        """Write ``data`` at ``rel``; with ``reuse``, name an identical file written before instead."""
        if reuse and data in self.written:
            return self.written[data]
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        self.written.setdefault(data, rel)
        return rel

    def f32(self, rel: str, array: np.ndarray, reuse: bool = False) -> dict:
        a = np.ascontiguousarray(array, dtype="<f4")
        return {"file": self.bytes(rel, a.tobytes(), reuse), "dtype": "float32", "shape": list(a.shape)}


def f32_bits(values) -> list[str]:
    return [f"{int(b):08x}" for b in np.asarray(values, dtype="<f4").reshape(-1).view("<u4")]


def f16_bits(values) -> list[str]:
    return [f"{int(b):04x}" for b in np.asarray(values, dtype="<f2").reshape(-1).view("<u2")]


def describe_message(m: p.Message) -> dict:
    d = {"type": m.type.name}
    if isinstance(m, p.Hello):
        d.update(checkpoint_sha256=m.checkpoint_sha256.hex(), split_layer=m.split_layer, codec=m.codec,
                 sample_rate=m.sample_rate, chunk_samples=m.chunk_samples, frame_samples=m.frame_samples,
                 dim=m.dim, token=m.token)
    elif isinstance(m, p.Chunk):
        d.update(seq=m.seq, valid_samples=m.valid_samples, payload_bytes=len(m.payload))
    elif isinstance(m, p.End):
        d.update(chunks=m.chunks)
    elif isinstance(m, p.Ready):
        d.update(session_id=m.session_id.hex(), max_message_bytes=m.max_message_bytes,
                 max_utterance_samples=m.max_utterance_samples, partial_window_frames=m.partial_window_frames,
                 idle_timeout_ms=m.idle_timeout_ms)
    elif isinstance(m, p.Partial):
        d.update(seq=m.seq, chunks=m.chunks, frames=m.frames, flags=m.flags, text=m.text)
    elif isinstance(m, p.Final):
        d.update(chunks=m.chunks, frames=m.frames, text=m.text)
    else:
        d.update(code=m.code, name=m.name, message=m.message)
    return d


def expect_error(fn, *args) -> ProtocolError | payload.PayloadError:
    try:
        fn(*args)
    except (ProtocolError, payload.PayloadError) as exc:
        return exc
    raise AssertionError(f"{fn.__name__} accepted a malformed input")


# ---- the real inputs ---------------------------------------------------------------------------------------

def read_snippet(audio: Path | None, out: Path) -> tuple[np.ndarray, str]:
    """The PCM snippet and a description of where it came from."""
    committed = out / "chunker" / "pcm.f32"
    if audio is None:
        if not committed.is_file():
            raise VeilError(f"{committed}: no committed PCM snippet; pass --audio with a corpus utterance")
        index = json.loads((out / "index.json").read_text())
        return np.fromfile(committed, dtype="<f4"), index["chunker"]["source"]
    if Path(audio).suffix == ".f32":
        return np.fromfile(audio, dtype="<f4"), f"raw float32 PCM {Path(audio).name}"
    return load_audio(audio), f"corpus utterance {Path(audio).stem} (16 kHz mono, float32 in [-1, 1])"


# ---- sections ----------------------------------------------------------------------------------------------

def chunker_vectors(w: VectorWriter, pcm: np.ndarray, source: str, chunk: ChunkSpec) -> dict:
    chunks = chunk_pcm(pcm, chunk.chunk_samples)
    return {"source": source, "sample_rate": chunk.sample_rate, "chunk_samples": chunk.chunk_samples,
            "frame_samples": chunk.frame_samples,
            "pcm": w.f32("chunker/pcm.f32", pcm), "samples": int(len(pcm)),
            "chunks": w.f32("chunker/chunks.f32", np.concatenate(chunks)), "chunk_count": len(chunks),
            "valid_samples": chunk.valid_samples(len(pcm)), "valid_frames": chunk.frames_for(len(pcm)),
            "rule": "n = max(1, ceil(S / chunk_samples)) chunks; chunk i holds samples i*chunk_samples.., the last "
                    "zero-padded; valid_samples[i] = min(chunk_samples, S - i*chunk_samples); the utterance has "
                    "ceil(S / frame_samples) valid frames"}


def fp16_vectors(w: VectorWriter) -> dict:
    tiny = 2.0 ** -24  # smallest fp16 subnormal
    cases = [
        (0.0, "zero"), (-0.0, "negative zero keeps its sign"), (1.0, "one"), (-2.0, "minus two"),
        (65504.0, "largest fp16"), (-65504.0, "most negative fp16"), (65503.0, "rounds to 65504"),
        (2.0 ** -14, "smallest normal"), (tiny, "smallest subnormal"), (-tiny, "smallest negative subnormal"),
        (3 * 2.0 ** -25, "tie between 2^-24 and 2^-23: to even, 2^-23"),
        (2.0 ** -25, "tie between 0 and 2^-24: to even, 0"),
        (np.float32(2.0 ** -25) * np.float32(1.0000001), "just above the tie: 2^-24"),
        (1e-8, "below half the smallest subnormal: 0"), (-1e-8, "negative underflow: -0"),
        (1.0 + 2.0 ** -11, "tie between 1 and 1+2^-10: to even, 1"),
        (1.0 + 3 * 2.0 ** -11, "tie between 1+2^-10 and 1+2^-9: to even, 1+2^-9"),
        (0.1, "0.1"), (1.0 / 3.0, "1/3"), (-2.5e-6, "negative subnormal"), (1e-45, "float32 subnormal: 0"),
        (6.097555e-05, "largest subnormal region edge"), (1234.5678, "mid range"),
    ]
    x = np.array([[v for v, _ in cases]], np.float32)
    message = payload.encode(x, "fp16")
    decoded = payload.decode(message)
    section = {"rule": "IEEE 754 binary16, round to nearest, ties to even, subnormals kept; encoders refuse "
                       "|x| > 65504 and non-finite inputs; decoders refuse Inf/NaN bit patterns",
               "input": w.f32("payload/fp16-edges.in.f32", x), "message": w.bytes("payload/fp16-edges.bin", message),
               "decoded": w.f32("payload/fp16-edges.out.f32", decoded),
               "values": [{"what": what, "input_f32_bits": fb, "fp16_bits": hb, "decoded_f32_bits": db}
                          for (_, what), fb, hb, db in zip(cases, f32_bits(x), f16_bits(np.frombuffer(
                              message[payload.HEADER.size:], "<f2")), f32_bits(decoded))],
               "encode_errors": []}
    for value, what in [(65504.0039, "just over 65504 (IEEE would round to 65504; Veil refuses)"),
                        (65520.0, "overflows to Inf in IEEE"), (1e6, "far out of range"),
                        (np.inf, "Inf input"), (np.nan, "NaN input")]:
        err = expect_error(payload.encode, np.array([[1.0, value]], np.float32), "fp16")
        section["encode_errors"].append({"what": what, "input_f32_bits": f32_bits([1.0, value]),
                                         "reason": err.reason})
    return section


def int8_vectors(w: VectorWriter) -> dict:
    frames = np.array([
        [127.0, 0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 126.5],        # scale 1: exact halves round to even
        [254.0, 1.0, 3.0, 5.0, -1.0, -3.0, -5.0, 0.0],          # scale 2: x/scale = halves again
        [0.0] * 8,                                              # all zero: scale 0, q 0
        [-3.0, 1.0, 0.75, -0.1, 2.999, 0.01, -2.0, 1.4999],     # negative peak
        [1e-40, -5e-41, 0.0, 2e-41, 0.0, 0.0, 0.0, 1e-40],      # float32 subnormals
        [0.3, -0.7, 0.11, 0.05, -0.2, 0.69, -0.33, 0.01],       # ordinary
    ], np.float32)
    message = payload.encode(frames, "int8")
    t, d = frames.shape
    body = message[payload.HEADER.size:]
    scales = np.frombuffer(body[: 4 * t], "<f4")
    q = np.frombuffer(body[4 * t:], np.int8).reshape(t, d)
    decoded = payload.decode(message)
    return {"rule": "scale[t] = fl32(max_j |x[t,j]| / 127); q = clip(round_half_even(fl32(x / s)), -127, 127) with "
                    "s = scale or 1 where scale = 0; decoded = fl32(q * scale[t]); all arithmetic in float32",
            "input": w.f32("payload/int8-rounding.in.f32", frames), "message": w.bytes("payload/int8-rounding.bin",
                                                                                       message),
            "decoded": w.f32("payload/int8-rounding.out.f32", decoded), "scales_f32_bits": f32_bits(scales),
            "q": q.astype(int).tolist()}


def vq_vectors(w: VectorWriter) -> dict:
    rng = np.random.default_rng(12)
    section = {"rule": "index[t,g] = argmin_k sum_{j=0..dg-1} (z[t, g*dg+j] - cb[g,k,j])^2 in float64 (inputs "
                       "widened exactly from float32), summed in order j = 0, 1, ... without fused multiply-add; "
                       "the first minimum wins a tie; 8-bit indices when K <= 256, else 16-bit",
               "cases": []}
    for name, (groups, codes, dg) in {"vq8": (4, 16, 4), "vq16": (2, 300, 3)}.items():
        cb = (rng.standard_normal((groups, codes, dg)) * 0.5).astype(np.float32)
        z = (rng.standard_normal((5, groups * dg)) * 0.5).astype(np.float32)
        # frame 4 of group 0 sits exactly between codes 2 and 5 of that group (far from the others, all values
        # exact in binary): the tie goes to code 2
        cb[0, 2], cb[0, 5], z[4, :dg] = 3.0, 3.5, 3.25
        indices = payload.vq_indices(z, cb)
        assert indices[4, 0] == 2, "tie vector did not resolve to the first code"
        message = payload.encode_vq(z, cb)
        section["cases"].append({
            "name": name, "groups": groups, "codes": codes, "group_dim": dg, "index_bits": payload.index_bits(codes),
            "codebook": w.f32(f"payload/{name}-codebook.f32", cb), "z": w.f32(f"payload/{name}.z.f32", z),
            "indices": indices.tolist(), "message": w.bytes(f"payload/{name}.bin", message),
            "codewords": w.f32(f"payload/{name}.codewords.f32", payload.vq_codewords(indices, cb)),
            "tie": "frame 4, group 0: equidistant from codes 2 and 5 -> 2"})
    return section


def payload_error_vectors(w: VectorWriter) -> dict:
    good = payload.encode(np.array([[0.5, -1.0, 2.0], [0.0, 0.25, -0.125]], np.float32), "int8")
    fp32 = payload.encode(np.array([[1.0, 2.0]], np.float32), "fp32")
    cb16 = np.zeros((2, 16, 2), np.float32)
    vq = payload.encode_indices(np.array([[1, 15], [0, 3]]), 16)
    cases = [
        ("short-header", good[:7], "fewer than 10 bytes"),
        ("bad-magic", b"VPL3" + good[4:], "magic is neither VPL1 nor VPL2"),
        ("unknown-codec", good[:4] + bytes([9]) + good[5:], "codec id 9"),
        ("vq-in-vpl1", b"VPL1" + vq[4:], "codec 3 needs a VPL2 header"),
        ("nonzero-aux", good[:5] + bytes([1]) + good[6:], "aux byte of an int8 payload is not 0"),
        ("body-short", good[:-1], "one body byte missing"),
        ("body-long", good + b"\0", "one body byte too many"),
        ("fp32-nan", fp32[:-4] + np.array([np.nan], "<f4").tobytes(), "NaN in an fp32 body"),
        ("fp16-inf", payload.HEADER.pack(b"VPL1", 1, 0, 1, 2) + bytes.fromhex("003c007c"), "fp16 Inf bits 0x7c00"),
        ("int8-inf-scale", payload.HEADER.pack(b"VPL1", 2, 0, 1, 1) + np.array([np.inf], "<f4").tobytes() + b"\x01",
         "an Inf scale"),
        ("vq-width-12", vq[:5] + bytes([12]) + vq[6:], "vq index width 12"),
        ("vq-index-out-of-range", payload.HEADER.pack(b"VPL2", 3, 8, 1, 2) + bytes([1, 16]),
         "index 16 with a 16-code codebook (error when mapped to codewords)"),
    ]
    out = []
    cbinfo = w.f32("payload/errors/codebook-2x16x2.f32", cb16)
    for name, data, what in cases:
        err = expect_error(payload.decode, data, cb16)
        out.append({"name": name, "message": w.bytes(f"payload/errors/{name}.bin", data), "what": what,
                    "reason": err.reason, "protocol_error": {"code": 4407, "name": "bad_payload"}})
    return {"codebook": cbinfo, "what": "decode each message (vq ones with this codebook): each must be refused "
                                        "with its reason", "cases": out}


def frame_vectors(w: VectorWriter, sha: bytes) -> dict:
    examples = [
        ("hello", p.Hello(sha, 4, "int8", 16000, 32000, 640, 144, TEST_TOKEN)),
        ("chunk", p.Chunk(7, 32000, payload.encode(np.array([[1.0, -0.5]], np.float32), "fp16"))),
        ("end", p.End(3)),
        ("ready", p.Ready(SESSION_ID, 65536, 960000, 400, 30000)),
        ("partial", p.Partial(2, 3, 137, p.PARTIAL_DUPLICATE, "héllo wörld")),
        ("final", p.Final(3, 112, "then take it out")),
        ("error", p.Error(4409, "chunk 2 arrived after chunk 0; expected 1")),
    ]
    cases = [{"name": n, "frame": w.bytes(f"frames/{n}.bin", p.encode_frame(m)), "fields": describe_message(m)}
             for n, m in examples]
    hello = p.encode_frame(examples[0][1])
    end = p.encode_frame(p.End(3))
    partial = p.encode_frame(examples[4][1])
    hello_body = examples[0][1].body()
    bad = [
        ("short-header", hello[:11], "11 bytes"),
        ("bad-magic", b"VSTX" + hello[4:], "magic VSTX"),
        ("version-2", hello[:4] + bytes([2]) + hello[5:], "protocol version 2"),
        ("nonzero-flags", hello[:6] + b"\x01\x00" + hello[8:], "flags 1"),
        ("unknown-type", hello[:5] + bytes([0x7F]) + hello[6:], "type 0x7f"),
        ("length-over", hello[:8] + (len(hello_body) + 1).to_bytes(4, "little") + hello[12:], "length says one more"),
        ("length-under", hello[:8] + (len(hello_body) - 1).to_bytes(4, "little") + hello[12:], "length says one less"),
        ("hello-short-body", p.FRAME_HEADER.pack(p.MAGIC, 1, 1, 0, 20) + bytes(20), "HELLO body of 20 bytes"),
        ("hello-token-overrun", hello[:12] + hello_body[:50] + (len(TEST_TOKEN) + 5).to_bytes(2, "little")
         + hello_body[52:], "token length beyond the body"),
        ("hello-reserved", hello[:12 + 35] + b"\x01" + hello[12 + 36:], "HELLO reserved byte 1"),
        ("hello-codec-9", hello[:12 + 34] + b"\x09" + hello[12 + 35:], "codec id 9"),
        ("hello-token-not-utf8", hello[:-1] + b"\xff", "token bytes not UTF-8"),
        ("chunk-short-body", p.FRAME_HEADER.pack(p.MAGIC, 1, 2, 0, 7) + bytes(7), "CHUNK body of 7 bytes"),
        ("end-long-body", end[:8] + (5).to_bytes(4, "little") + end[12:] + b"\0", "END body of 5 bytes"),
        ("partial-reserved", partial[:12 + 13] + b"\x01" + partial[12 + 14:], "PARTIAL reserved byte 1"),
        ("partial-text-not-utf8", partial[:8] + (len(partial) - 12 + 1).to_bytes(4, "little") + partial[12:] + b"\xc3",
         "text ends in a cut UTF-8 sequence"),
        ("error-short-body", p.FRAME_HEADER.pack(p.MAGIC, 1, 0x1F, 0, 1) + b"\x01", "ERROR body of 1 byte"),
        ("empty", b"", "no bytes at all"),
    ]
    errors = []
    for name, data, what in bad:
        err = expect_error(p.decode_frame, data)
        errors.append({"name": name, "frame": w.bytes(f"frames/errors/{name}.bin", data), "what": what,
                       "code": err.code, "error": err.error.name, "reason": err.reason})
    concat = p.encode_frame(examples[0][1]) + p.encode_frame(examples[2][1])
    stream = {"frames": w.bytes("frames/stream-hello-end.bin", concat),
              "what": "HELLO then END concatenated, as in an HTTP body; cut by the body lengths",
              "cut": {"frames": w.bytes("frames/errors/stream-cut.bin", concat[:-2]),
                      "what": "the same with the last 2 bytes missing", "code": 4400, "error": "bad_frame",
                      "reason": expect_error(p.split_frames, concat[:-2]).reason}}
    return {"cases": cases, "errors": errors, "concatenated": stream}


# ---- sessions and scenarios ---------------------------------------------------------------------------------

def prefix_outputs(prefix, pcm: np.ndarray, chunk_samples: int) -> list[np.ndarray]:
    """The float prefix's output for each chunk of ``pcm``: (chunk_frames, d) float32 per chunk."""
    with torch.no_grad():
        return [prefix(torch.from_numpy(c)).numpy()[0] for c in chunk_pcm(pcm, chunk_samples)]


def read_prefix_outputs(folder: Path, n: int) -> list[np.ndarray]:
    """``sessions/prefix-N.f32`` of an existing vectors folder (index.json gives their shape)."""
    index = json.loads((folder / "index.json").read_text())
    item = next(c for c in index["sessions"][0]["client"] if "prefix_output" in c)["prefix_output"]
    shape = item["shape"]
    return [np.fromfile(folder / "sessions" / f"prefix-{i}.f32", dtype="<f4").reshape(shape) for i in range(n)]


def session_vectors(w: VectorWriter, served: ServedSuffix, embeddings: list[np.ndarray],
                    pcm: np.ndarray) -> tuple[list[dict], dict]:
    g = served.chunk
    chunks = chunk_pcm(pcm, g.chunk_samples)
    valid = g.valid_samples(len(pcm))
    sessions, messages = [], {}
    for codec in SESSION_CODECS:
        hello = p.Hello(served.identity.raw_sha256, served.identity.split_layer, codec, g.sample_rate,
                        g.chunk_samples, g.frame_samples, served.dim, TEST_TOKEN)
        client = [hello] + [p.Chunk(i, v, payload.encode(e, codec)) for i, (e, v) in
                            enumerate(zip(embeddings, valid))] + [p.End(len(chunks))]
        frames = [p.encode_frame(m) for m in client]
        replies = run_direct(conversation(served), frames)
        base = f"sessions/{codec}"
        entry = {"codec": codec, "client": [], "server": [], "http_body": "the client frames concatenated"}
        for i, (m, f) in enumerate(zip(client, frames)):
            item = {"frame": w.bytes(f"{base}/c{i:02d}-{m.type.name.lower()}.bin", f), "fields": describe_message(m)}
            if isinstance(m, p.Chunk):
                item["prefix_output"] = w.f32(f"sessions/prefix-{m.seq}.f32", embeddings[m.seq], reuse=True)
                item["decoded"] = w.f32(f"{base}/c{i:02d}-decoded.f32", payload.decode(m.payload), reuse=True)
                item["valid_frames"] = g.frames_for(m.valid_samples)
            entry["client"].append(item)
        for i, r in enumerate(replies):
            entry["server"].append({"frame": w.bytes(f"{base}/s{i:02d}-{r.type.name.lower()}.bin", p.encode_frame(r)),
                                    "fields": describe_message(r)})
        sessions.append(entry)
        messages[codec] = (client, replies)
    return sessions, messages


def conversation(served: ServedSuffix) -> Conversation:
    """The server's behaviour for the vectors: the shipped model, default limits, TEST_TOKEN required."""
    admission = Admission(TokenStore.of_tokens([TEST_TOKEN]), AdmissionLimits(rate_per_token=0))
    return Conversation({served.identity: served}, SessionLimits(), lambda: SESSION_ID, admission.connect(None))


def scenario_vectors(w: VectorWriter, served: ServedSuffix, messages: dict) -> list[dict]:
    client, replies = messages[SCENARIO_CODEC]
    hello, chunks, end = client[0], client[1:-1], client[-1]
    g = served.chunk
    f = p.encode_frame
    other = bytes([hello.checkpoint_sha256[0] ^ 0xFF]) + hello.checkpoint_sha256[1:]
    nan_payload = payload.HEADER.pack(b"VPL1", 0, 0, 1, served.dim) + np.full(served.dim, np.nan, "<f4").tobytes()
    last = chunks[-1]
    trimmed_last = p.Chunk(last.seq, last.valid_samples, payload.encode(
        payload.decode(last.payload)[: g.frames_for(last.valid_samples)], SCENARIO_CODEC))
    hello_v2 = f(hello)[:4] + bytes([2]) + f(hello)[5:]
    scenarios = {
        "full-session": ([hello, *chunks, end], "the whole int8 session"),
        "resend-is-idempotent": ([hello, chunks[0], chunks[0], *chunks[1:], end],
                                 "chunk 0 twice: the second PARTIAL has the duplicate flag; FINAL as without it"),
        "trimmed-last-chunk": ([hello, *chunks[:-1], trimmed_last, end],
                               "the last chunk carries only its valid frames: same FINAL"),
        "empty-utterance": ([hello, p.End(0)], "END with no chunk: FINAL with empty text"),
        "gap": ([hello, chunks[0], chunks[2]], "seq 2 after seq 0"),
        "resend-mismatch": ([hello, chunks[0], replace(chunks[1], seq=0)], "seq 0 again with other bytes"),
        "end-count": ([hello, chunks[0], p.End(2)], "END counts 2 chunks, 1 was sent"),
        "unknown-prefix": ([replace(hello, checkpoint_sha256=other)], "another checkpoint's sha256"),
        "other-split-layer": ([replace(hello, split_layer=hello.split_layer - 1)], "the right checkpoint cut elsewhere"),
        "bad-geometry": ([replace(hello, chunk_samples=16000)], "1-s chunks for a 2-s prefix"),
        "vq-not-served": ([replace(hello, codec="vq")], "vq for a model without a codebook"),
        "no-token": ([replace(hello, token="")], "HELLO without token, no Authorization header"),
        "wrong-token": ([replace(hello, token="not-the-token")], "an unknown token"),
        "chunk-before-hello": ([chunks[0]], "no HELLO first"),
        "second-hello": ([hello, hello], "HELLO twice"),
        "server-message-from-client": ([hello, p.Final(0, 0, "")], "a FINAL sent by the client"),
        "codec-mismatch": ([replace(hello, codec="fp16"), chunks[0]], "HELLO fp16, int8 payload"),
        "bad-payload": ([hello, replace(chunks[0], payload=chunks[0].payload[:-1])], "payload one byte short"),
        "nonfinite-payload": ([replace(hello, codec="fp32"), p.Chunk(0, g.chunk_samples, nan_payload)],
                              "an fp32 frame of NaN (refused before its frame count is checked)"),
        "wrong-frame-count": ([hello, replace(chunks[0], payload=payload.encode(
            payload.decode(chunks[0].payload)[:10], SCENARIO_CODEC))], "a full chunk with 10 frames"),
        "valid-samples-zero": ([hello, replace(chunks[0], valid_samples=0)], "valid samples 0"),
        "valid-samples-over": ([hello, replace(chunks[0], valid_samples=g.chunk_samples + 1)], "one more than a chunk"),
        "chunk-after-short": ([hello, replace(chunks[0], valid_samples=100), chunks[1]], "a chunk after a short one"),
    }
    raw = {"version-2": ([hello_v2], "HELLO with protocol version 2")}
    out = []
    for name, (msgs, what) in list(scenarios.items()) + list(raw.items()):
        frames = [m if isinstance(m, bytes) else f(m) for m in msgs]
        got = run_direct(conversation(served), frames)
        steps = [{"frame": w.bytes(f"scenarios/{name}/c{i:02d}.bin", fr, reuse=True)} for i, fr in enumerate(frames)]
        out.append({"name": name, "what": what, "send": steps, "expect": [describe_message(r) for r in got]})
    return out


README = """# Veil protocol test vectors

Generated by `veil protocol vectors --out testvectors` from the Python reference implementation
(`toolkit/serve/protocol.py`, `toolkit/payload.py`); the specification is `docs/PROTOCOL.md`. Do not edit by
hand: regenerate. `index.json` lists every file with its meaning and expected values.

Conventions: `.bin` files are exact bytes of one message (or of concatenated frames where said);
`.f32` files are raw little-endian IEEE float32, row-major, with their shape in `index.json`. Bit patterns
in `index.json` are hex strings (`*_bits`), exact where JSON numbers might not be.

| folder | what it holds | how a client test uses it |
|---|---|---|
| `chunker/` | `pcm.f32`: a real corpus utterance (16 kHz, float32); `chunks.f32`: the chunker's output, (n, 32000), last chunk zero-padded; valid samples per chunk and valid frames in the index | cut `pcm.f32` with your chunker and compare with `chunks.f32` and the valid counts |
| `payload/` | codec edge cases: `fp16-edges.*`, `int8-rounding.*` (`.in.f32` input, `.bin` message, `.out.f32` decoded), `vq8.*`/`vq16.*` with their committed codebooks (`*-codebook.f32`, (G, K, dg)), `z` inputs, indices in the index, codewords; `errors/` malformed payloads with their `reason` | encode inputs and compare bytes; decode messages and compare floats bit for bit; decoding each error file must fail with the listed reason |
| `frames/` | one frame of each message type (`hello.bin` ... `error.bin`) with its fields; `stream-hello-end.bin` (two frames concatenated); `errors/` malformed frames with their error code and reason | encode the fields and compare bytes; decode the bytes and compare fields; each error frame must be refused with its code |
| `sessions/` | `prefix-N.f32`: the float prefix output of the vectors' model (`index.json` `model`) for chunk N of the snippet, (50, 144); per codec `<codec>/`: a whole real session, `cNN-*.bin` client frames in order (HELLO, CHUNK..., END), `cNN-decoded.f32` what the server decodes from each chunk (fp32: the prefix file itself), `sNN-*.bin` the server's replies (READY, PARTIAL..., FINAL) | encode the prefix outputs into CHUNK frames and compare bytes; parse the server frames |
| `scenarios/<name>/` | client frames `cNN.bin` a server receives in order (a frame identical to a session frame is not repeated: the index names the session file); the index lists the replies it must send, ending with the ERROR code where the scenario is a refusal | a server implementation replays them (the Python server's tests do, over a live WebSocket) |
| `lifecycle.json` | the phone apps' streaming-session lifecycle (`toolkit/serve/lifecycle.py`): every transition of every reachable (state, microphone held, socket held) with the shortest event path to it, the resources it acquires and releases in order; named failure paths with the states after each event | replay each path into your lifecycle, apply the event, compare the state and the releases; nothing may be held in a terminal state |
"""


def write_vectors(out: str | Path, checkpoint: str | Path, audio: str | Path | None = None,
                  embeddings_from: str | Path | None = None) -> dict:
    """Write the whole folder atomically (temporary folder, then rename); returns the index.
    ``embeddings_from``: take the prefix outputs from that vectors folder instead of computing them. The float
    prefix's last bits differ between CPUs (exports are byte-identical on one machine, not across machines), and
    everything the protocol vectors pin down (frames, payload bytes, replies) is a function of those outputs."""
    out = Path(out)
    pcm, source = read_snippet(Path(audio) if audio else None, out)
    torch.set_num_threads(1)  # the same float sums on every run
    model, config = load_checkpoint(checkpoint)
    k = model.cfg.split_layer
    prefix, _ = split(model, k)
    served = ServedSuffix(model, config, Path(checkpoint), k, file_sha256(checkpoint))
    tmp = temp_dir_beside(out)
    try:
        w = VectorWriter(tmp)
        index = {"format": FORMAT, "protocol_version": p.VERSION, "generated_by": "veil protocol vectors",
                 "spec": "docs/PROTOCOL.md",
                 "model": {"checkpoint": Path(checkpoint).name, **served.describe()},
                 "test_token": TEST_TOKEN, "session_id": SESSION_ID.hex(),
                 "limits": {"max_message_bytes": SessionLimits().max_message_bytes,
                            "max_utterance_seconds": SessionLimits().max_utterance_seconds,
                            "partial_window_seconds": SessionLimits().partial_window_seconds,
                            "idle_timeout_seconds": SessionLimits().idle_timeout_seconds},
                 "error_codes": [{"code": e.code, "name": e.name, "http": e.http, "meaning": e.meaning}
                                 for e in p.ERRORS.values()]}
        index["chunker"] = chunker_vectors(w, pcm, source, served.chunk)
        index["payload"] = {"fp16": fp16_vectors(w), "int8": int8_vectors(w), "vq": vq_vectors(w),
                            "errors": payload_error_vectors(w)}
        index["frames"] = frame_vectors(w, served.identity.raw_sha256)
        n_chunks = len(chunk_pcm(pcm, served.chunk.chunk_samples))
        embeddings = (read_prefix_outputs(Path(embeddings_from), n_chunks) if embeddings_from
                      else prefix_outputs(prefix, pcm, served.chunk.chunk_samples))
        index["sessions"], messages = session_vectors(w, served, embeddings, pcm)
        index["scenarios"] = scenario_vectors(w, served, messages)
        (tmp / "index.json").write_text(json.dumps(index, indent=1, ensure_ascii=False) + "\n")
        (tmp / "lifecycle.json").write_text(json.dumps(lifecycle.vectors(), indent=1) + "\n")
        (tmp / "README.md").write_text(README)
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return index
