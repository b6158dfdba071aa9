"""`veil serve` on 127.0.0.1, in this process (a real uvicorn server on a real socket, ephemeral port), driven
by real WebSocket/HTTP clients with the real shipped model's suffix and the committed test vectors' frames
(real embeddings of a real corpus utterance): sessions, refusals with their codes, limits, auth, TLS,
batching, shutdown, metrics."""
from __future__ import annotations

import base64
import json
import logging
import re
import socket
import ssl
import subprocess
import threading
import time
import urllib.request
from argparse import Namespace
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from toolkit import payload
from toolkit.errors import VeilError
from toolkit.model.checkpoint import load_checkpoint
from toolkit.serve import protocol as p
from toolkit.serve.admission import AdmissionLimits
from toolkit.serve.app import Service, ServiceConfig
from toolkit.serve.auth import TokenStore, hash_token
from toolkit.serve.batcher import BatchConfig, _Item, length_groups
from toolkit.paths import DEFAULT_MODEL
from toolkit.serve.cli import load_models, make_token_file
from toolkit.serve.client import ServerRefused, StreamClient, transcribe_http
from toolkit.serve.server import Listen, ServerThread, exposed_interfaces, ray_reach
from toolkit.serve.session import SessionLimits
from toolkit.serve.suffix import ServedSuffix

ROOT = Path(__file__).resolve().parent.parent
VECTORS = ROOT / "testvectors"
INDEX = json.loads((VECTORS / "index.json").read_text())
TOKEN = INDEX["test_token"]


@pytest.fixture(scope="module")
def shipped():
    return ServedSuffix.load(ROOT / "models" / "normalized.safetensors")


def make_service(models, tokens=(TOKEN,), session=SessionLimits(), admission=AdmissionLimits(), batch=BatchConfig(),
                 grace=15.0) -> Service:
    store = TokenStore.of_tokens(list(tokens)) if tokens is not None else None
    return Service(models if isinstance(models, list) else [models], store,
                   ServiceConfig(session, admission, batch, grace))


def ws_url(url: str) -> str:
    return url.replace("http", "ws", 1) + "/v1/stream"


def vector_frames(codec: str = "int8") -> list[bytes]:
    session = next(s for s in INDEX["sessions"] if s["codec"] == codec)
    return [(VECTORS / c["frame"]).read_bytes() for c in session["client"]]


def expected_texts(codec: str = "int8") -> list[str]:
    session = next(s for s in INDEX["sessions"] if s["codec"] == codec)
    return [r["fields"].get("text") for r in session["server"]]


def exchange(url: str, frames: list[bytes], headers=None, ssl_context=None) -> tuple[list[p.Message], int | None]:
    """Send the frames one by one (None: send nothing), reading one reply each until the server closes; returns
    the replies and the close code."""
    replies, close = [], None
    with connect(ws_url(url), additional_headers=headers or {}, proxy=None, compression=None,
                 ssl=ssl_context, open_timeout=10) as ws:
        try:
            for f in frames:
                if f is not None:  # None: only wait for the next reply
                    ws.send(f)
                replies.append(p.decode_frame(ws.recv(timeout=10)))
                if isinstance(replies[-1], (p.Error, p.Final)):
                    break
            ws.recv(timeout=10)
        except ConnectionClosed as exc:
            close = exc.rcvd.code if exc.rcvd else 1006
    return replies, close


