"""`veil serve` below the protocol, tried as an outside client would on 127.0.0.1: raw sockets that never finish
their request head, oversized heads and upgrades, stalled and token-less uploads, WebSockets that never send
HELLO, a flood of unauthenticated connections beside a client with a token, and clients that hang up. The
server runs with short deadlines (flags of `veil serve`) so every deadline is tried in well under a second.
Nothing here asserts speed: each wait is bounded by its deadline plus a margin."""
from __future__ import annotations

import logging
import socket
import struct
import time
import urllib.request

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from toolkit.serve import protocol as p
from toolkit.serve.admission import AdmissionLimits
from toolkit.serve.app import Service, ServiceConfig
from toolkit.serve.auth import TokenStore
from toolkit.serve.connection import LINGER_SECONDS, ConnectionLimits
from toolkit.serve.server import ServerThread
from tests.test_serve import TOKEN, expected_texts, metric, shipped, vector_frames, wait_until, ws_url  # noqa: F401

DEADLINE = 0.6       # head, body and HELLO deadlines of the servers below, seconds
MARGIN = 1.0         # the goal: closed within the deadline + 1 s
LIMITS = ConnectionLimits(head_timeout_seconds=DEADLINE, body_timeout_seconds=DEADLINE, min_body_rate=20000.0,
                          hello_timeout_seconds=DEADLINE)
AUTH = f"Authorization: Bearer {TOKEN}\r\n"
UPGRADE = ("GET /v1/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n")


def make(models, limits: ConnectionLimits = LIMITS, admission: AdmissionLimits = AdmissionLimits()) -> Service:
    return Service([models], TokenStore.of_tokens([TOKEN]), ServiceConfig(admission=admission, connection=limits))


@pytest.fixture(scope="module")
def served(shipped):
    service = make(shipped, admission=AdmissionLimits(max_preauth=4))
    with ServerThread(service) as url:
        yield service, url


@pytest.fixture(autouse=True)
def no_error_logs(caplog):
    """Nothing a client alone does may log at ERROR."""
    caplog.set_level(logging.INFO)
    yield
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [f"{r.name}: {r.getMessage()}" for r in errors]


def open_raw(url: str) -> socket.socket:
    host, port = url.split("//", 1)[1].rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=10)


def send(sock: socket.socket, data: bytes) -> None:
    try:
        sock.sendall(data)
    except (BrokenPipeError, ConnectionResetError):  # the server refused and closed while we were sending
        pass


def answer(sock: socket.socket, timeout: float = 10.0) -> tuple[int | None, bytes, float]:
    """Read until the server closes: (HTTP status or None if it closed without a byte, the bytes, seconds)."""
    t0, data = time.monotonic(), b""
    sock.settimeout(timeout)
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    elapsed = time.monotonic() - t0
    sock.close()
    status = int(data[9:12]) if data.startswith(b"HTTP/1.1 ") else None
    return status, data, elapsed


def body_of(data: bytes) -> bytes:
    return data.split(b"\r\n\r\n", 1)[1]


def post_head(length: int, token: str | None = TOKEN, content_type: str = "application/octet-stream") -> bytes:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    return (f"POST /v1/transcribe HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Type: {content_type}\r\n"
            f"Content-Length: {length}\r\nConnection: close\r\n\r\n").encode()


def sockets_back_to(service: Service, baseline: int) -> bool:
    return wait_until(lambda: service.guard.open_sockets <= baseline, DEADLINE + MARGIN + LINGER_SECONDS)


# ---- deadlines ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("sent, status", [
    (b"", None),                                            # connects, says nothing: a plain close
    (b"GET /v1/str", 408),                                  # half a request line
    (b"POST /v1/transcribe HTTP/1.1\r\nHost: x\r\nContent-Le", 408),   # half a header block
    (UPGRADE.encode(), 408),                                # a WebSocket upgrade without its blank line
])
def test_an_unfinished_request_head_is_closed_at_its_deadline(served, sent, status):
    service, url = served
    baseline = service.guard.open_sockets
    sock = open_raw(url)
    send(sock, sent)
    got, data, elapsed = answer(sock)
    assert got == status, data[:200]
    assert DEADLINE - 0.1 <= elapsed <= DEADLINE + MARGIN
    assert sockets_back_to(service, baseline)


def test_a_stalled_upload_gets_4408_at_its_body_deadline_and_a_steady_one_is_not_cut(served):
    service, url = served
    frames = vector_frames("int8")
    body = b"".join(frames)
    sock = open_raw(url)
    send(sock, post_head(len(body)) + frames[0] + frames[1][:100])  # the HELLO and part of a chunk, then nothing
    status, data, elapsed = answer(sock)
    error = p.decode_frame(body_of(data))
    assert (status, error.code) == (408, 4408) and elapsed <= DEADLINE + MARGIN + 0.2
    # the same body at about 6 x the minimum rate, in 40 pieces: its deadline moves with it and it completes
    sock = open_raw(url)
    send(sock, post_head(len(body)))
    step = len(body) // 40 + 1
    for i in range(0, len(body), step):
        send(sock, body[i:i + step])
        time.sleep(step / (6 * LIMITS.min_body_rate))
    status, data, _ = answer(sock)
    assert status == 200, data[:300]
    assert p.decode_frame(body_of(data)).text == expected_texts("int8")[-1]


