"""The streaming protocol's frames and the committed cross-language test vectors: the Python reference must
agree with every vector byte for byte, and regenerating the vectors must reproduce the committed folder."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from export import snr_db
from toolkit import payload
from toolkit.chunking import chunk_pcm
from toolkit.serve import protocol as p
from toolkit.serve.protocol import ProtocolError
from toolkit.serve.session import run_direct
from toolkit.serve.suffix import ServedSuffix
from toolkit.model.asr import split
from toolkit.model.checkpoint import load_checkpoint
from toolkit.serve.vectors import conversation, prefix_outputs, read_prefix_outputs, write_vectors

VECTORS = Path(__file__).resolve().parent.parent / "testvectors"
INDEX = json.loads((VECTORS / "index.json").read_text())


@pytest.fixture(scope="module")
def shipped_suffix():
    return ServedSuffix.load(Path(__file__).resolve().parent.parent / "models" / "normalized.safetensors")


def f32(entry: dict) -> np.ndarray:
    return np.fromfile(VECTORS / entry["file"], dtype="<f4").reshape(entry["shape"])


def raw(rel: str) -> bytes:
    return (VECTORS / rel).read_bytes()


def bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype="<f4").view("<u4")


# ---- frames --------------------------------------------------------------------------------------------------

def test_every_message_type_round_trips():
    sha = bytes(range(32))
    for m in [p.Hello(sha, 4, "vq", 16000, 32000, 640, 144, "tök"), p.Chunk(3, 7726, b"VPL1" + bytes(6)),
              p.End(0), p.Ready(bytes(16), 1, 2, 3, 4), p.Partial(1, 2, 3, 3, ""), p.Final(9, 8, "a b"),
              p.Error(4409, "gap")]:
        frame = p.encode_frame(m)
        assert frame[:4] == b"VSTR" and frame[4] == 1 and frame[5] == m.type
        assert int.from_bytes(frame[8:12], "little") == len(frame) - 12
        assert p.decode_frame(frame) == m


def test_concatenated_frames_split_and_a_cut_one_is_refused():
    frames = [p.encode_frame(p.End(i)) for i in range(3)]
    assert p.split_frames(b"".join(frames)) == frames
    with pytest.raises(ProtocolError) as err:
        p.split_frames(b"".join(frames)[:-1])
    assert (err.value.code, err.value.reason) == (4400, "truncated")


def test_error_codes_are_unique_and_in_the_websocket_application_range():
    codes = [e.code for e in p.ERRORS.values()]
    assert len(set(codes)) == len(codes) and all(4000 <= c <= 4999 for c in codes)
    assert {e["code"] for e in INDEX["error_codes"]} == set(codes)
    assert len(p.one_line("x" * 500 + "é" * 100).encode()) <= 120


# ---- the committed vectors against the reference -------------------------------------------------------------

def test_vector_frames_encode_to_their_bytes_and_decode_to_their_fields():
    for case in INDEX["frames"]["cases"]:
        m = p.decode_frame(raw(case["frame"]))
        fields = case["fields"]
        assert m.type.name == fields["type"]
        for k, v in fields.items():
            if k in ("type", "name", "payload_bytes"):
                continue
            got = getattr(m, k)
            assert (got.hex() if isinstance(got, bytes) else got) == v, (case["name"], k)
        assert p.encode_frame(m) == raw(case["frame"])
    assert p.split_frames(raw(INDEX["frames"]["concatenated"]["frames"])) == [raw("frames/hello.bin"),
                                                                             raw("frames/end.bin")]


def test_vector_malformed_frames_are_refused_with_their_codes():
    assert len(INDEX["frames"]["errors"]) >= 15
    for case in INDEX["frames"]["errors"]:
        with pytest.raises(ProtocolError) as err:
            p.decode_frame(raw(case["frame"]))
        assert (err.value.code, err.value.error.name, err.value.reason) == (case["code"], case["error"],
                                                                            case["reason"]), case["name"]


def test_vector_payloads_are_bit_exact():
    fp16 = INDEX["payload"]["fp16"]
    x = f32(fp16["input"])
    assert payload.encode(x, "fp16") == raw(fp16["message"])
    assert np.array_equal(bits(payload.decode(raw(fp16["message"]))), bits(f32(fp16["decoded"])))
    got = [v["decoded_f32_bits"] for v in fp16["values"]]
    assert got[1] == "80000000" and "477fe000" in got  # -0 keeps its sign; 65504 is there
    for e in fp16["encode_errors"]:
        values = np.array([int(b, 16) for b in e["input_f32_bits"]], "<u4").view("<f4").reshape(1, -1)
        with pytest.raises(payload.PayloadError) as err:
            payload.encode(values, "fp16")
        assert err.value.reason == e["reason"]
    i8 = INDEX["payload"]["int8"]
    assert payload.encode(f32(i8["input"]), "int8") == raw(i8["message"])
    assert np.array_equal(bits(payload.decode(raw(i8["message"]))), bits(f32(i8["decoded"])))
    assert i8["q"][0] == [127, 0, 2, 2, 0, -2, -2, 126] and i8["q"][1][1:4] == [0, 2, 2]  # half to even
    for case in INDEX["payload"]["vq"]["cases"]:
        cb, z = f32(case["codebook"]), f32(case["z"])
        assert payload.vq_indices(z, cb).tolist() == case["indices"]
        assert payload.encode_vq(z, cb) == raw(case["message"])
        assert payload.decode_vq(raw(case["message"])).tolist() == case["indices"]
        assert np.array_equal(bits(payload.decode(raw(case["message"]), cb)), bits(f32(case["codewords"])))
    errors = INDEX["payload"]["errors"]
    for case in errors["cases"]:
        with pytest.raises(payload.PayloadError) as err:
            payload.decode(raw(case["message"]), f32(errors["codebook"]))
        assert err.value.reason == case["reason"], case["name"]


def test_vector_chunker_cuts_the_real_snippet_into_padded_two_second_chunks():
    c = INDEX["chunker"]
    pcm = f32(c["pcm"])
    chunks = chunk_pcm(pcm, c["chunk_samples"])
    assert np.array_equal(np.concatenate(chunks), f32(c["chunks"]))
    assert c["valid_samples"][:-1] == [c["chunk_samples"]] * (len(chunks) - 1)
    assert sum(c["valid_samples"]) == len(pcm) == c["samples"] and c["valid_samples"][-1] < c["chunk_samples"]
    assert c["valid_frames"] == -(-len(pcm) // c["frame_samples"])
    assert "corpus utterance" in c["source"]


def test_vector_sessions_encode_the_prefix_outputs_and_decode_to_the_recorded_embeddings():
    for session in INDEX["sessions"]:
        chunks = [c for c in session["client"] if c["fields"]["type"] == "CHUNK"]
        assert len(chunks) == INDEX["chunker"]["chunk_count"]
        for c in chunks:
            m = p.decode_frame(raw(c["frame"]))
            assert payload.encode(f32(c["prefix_output"]), session["codec"]) == m.payload
            assert np.array_equal(bits(payload.decode(m.payload)), bits(f32(c["decoded"])))
        final = session["server"][-1]["fields"]
        assert final["type"] == "FINAL" and len(final["text"].split()) >= 5
        assert final["frames"] == INDEX["chunker"]["valid_frames"]


def test_vector_scenarios_replay_on_the_reference_state_machine(shipped_suffix):
    for scenario in INDEX["scenarios"]:
        frames = [raw(s["frame"]) for s in scenario["send"]]
        replies = run_direct(conversation(shipped_suffix), frames)
        got = [p.decode_frame(p.encode_frame(r)) for r in replies]
        expect = scenario["expect"]
        assert [r.type.name for r in got] == [e["type"] for e in expect], scenario["name"]
        for r, e in zip(got, expect):
            if e["type"] == "ERROR":
                assert r.code == e["code"], scenario["name"]
            elif e["type"] in ("PARTIAL", "FINAL"):
                assert (r.text, r.frames) == (e["text"], e["frames"]), scenario["name"]


def test_the_vectors_prefix_outputs_are_the_float_prefix_of_their_model():
    """On the machine that wrote them, bit for bit; on another CPU, within float rounding (SNR >= 60 dB): the
    committed outputs, not this machine's last bits, are what the protocol vectors are made from."""
    model, _ = load_checkpoint(VECTORS.parent / "models" / "normalized.safetensors")
    pcm = np.fromfile(VECTORS / "chunker" / "pcm.f32", dtype="<f4")
    torch.set_num_threads(1)
    fresh = prefix_outputs(split(model)[0].eval(), pcm, model.cfg.chunk_samples)
    committed = read_prefix_outputs(VECTORS, len(fresh))
    for a, b in zip(fresh, committed):
        assert snr_db(b, a) >= 60.0


def test_regenerating_the_vectors_reproduces_the_committed_folder(tmp_path):
    out = tmp_path / "tv"
    write_vectors(out, VECTORS.parent / "models" / "normalized.safetensors", VECTORS / "chunker" / "pcm.f32",
                  embeddings_from=VECTORS)
    committed = sorted(f.relative_to(VECTORS) for f in VECTORS.rglob("*") if f.is_file())
    fresh = sorted(f.relative_to(out) for f in out.rglob("*") if f.is_file())
    assert fresh == committed
    differ = [str(f) for f in committed if f.name != "index.json" and (out / f).read_bytes() != (VECTORS / f).read_bytes()]
    assert not differ, f"regenerate with `veil protocol vectors`: {differ}"
    old, new = INDEX, json.loads((out / "index.json").read_text())
    new["chunker"]["source"] = old["chunker"]["source"]
    assert new == old
