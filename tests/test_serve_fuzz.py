"""Fuzzing the protocol with hypothesis (derandomized: the same examples every run).

- 10,000 random and mutated frames against the frame decoder: every input decodes (and re-encodes to the same
  bytes) or is refused with a typed ProtocolError; nothing else is ever raised.
- Random message sequences against the server's state machine: only typed errors.
- 10,000+ messages over 2,650 live WebSocket sessions (valid chunks, resends and END, with malformed or random
  messages mixed in), while a bystander keeps streaming valid sessions: the server never crashes (no 4500, 1011 or dropped connection), every refusal is a
  typed ERROR whose code is also the close code (or 1009 for an oversized message), the bystander's
  transcripts never change, and the session count returns to 0.
"""
from __future__ import annotations

import threading
import time
import urllib.request

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.conftest import small_config
from toolkit import payload
from toolkit.model.asr import VeilModel
from toolkit.model.checkpoint import save_checkpoint
from toolkit.serve import protocol as p
from toolkit.serve.admission import Admission, AdmissionLimits
from toolkit.serve.app import Service, ServiceConfig
from toolkit.serve.auth import TokenStore
from toolkit.serve.batcher import BatchConfig
from toolkit.serve.protocol import ProtocolError
from toolkit.serve.server import ServerThread
from toolkit.serve.session import Conversation, SessionLimits, run_direct
from toolkit.serve.suffix import ServedSuffix
from toolkit.text.tokenizer import CharTokenizer