def test_a_websocket_that_sends_no_hello_is_ended_with_4408_with_or_without_a_token(served):
    service, url = served
    for headers in ({"Authorization": f"Bearer {TOKEN}"}, {}):
        t0 = time.monotonic()
        with connect(ws_url(url), additional_headers=headers, proxy=None, compression=None) as ws:
            reply = p.decode_frame(ws.recv(timeout=10))
            assert reply.code == 4408 and "HELLO" in reply.message
        assert time.monotonic() - t0 <= DEADLINE + MARGIN
    assert wait_until(lambda: service.admission.preauth == 0 and service.admission.open_sessions == 0)


# ---- authentication before resources -----------------------------------------------------------------------------

def test_an_upload_with_a_wrong_token_is_refused_before_its_body_is_read(served):
    service, url = served
    sock = open_raw(url)
    send(sock, post_head(1_000_000, token="not-a-token"))  # announces 1 MB, sends none of it
    status, data, elapsed = answer(sock)
    assert (status, p.decode_frame(body_of(data)).code) == (401, 4401)
    assert elapsed < DEADLINE  # answered at once, not at a deadline
    sock = open_raw(url)
    send(sock, post_head(1_000_000, token=None))  # no token: the pre-auth pool, then the HELLO deadline
    status, data, elapsed = answer(sock)
    assert (status, p.decode_frame(body_of(data)).code) == (408, 4408) and elapsed <= DEADLINE + MARGIN


def test_a_token_less_flood_fills_only_the_pre_auth_pool_and_a_client_with_a_token_gets_its_final(served):
    service, url = served
    baseline = service.guard.open_sockets
    flood, refused = [], 0
    for _ in range(12):  # 4 fit the pre-auth pool, the rest get 503 at once
        try:
            flood.append(connect(ws_url(url), proxy=None, compression=None, open_timeout=5).__enter__())
        except InvalidStatus as exc:
            assert exc.response.status_code == 503
            assert p.decode_frame(exc.response.body).name == "server_busy"
            refused += 1
    raw = [open_raw(url) for _ in range(40)]  # and 40 sockets that never send a head
    for s in raw[:20]:
        send(s, UPGRADE.encode())
    assert (len(flood), refused) == (4, 8)
    assert metric(url, 'veil_connections{phase="pre_auth"}') == 4
    assert wait_until(lambda: metric(url, "veil_open_sockets") >= 4 + 40)
    frames = vector_frames("int8")
    with connect(ws_url(url), additional_headers={"Authorization": f"Bearer {TOKEN}"}, proxy=None,
                 compression=None) as ws:
        ws.send(frames[0])
        assert isinstance(p.decode_frame(ws.recv(timeout=5)), p.Ready)
        # READY while the flood still holds the whole pre-auth pool: it never waited for a place
        assert metric(url, 'veil_connections{phase="pre_auth"}') == 4
        assert metric(url, 'veil_connections{phase="session"}') == 1
        for f in frames[1:]:
            ws.send(f)
            reply = p.decode_frame(ws.recv(timeout=10))
    assert reply.text == expected_texts("int8")[-1]
    for ws in flood:
        ws.__exit__(None, None, None)
    for s in raw:
        s.close()
    assert sockets_back_to(service, baseline)
    assert service.admission.preauth == 0


# ---- oversized heads -----------------------------------------------------------------------------------------------

def headers_lines(n: int, size: int = 10) -> str:
    return "".join(f"X-Pad-{i}: {'a' * size}\r\n" for i in range(n))


@pytest.mark.parametrize("kind", ["upgrade", "post"])
@pytest.mark.parametrize("head, status", [
    (lambda start: start + f"X-Long: {'a' * 9000}\r\n\r\n", 431),            # one line over 8 KiB
    (lambda start: start + headers_lines(129) + "\r\n", 431),                 # more than 128 headers
    (lambda start: start + headers_lines(20000, 100) + "\r\n", 431),          # a 2-MB header block
    (lambda start: start.replace("/v1/", "/v1/" + "a" * 9000, 1) + "\r\n", 414),   # a URI over 8 KiB
    (lambda start: "GET /\x01 HTTP/1.1\r\n\r\n", 400),                        # not HTTP
])
def test_every_oversized_or_malformed_head_gets_an_answer_and_a_close(served, kind, head, status):
    service, url = served
    baseline = service.guard.open_sockets
    start = UPGRADE if kind == "upgrade" else post_head(0).decode().removesuffix("\r\n")
    sock = open_raw(url)
    send(sock, head(start).encode())
    got, data, elapsed = answer(sock)
    assert got == status, data[:200]
    assert elapsed < DEADLINE  # answered at once, not at the head deadline
    assert sockets_back_to(service, baseline)