def metric(url: str, name: str) -> float:
    text = urllib.request.urlopen(url + "/metrics", timeout=5).read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def wait_until(condition, timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


@pytest.fixture(scope="module")
def server(shipped):
    with ServerThread(make_service(shipped)) as url:
        yield url


# ---- sessions ------------------------------------------------------------------------------------------------

def test_a_whole_session_streams_partials_and_the_final_of_the_vectors(server):
    replies, close = exchange(server, vector_frames("int8"))
    assert [type(r).__name__ for r in replies] == ["Ready", "Partial", "Partial", "Partial", "Final"]
    assert [getattr(r, "text", None) for r in replies] == expected_texts("int8")
    assert close == 1000
    assert replies[-1].frames == INDEX["chunker"]["valid_frames"]


def test_every_vector_scenario_gets_its_replies_over_a_live_websocket(server):
    for scenario in INDEX["scenarios"]:
        frames = [(VECTORS / s["frame"]).read_bytes() for s in scenario["send"]]
        replies, close = exchange(server, frames)
        expect = scenario["expect"]
        assert [r.type.name for r in replies] == [e["type"] for e in expect], scenario["name"]
        for r, e in zip(replies, expect):
            if e["type"] == "ERROR":
                assert r.code == e["code"] and close == e["code"], scenario["name"]
            elif e["type"] in ("PARTIAL", "FINAL"):
                assert (r.text, r.flags if e["type"] == "PARTIAL" else 0) == (e["text"], e.get("flags", 0))
        if expect[-1]["type"] == "FINAL":
            assert close == 1000


def test_a_resent_chunk_is_answered_but_not_counted_twice(server):
    frames = vector_frames("int8")
    before = metric(server, 'veil_chunks_total{kind="duplicate"}')
    replies, _ = exchange(server, [frames[0], frames[1], frames[1], frames[1], *frames[2:]])
    assert [r.flags for r in replies[1:4]] == [0, p.PARTIAL_DUPLICATE, p.PARTIAL_DUPLICATE]
    assert replies[-1].text == expected_texts("int8")[-1] and replies[-1].chunks == 3
    assert metric(server, 'veil_chunks_total{kind="duplicate"}') == before + 2


def test_a_gap_and_a_wrong_prefix_are_refused_with_their_codes(server):
    frames = vector_frames("fp16")
    replies, close = exchange(server, [frames[0], frames[1], frames[3]])
    assert (replies[-1].code, close) == (4409, 4409)
    hello = p.decode_frame(frames[0])
    for wrong in (replace(hello, split_layer=3), replace(hello, checkpoint_sha256=bytes(32))):
        replies, close = exchange(server, [p.encode_frame(wrong)])
        assert (replies[-1].code, replies[-1].name, close) == (4404, "unknown_prefix", 4404)


def test_unary_http_gives_the_same_final_and_typed_refusals(server):
    frames = vector_frames("fp32")
    final = transcribe_http(server, frames, None)
    assert final.text == expected_texts("fp32")[-1]
    hello = p.decode_frame(frames[0])
    no_token = [p.encode_frame(replace(hello, token=""))] + frames[1:]
    assert transcribe_http(server, no_token, TOKEN).text == final.text  # header token instead
    for body, token, code in [(no_token, None, 4401), (no_token, "wrong", 4401), (frames[:-1], None, 4405),
                              (frames + frames[-1:], None, 4405), (frames[:2] + frames[3:], None, 4409),
                              ([frames[0][:-3]], None, 4400)]:
        with pytest.raises(ServerRefused) as err:
            transcribe_http(server, body, token)
        assert err.value.code == code


def test_a_message_over_the_limit_is_refused_before_its_body_is_read(shipped):
    with ServerThread(make_service(shipped, session=SessionLimits(max_message_bytes=20000))) as url:
        frames = vector_frames("fp32")  # each fp32 chunk frame is 28,830 bytes
        replies, close = exchange(url, frames)
        assert isinstance(replies[0], p.Ready) and close == 1009
        # HTTP: a Content-Length over the body limit gets 413 at once, with no body sent at all
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=5) as s:
            s.sendall(b"POST /v1/transcribe HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n")
            response = b""
            while b"\r\n\r\n" not in response or len(response.split(b"\r\n\r\n", 1)[1]) < 12 + 2:
                response += s.recv(65536)
        assert response.startswith(b"HTTP/1.1 413")
        assert p.decode_frame(response.split(b"\r\n\r\n", 1)[1]).code == 4413
        assert wait_until(lambda: metric(url, 'veil_errors_total{code="4413"') == 2)


def test_tokens_are_checked_in_the_header_at_the_upgrade_and_in_hello(server):
    frames = vector_frames("int8")
    hello = p.decode_frame(frames[0])
    with pytest.raises(InvalidStatus) as err:
        exchange(server, frames, headers={"Authorization": "Bearer wrong"})
    assert err.value.response.status_code == 401 and p.decode_frame(err.value.response.body).code == 4401
    replies, close = exchange(server, [p.encode_frame(replace(hello, token=""))])
    assert (replies[-1].code, close) == (4401, 4401)
    replies, close = exchange(server, [p.encode_frame(replace(hello, token=""))] + frames[1:],
                              headers={"Authorization": f"Bearer {TOKEN}"})
    assert replies[-1].text == expected_texts("int8")[-1] and close == 1000