TOKEN = "fuzz-token"
MAX_MESSAGE = 8192
FUZZ = settings(derandomize=True, database=None, deadline=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A real 2-block model (d=64, 1-s chunks, split after block 1): a cheap suffix for thousands of sessions."""
    torch.manual_seed(0)
    model = VeilModel(small_config()).eval()
    path = save_checkpoint(tmp_path_factory.mktemp("tiny") / "tiny.safetensors", model, CharTokenizer(),
                           ["s0", "s1", "s2", "s3"], {"made_by": "tests/test_serve_fuzz.py"})
    return ServedSuffix.load(path)


def session_frames(served: ServedSuffix, codec: str, chunks: int = 3, seed: int = 0) -> list[bytes]:
    g = served.chunk
    rng = np.random.default_rng(seed)
    hello = p.Hello(served.identity.raw_sha256, served.identity.split_layer, codec, g.sample_rate, g.chunk_samples,
                    g.frame_samples, served.dim, TOKEN)
    frames = [p.encode_frame(hello)]
    for seq in range(chunks):
        emb = rng.standard_normal((g.chunk_frames, served.dim)).astype(np.float32)
        valid = g.chunk_samples if seq < chunks - 1 else g.chunk_samples // 3
        frames.append(p.encode_frame(p.Chunk(seq, valid, payload.encode(emb, codec))))
    return frames + [p.encode_frame(p.End(chunks))]


@st.composite
def mutated(draw, pool: list[bytes]) -> bytes:
    """A valid frame with bytes flipped, cut, extended, header fields overwritten, or spliced with another."""
    base = bytearray(draw(st.sampled_from(pool)))
    kind = draw(st.sampled_from(["flip", "truncate", "extend", "header", "payload_header", "splice"]))
    if kind == "flip":
        for _ in range(draw(st.integers(1, 6))):
            base[draw(st.integers(0, len(base) - 1))] = draw(st.integers(0, 255))
    elif kind == "truncate":
        base = base[: draw(st.integers(0, len(base) - 1))]
    elif kind == "extend":
        base += draw(st.binary(min_size=1, max_size=40))
    elif kind in ("header", "payload_header"):
        lo = 0 if kind == "header" or len(base) <= 20 else 20
        at = draw(st.integers(lo, min(lo + 11, len(base) - 1)))
        patch = draw(st.binary(min_size=1, max_size=4))
        base[at:at + len(patch)] = patch
    else:
        other = draw(st.sampled_from(pool))
        k = draw(st.integers(0, min(len(base), len(other))))
        base = base[:k] + bytearray(other[k:])
    return bytes(base)


# ---- the frame decoder ----------------------------------------------------------------------------------------

def check_decoder(data: bytes) -> None:
    try:
        message = p.decode_frame(data)
    except ProtocolError as exc:
        assert exc.code in p.ERRORS_BY_CODE and exc.reason
        return
    assert p.encode_frame(message) == data  # a frame that decodes is canonical: it re-encodes to itself


@settings(FUZZ, max_examples=5000)
@given(data=st.binary(max_size=300))
def test_random_bytes_decode_or_raise_a_typed_error(data):
    check_decoder(data)
    if len(data) >= 8:
        check_decoder(p.FRAME_HEADER.pack(p.MAGIC, 1, data[0] % 0x20, 0, len(data) - 1) + data[1:])
    try:
        p.split_frames(data)
    except ProtocolError as exc:
        assert exc.code in p.ERRORS_BY_CODE


def frame_pool() -> list[bytes]:
    sha = bytes(range(32))
    pool = [p.encode_frame(m) for m in [
        p.Hello(sha, 4, "int8", 16000, 32000, 640, 144, "token"), p.Hello(sha, 1, "vq", 16000, 16000, 640, 64, ""),
        p.Chunk(0, 32000, payload.encode(np.ones((2, 3), np.float32), "int8")), p.End(2),
        p.Ready(bytes(16), 1, 2, 3, 4), p.Partial(0, 1, 50, 2, "partial"), p.Final(1, 2, "final"),
        p.Error(4409, "gap")]]
    return pool + [p.encode_frame(p.Chunk(1, 7, payload.encode_indices(np.array([[1, 2]]), 300)))]


@settings(FUZZ, max_examples=5000)
@given(data=mutated(frame_pool()))
def test_mutated_frames_decode_or_raise_a_typed_error(data):
    check_decoder(data)


# ---- the state machine --------------------------------------------------------------------------------------------

def conversation_for(served: ServedSuffix, window: float = 16.0) -> Conversation:
    gate = Admission(TokenStore.of_tokens([TOKEN]), AdmissionLimits(rate_per_token=0)).connect(None)
    limits = SessionLimits(max_utterance_seconds=20.0, partial_window_seconds=window)
    return Conversation({served.identity: served}, limits, lambda: bytes(16), gate)


def test_random_message_sequences_get_replies_or_typed_errors(tiny):
    pool = session_frames(tiny, "int8") + session_frames(tiny, "fp16", seed=1)

    @settings(FUZZ, max_examples=600)
    @given(frames=st.lists(st.one_of(st.sampled_from(pool), mutated(pool)), min_size=1, max_size=8))
    def check(frames):
        replies = run_direct(conversation_for(tiny), frames)
        assert len(replies) <= len(frames)
        for r in replies[:-1]:
            assert isinstance(r, (p.Ready, p.Partial))
        if isinstance(replies[-1], p.Error):
            assert replies[-1].code in p.ERRORS_BY_CODE and replies[-1].code != 4500

    check()


# ---- the live server ------------------------------------------------------------------------------------------------

@st.composite
def live_session(draw, valid: list[bytes], fuzz) -> list[tuple[str, bytes]]:
    """A session as a phone with bugs would send it: usually a valid HELLO, then valid next chunks, resends and
    END, with malformed or random messages (``fuzz``) mixed in. Items are (kind, message)."""
    hello, chunks, n = valid[0], valid[1:-1], len(valid) - 2
    out = [("valid", hello)] if draw(st.integers(0, 9)) else [("fuzz", draw(mutated([hello])))]
    seq = 0
    for _ in range(draw(st.integers(5, 12))):
        kind = draw(st.sampled_from(["next", "next", "next", "resend", "resend", "fuzz"]))
        if kind == "next" and seq < n:
            out.append(("valid", chunks[seq]))
            seq += 1
        elif kind == "resend" and seq:
            out.append(("valid", chunks[draw(st.integers(0, seq - 1))]))
        elif kind == "fuzz":
            out.append(("fuzz", draw(fuzz)))
        else:
            out.append(("valid", p.encode_frame(p.End(seq))))
    return out


def test_live_websocket_fuzz_never_crashes_the_server_and_other_sessions_keep_working(tiny, one_torch_thread):
    valid = session_frames(tiny, "int8", chunks=8)
    pool = valid + session_frames(tiny, "fp32", seed=2)[1:2] + session_frames(tiny, "fp16", seed=3)[1:3]
    expected = run_direct(conversation_for(tiny, window=1.0), valid)[-1].text
    limits = SessionLimits(max_message_bytes=MAX_MESSAGE, max_utterance_seconds=20.0, partial_window_seconds=1.0,
                           idle_timeout_seconds=10.0)  # 1-s partial window: every partial is one 25-frame call
    service = Service([tiny], TokenStore.of_tokens([TOKEN]),  # no batch wait: one client in lockstep
                      ServiceConfig(limits, AdmissionLimits(max_sessions=64, rate_per_token=0), BatchConfig(max_wait_ms=0)))
    sent = {"messages": 0, "fuzz": 0, "sessions": 0, "closes": {}}
    stop = threading.Event()
    bystander = {"sessions": 0, "wrong": []}
    fuzz = st.one_of(
        st.sampled_from(pool),                          # valid frames, out of order or resent
        mutated(pool),                                  # malformed frames
        st.binary(max_size=64),                         # random bytes
        st.text(max_size=20),                           # text messages
        st.just(b"\0" * (MAX_MESSAGE + 1)))             # one byte over the limit

    with ServerThread(service) as url:
        ws_url = url.replace("http", "ws", 1) + "/v1/stream"

        def bystand():
            while not stop.is_set():
                with connect(ws_url, proxy=None, compression=None) as ws:
                    for f in valid:
                        ws.send(f)
                        reply = p.decode_frame(ws.recv(timeout=30))
                    if not isinstance(reply, p.Final) or reply.text != expected:
                        bystander["wrong"].append(reply)
                bystander["sessions"] += 1
                stop.wait(0.5)

        thread = threading.Thread(target=bystand, daemon=True)
        thread.start()

        @settings(FUZZ, max_examples=2650)
        @given(messages=live_session(valid, fuzz))
        def session(messages):
            replies, close = [], None
            with connect(ws_url, proxy=None, compression=None, max_size=2 ** 20) as ws:
                try:  # in lockstep: every message gets one reply, or the close (pipelining would race the
                    for kind, m in messages:  # transport's 1009 against the app's ERROR for an earlier message)
                        ws.send(m)
                        sent["messages"] += 1
                        sent["fuzz"] += kind == "fuzz"
                        replies.append(p.decode_frame(ws.recv(timeout=30)))
                    ws.recv(timeout=0.05 if not isinstance(replies[-1], p.Final) else 30)
                except ConnectionClosed as exc:
                    close = exc.rcvd.code if exc.rcvd else None
                except TimeoutError:
                    close = "open"  # the session is still open after the last message: no refusal was due
            sent["sessions"] += 1
            sent["closes"][close] = sent["closes"].get(close, 0) + 1
            assert close is not None, "the server dropped the connection without a close frame"
            errors = [r for r in replies if isinstance(r, p.Error)]
            assert len(errors) <= 1 and all(not isinstance(r, p.Error) for r in replies[:-1])
            if errors:
                assert errors[0].code in p.ERRORS_BY_CODE and errors[0].code != 4500
                assert close == errors[0].code
            elif close != "open":
                assert close in (1000, 1009) and (close == 1009 or isinstance(replies[-1], p.Final))

        started = time.monotonic()
        session()
        stop.set()
        thread.join(60)
        elapsed = time.monotonic() - started
        health = urllib.request.urlopen(url + "/healthz", timeout=5).read()
        assert health == b'{"status":"ok"}'
        assert wait_for(lambda: service.admission.open_sessions == 0)

    assert sent["messages"] >= 10_000 and sent["fuzz"] >= 1_000, sent
    assert bystander["sessions"] >= 5 and not bystander["wrong"], bystander
    codes = {c for c in sent["closes"] if isinstance(c, int) and c >= 4000}
    assert len(codes) >= 6 and 1009 in sent["closes"] and 1000 in sent["closes"], sent["closes"]
    print(f"live fuzz: {sent['messages']} messages ({sent['fuzz']} malformed or random) in {sent['sessions']} "
          f"sessions, {elapsed:.1f} s; closes {dict(sorted(sent['closes'].items(), key=str))}; bystander "
          f"{bystander['sessions']} sessions")


def wait_for(condition, timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while not condition() and time.monotonic() < end:
        time.sleep(0.02)
    return condition()