def test_a_header_just_under_the_limit_reaches_the_token_check(served):
    service, url = served
    sock = open_raw(url)
    send(sock, (UPGRADE + f"X-Long: {'a' * 8000}\r\nAuthorization: Bearer wrong\r\n\r\n").encode())
    status, data, _ = answer(sock)
    assert status == 401 and p.decode_frame(body_of(data)).code == 4401


def test_websockets_own_refusal_of_a_handshake_is_sent_not_swallowed(shipped):
    """With Veil's head limits raised above websockets' (8,192-byte lines), the upgrade reaches websockets'
    parser, which refuses it: uvicorn alone would never send that answer; the guarded protocol does."""
    loose = ConnectionLimits(head_timeout_seconds=DEADLINE, max_header_line_bytes=20000, max_head_bytes=65536)
    service = make(shipped, loose)
    with ServerThread(service) as url:
        sock = open_raw(url)
        send(sock, (UPGRADE + f"X-Long: {'a' * 9000}\r\n\r\n").encode())
        status, data, elapsed = answer(sock)
        assert status == 431 and elapsed < DEADLINE
        assert wait_until(lambda: service.guard.open_sockets == 0)


# ---- honest metrics ----------------------------------------------------------------------------------------------

def test_a_client_that_hangs_up_is_counted_disconnected_not_internal_error(served):
    service, url = served
    frames = vector_frames("int8")
    internal = metric(url, 'veil_errors_total{code="4500"')
    http_gone = metric(url, 'veil_sessions_total{outcome="disconnected",transport="http"}')
    ws_gone = metric(url, 'veil_sessions_total{outcome="disconnected",transport="ws"}')
    sock = open_raw(url)  # mid-POST
    send(sock, post_head(len(b"".join(frames))) + frames[0] + frames[1][:50])
    time.sleep(0.1)
    sock.close()
    with connect(ws_url(url), additional_headers={"Authorization": f"Bearer {TOKEN}"}, proxy=None,
                 compression=None) as ws:  # mid-stream
        ws.send(frames[0])
        ws.recv(timeout=5)
        ws.send(frames[1])
    assert wait_until(lambda: metric(url, 'veil_sessions_total{outcome="disconnected",transport="http"}')
                      == http_gone + 1)
    assert wait_until(lambda: metric(url, 'veil_sessions_total{outcome="disconnected",transport="ws"}')
                      == ws_gone + 1)
    assert metric(url, 'veil_errors_total{code="4500"') == internal


def test_metrics_show_connections_by_phase_and_open_sockets(served):
    service, url = served
    frames = vector_frames("int8")
    with connect(ws_url(url), proxy=None, compression=None) as waiting, \
            connect(ws_url(url), additional_headers={"Authorization": f"Bearer {TOKEN}"}, proxy=None,
                    compression=None) as session:
        session.send(frames[0])
        session.recv(timeout=5)
        assert metric(url, 'veil_connections{phase="pre_auth"}') == 1
        assert metric(url, 'veil_connections{phase="session"}') == 1
        assert metric(url, 'veil_connections{phase="draining"}') == 0
        assert metric(url, "veil_open_sockets") >= 3  # the two WebSockets and this scrape
        waiting.send(frames[0])  # the vectors' HELLO carries the token: out of the pool, into a session
        assert isinstance(p.decode_frame(waiting.recv(timeout=5)), p.Ready)
        assert metric(url, 'veil_connections{phase="pre_auth"}') == 0
        assert metric(url, 'veil_connections{phase="session"}') == 2
    assert wait_until(lambda: service.admission.preauth == 0 and service.admission.open_sessions == 0)
    text = urllib.request.urlopen(url + "/metrics", timeout=5).read().decode()
    assert 'veil_connection_refusals_total{reason="head_timeout",status="408"}' in text


# ---- Content-Type -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("content_type, status", [
    ("application/octet-stream", 200), ("Application/Octet-Stream; charset=binary", 200), (None, 200),
    ("application/x-www-form-urlencoded", 415), ("application/json", 415), ("text/plain", 415)])
def test_the_unary_body_must_be_octet_stream_or_untyped(served, content_type, status):
    service, url = served
    body = b"".join(vector_frames("int8"))
    head = post_head(len(body), content_type=content_type or "")
    if content_type is None:
        head = head.replace(b"Content-Type: \r\n", b"")
    sock = open_raw(url)
    send(sock, head + body)
    got, data, _ = answer(sock)
    reply = p.decode_frame(body_of(data))
    assert got == status
    if status == 415:
        assert reply.code == 4406 and "Content-Type" in reply.message
    else:
        assert reply.text == expected_texts("int8")[-1]