def test_a_client_that_disconnects_mid_utterance_frees_its_session(server):
    frames = vector_frames("int8")
    assert wait_until(lambda: metric(server, "veil_sessions_active") == 0)
    sock = socket.create_connection(server.removeprefix("http://").split(":"), timeout=5)
    ws = connect(ws_url(server), sock=sock, proxy=None, compression=None, legacy=True)
    ws.send(frames[0])
    ws.recv(timeout=5)
    ws.send(frames[1])
    ws.recv(timeout=5)
    assert metric(server, "veil_sessions_active") == 1
    sock.shutdown(socket.SHUT_RDWR)  # the phone loses its network: no close frame
    sock.close()
    assert wait_until(lambda: metric(server, "veil_sessions_active") == 0)
    assert metric(server, 'veil_sessions_total{outcome="disconnected",transport="ws"}') >= 1


def test_an_idle_client_times_out_with_4408(shipped):
    with ServerThread(make_service(shipped, session=SessionLimits(idle_timeout_seconds=0.3))) as url:
        t0 = time.monotonic()
        replies, close = exchange(url, vector_frames()[:1] + [None])  # READY, then silence
        assert isinstance(replies[0], p.Ready) and (replies[-1].code, close) == (4408, 4408)
        assert 0.3 <= time.monotonic() - t0 < 3.0


def test_session_limits_global_and_per_token_and_the_rate_limit(shipped):
    frames = vector_frames("int8")
    auth = {"Authorization": f"Bearer {TOKEN}"}
    other = {"Authorization": "Bearer another-token"}
    limits = AdmissionLimits(max_sessions=2, max_sessions_per_token=1, rate_per_token=0, max_preauth=1)
    with ServerThread(make_service(shipped, tokens=(TOKEN, "another-token"), admission=limits)) as url:
        with connect(ws_url(url), additional_headers=auth, proxy=None, compression=None) as first:
            first.send(frames[0])
            assert isinstance(p.decode_frame(first.recv(timeout=5)), p.Ready)
            with pytest.raises(InvalidStatus) as err:  # same token, header: refused at the upgrade
                connect(ws_url(url), additional_headers=auth, proxy=None, compression=None)
            assert err.value.response.status_code == 429
            replies, close = exchange(url, frames[:1])  # same token in HELLO
            assert (replies[-1].code, close) == (4430, 4430)
            with connect(ws_url(url), proxy=None, compression=None):  # no token yet: the pre-auth pool's one place
                with pytest.raises(InvalidStatus) as err:
                    connect(ws_url(url), proxy=None, compression=None)
                assert err.value.response.status_code == 503
                assert p.decode_frame(err.value.response.body).name == "server_busy"
                with connect(ws_url(url), additional_headers=other, proxy=None, compression=None):  # session 2 of 2
                    with pytest.raises(InvalidStatus) as err:
                        connect(ws_url(url), additional_headers=auth, proxy=None, compression=None)
                    assert err.value.response.status_code == 503  # the server is full before any token counts
    with ServerThread(make_service(shipped, admission=AdmissionLimits(rate_per_token=1.0, burst_per_token=3))) as url:
        replies, close = exchange(url, frames[:1] + [frames[1]] * 3)  # HELLO counts once it named its token
        assert [r.type.name for r in replies] == ["READY", "PARTIAL", "PARTIAL", "ERROR"]
        assert (replies[-1].code, close) == (4429, 4429)


def test_concurrent_sessions_are_batched_into_one_suffix_call(shipped):
    frames = vector_frames("int8")
    config = BatchConfig(max_batch=16, max_wait_ms=100.0)
    with ServerThread(make_service(shipped, batch=config)) as url:
        barrier = threading.Barrier(6)
        results = [None] * 6

        def session(i):
            with connect(ws_url(url), proxy=None, compression=None) as ws:
                ws.send(frames[0])
                ws.recv(timeout=10)
                barrier.wait()
                texts = []
                for f in frames[1:]:
                    ws.send(f)
                    texts.append(p.decode_frame(ws.recv(timeout=10)).text)
                results[i] = texts

        threads = [threading.Thread(target=session, args=(i,)) for i in range(6)]
        [t.start() for t in threads]
        [t.join(30) for t in threads]
        assert all(r == expected_texts("int8")[1:] for r in results)  # batched text = the unbatched vectors
        sizes = metric(url, "veil_batch_size_sum") / metric(url, "veil_batch_size_count")
        assert sizes > 1.5  # 24 requests in far fewer calls


def test_a_vq_session_decodes_indices_with_the_served_models_codebook(shipped):
    """The hook for bottleneck models: a served suffix with a codebook accepts vq sessions (here a codebook of
    real embedding frames, G=1, K=150); the server's text is the local pipeline's on the codewords. It refuses
    continuous codecs: those would carry what the codebook withholds."""
    frames = vector_frames("fp32")
    chunks = [p.decode_frame(f) for f in frames[1:-1]]
    emb = [payload.decode(c.payload) for c in chunks]
    codebook = np.concatenate(emb)[None]  # (1, 150, 144)
    model, config = load_checkpoint(ROOT / "models" / "normalized.safetensors")
    vq_served = ServedSuffix(model, config, shipped.checkpoint, 4, shipped.identity.checkpoint_sha256, codebook)
    assert vq_served.codecs == ["vq"]
    hello = replace(p.decode_frame(frames[0]), codec="vq")
    rng = np.random.default_rng(0)
    sent = [p.encode_frame(hello)]
    for c, e in zip(chunks, emb):
        z = e + rng.normal(0, 1e-4, e.shape).astype(np.float32)  # near, not on, the codewords
        sent.append(p.encode_frame(replace(c, payload=payload.encode_vq(z, codebook))))
    sent.append(frames[-1])
    with ServerThread(make_service(vq_served)) as url:
        replies, close = exchange(url, sent)
        refused, _ = exchange(url, frames[:2])  # the same session in fp32
    assert isinstance(refused[0], p.Error) and refused[0].name == "unsupported_codec", refused
    assert "codecs: vq" in refused[0].message
    valid = INDEX["chunker"]["valid_frames"]
    local = vq_served.text(vq_served.labels([np.concatenate(emb)[:valid]])[0])
    assert close == 1000 and replies[-1].text == local == expected_texts("fp32")[-1]
    assert sum(len(f) for f in sent[1:-1]) < sum(len(f) for f in frames[1:-1]) / 30


def test_graceful_shutdown_ends_open_sessions_with_4502_and_refuses_new_ones(shipped):
    frames = vector_frames("int8")
    thread = ServerThread(make_service(shipped, grace=0.3))
    url = thread.__enter__()
    ws = connect(ws_url(url), proxy=None, compression=None, legacy=True)
    ws.send(frames[0])
    ws.recv(timeout=5)
    t0 = time.monotonic()
    stopper = threading.Thread(target=thread.stop)
    stopper.start()
    reply = p.decode_frame(ws.recv(timeout=10))
    with pytest.raises(ConnectionClosed) as err:
        ws.recv(timeout=10)
    stopper.join(30)
    assert (reply.code, err.value.rcvd.code) == (4502, 4502)
    assert 0.25 < time.monotonic() - t0 < 10
    with pytest.raises(OSError):
        socket.create_connection(url.removeprefix("http://").split(":"), timeout=2)


def test_health_readiness_models_and_metrics(server, shipped):
    get = lambda path: json.loads(urllib.request.urlopen(server + path, timeout=5).read())
    assert get("/healthz") == {"status": "ok"}
    assert get("/readyz")["ready"] is True
    models = get("/v1/models")
    assert models["protocol_version"] == 1
    assert models["models"][0]["checkpoint_sha256"] == INDEX["model"]["checkpoint_sha256"]
    assert models["models"][0]["split_layer"] == 4 and models["models"][0]["codecs"] == ["fp32", "fp16", "int8"]
    text = urllib.request.urlopen(server + "/metrics", timeout=5).read().decode()
    for name in ("veil_sessions_active", "veil_chunks_total", "veil_batch_size_bucket", "veil_suffix_seconds_bucket",
                 "veil_chunk_latency_seconds_bucket", "veil_final_latency_seconds_bucket", "veil_errors_total"):
        assert name in text


def test_a_full_session_over_tls_with_a_self_signed_certificate(shipped, tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    listen = Listen("127.0.0.1", 0, str(cert), str(key))
    with ServerThread(make_service(shipped), listen) as url:
        assert url.startswith("https://")
        frames = vector_frames("int8")
        with pytest.raises(ssl.SSLError):  # an untrusted certificate is not silently accepted
            exchange(url, frames[:1], ssl_context=ssl.create_default_context())
        replies, close = exchange(url, frames,
                                  ssl_context=ssl.create_default_context(cafile=str(cert)))
        assert replies[-1].text == expected_texts("int8")[-1] and close == 1000
        assert transcribe_http(url, frames, None, ca_file=str(cert)).text == expected_texts("int8")[-1]


def test_service_logs_carry_no_transcript_or_embedding_bytes(server, caplog):
    frames = vector_frames("fp32")
    with caplog.at_level(logging.DEBUG, logger="veil"):
        replies, _ = exchange(server, frames)
        transcribe_http(server, frames, None)
    logs = "\n".join(r.getMessage() for r in caplog.records)
    assert "final chunks=3" in logs and "closed outcome=final" in logs
    assert_no_content(logs, replies[-1].text, [p.decode_frame(f).payload for f in frames[1:-1]])


def assert_no_content(logs: str, text: str, payloads: list[bytes]) -> None:
    """No word of the transcript (4+ letters) and no 8-byte run of any payload, raw, hex or base64."""
    for word in {w for w in re.findall(r"[a-z']{4,}", text)}:
        assert not re.search(rf"\b{re.escape(word)}\b", logs), word
    for data in payloads:
        body = data[10:]
        for i in range(0, len(body) - 8, 997):
            run = body[i:i + 8]
            assert run.hex() not in logs and base64.b64encode(run).decode()[:8] not in logs
            assert run.decode("latin-1") not in logs


def test_token_files_hold_only_hashes_and_plain_tokens_are_refused(tmp_path, capsys):
    path = tmp_path / "tokens.txt"
    make_token_file(str(path))
    token = capsys.readouterr().out.strip()
    text = path.read_text()
    assert len(token) >= 40 and token not in text and text.startswith("sha256:")
    assert path.stat().st_mode & 0o777 == 0o600
    store = TokenStore.load(path, None)
    assert store.identify(token) == hash_token(token)[len("sha256:"):][:8] and store.identify(token + "x") is None
    both = TokenStore.load(path, f"sha256:{'a' * 64}, {hash_token('other')}")
    assert len(both) == 3 and both.identify("other") and not both.identify("a" * 64)
    with pytest.raises(VeilError, match="not a token hash"):
        TokenStore.load(None, "plaintext-token")


def test_batches_are_cut_by_length_so_padding_stays_small():
    items = [_Item(np.zeros((t, 4), np.float32), None) for t in (400, 50, 100, 50, 113, 100, 1500)]
    calls = length_groups(items, max_frames=2000)
    assert [[len(i.embeddings) for i in c] for c in calls] == [[50, 50], [100, 100, 113], [400], [1500]]
    assert [len(c) for c in length_groups(items[:2] * 20, max_frames=2000)] == [20, 5, 5, 5, 5]


def test_ray_engine_refuses_loopback_with_other_interfaces_in_reach():
    """Ray binds its cluster ports beyond --host: on loopback that is refused unless `lo` is all there is; on a
    network address the interfaces in reach are named."""
    assert exposed_interfaces(["lo", "eth0", "docker0"]) == ["docker0", "eth0"]
    assert exposed_interfaces(["lo"]) == []
    assert exposed_interfaces() == sorted(n for _, n in socket.if_nameindex() if n != "lo")
    assert ray_reach("127.0.0.1", ["lo"]) == []
    for host in ("127.0.0.1", "localhost", "::1"):
        with pytest.raises(VeilError, match="docker0, eth0.*network namespace whose only interface is lo"):
            ray_reach(host, ["lo", "eth0", "docker0"])
    assert ray_reach("10.0.0.5", ["lo", "eth0"]) == ["eth0"]


def test_veil_serve_with_no_model_flag_serves_the_default_model():
    """No --checkpoint and no --export: the default model, whose phone adds N(0, S^2) to a 16-dim payload after
    block 6."""
    (served,) = load_models(Namespace(checkpoint=[], export=[]))
    assert served.checkpoint == DEFAULT_MODEL and served.identity.split_layer == 6
    assert served.dim == 16 and served.codebook is None
