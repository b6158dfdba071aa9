"""deploy/nginx.conf, the example reverse proxy of docs/SERVE.md, run on loopback in front of a real `veil serve`
(in this process, short deadlines): sessions pass through it whole, and the slow, oversized and token-less
clients of tests/test_serve_connections.py get an answer or a close in time through it as well. Its ports and
its timeouts are shortened for the test; nothing else of the file is changed. Needs nginx (scripts/setup.sh
installs Debian's); without it the test fails and says so."""
from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from toolkit.serve import protocol as p
from toolkit.serve.admission import AdmissionLimits
from toolkit.serve.server import ServerThread
from tests.test_serve import TOKEN, expected_texts, shipped, vector_frames, wait_until  # noqa: F401
from tests.test_serve_connections import (DEADLINE, MARGIN, UPGRADE, answer, body_of, headers_lines, make,
                                          open_raw, post_head, send)

CONFIG = Path(__file__).resolve().parent.parent / "deploy" / "nginx.conf"
NGINX = shutil.which("nginx") or (Path("/usr/sbin/nginx").is_file() and "/usr/sbin/nginx")
PROXY_DEADLINE = 1  # nginx's client_header_timeout / client_body_timeout in the test, seconds


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def proxied(shipped, tmp_path_factory):
    if not NGINX:
        pytest.fail("nginx not found: run scripts/setup.sh (it installs Debian's nginx)")
    service = make(shipped, admission=AdmissionLimits(max_preauth=2))
    with ServerThread(service) as upstream:
        port = free_port()
        text = CONFIG.read_text()
        text = text.replace("server 127.0.0.1:8765;", f"server {upstream.split('//')[1]};")
        text = text.replace("listen 127.0.0.1:8080;", f"listen 127.0.0.1:{port};")
        text = re.sub(r"client_(header|body)_timeout \d+s;", rf"client_\1_timeout {PROXY_DEADLINE}s;", text)
        assert text.count(f"timeout {PROXY_DEADLINE}s;") == 2 and f":{port};" in text
        prefix = tmp_path_factory.mktemp("nginx")
        (prefix / "nginx.conf").write_text(text)
        for d in ("body", "proxy", "logs"):
            (prefix / d).mkdir()
        directives = (f"daemon off; pid {prefix}/nginx.pid; error_log {prefix}/error.log warn; "
                      f"")
        cmd = [NGINX, "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-e", str(prefix / "error.log"),
               "-g", directives]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        url = f"http://127.0.0.1:{port}"

        def up() -> bool:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return True
            except OSError:
                return proc.poll() is not None
        assert wait_until(up, 10) and proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        try:
            yield service, url
        finally:
            proc.terminate()
            proc.wait(10)


def answer_head(sock: socket.socket) -> tuple[int | None, bytes, float]:
    """The answer's head only: nginx may keep the connection open after relaying veil serve's answer."""
    t0, data = time.monotonic(), b""
    sock.settimeout(10)
    try:
        while b"\r\n\r\n" not in data and (chunk := sock.recv(65536)):
            data += chunk
    except ConnectionResetError:
        pass
    sock.close()
    return (int(data[9:12]) if data.startswith(b"HTTP/1.1 ") else None), data, time.monotonic() - t0


def ws_url(url: str) -> str:
    return url.replace("http", "ws", 1) + "/v1/stream"


def test_sessions_pass_through_the_proxy_whole(proxied):
    service, url = proxied
    frames = vector_frames("int8")
    with connect(ws_url(url), additional_headers={"Authorization": f"Bearer {TOKEN}"}, proxy=None,
                 compression=None) as ws:
        replies = []
        for f in frames:
            ws.send(f)
            replies.append(p.decode_frame(ws.recv(timeout=10)))
    assert [getattr(r, "text", None) for r in replies] == expected_texts("int8")
    sock = open_raw(url)
    body = b"".join(frames)
    send(sock, post_head(len(body)) + body)
    status, data, _ = answer(sock)
    assert status == 200 and p.decode_frame(body_of(data)).text == expected_texts("int8")[-1]
    sock = open_raw(url)
    send(sock, b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert answer(sock)[0] == 404  # not from outside


@pytest.mark.parametrize("sent", [b"", b"GET /v1/str", UPGRADE.encode()])
def test_an_unfinished_head_is_closed_by_the_proxy_in_time(proxied, sent):
    service, url = proxied
    sock = open_raw(url)
    send(sock, sent)
    status, data, elapsed = answer(sock)
    assert status in (None, 408), data[:200]
    assert elapsed <= PROXY_DEADLINE + MARGIN


@pytest.mark.parametrize("head, statuses", [
    (lambda start: start + f"X-Long: {'a' * 9000}\r\n\r\n", {400, 431}),      # one line over 8 KiB
    (lambda start: start + headers_lines(129) + "\r\n", {431}),                # veil serve's limit, passed on
    (lambda start: start + headers_lines(20000, 100) + "\r\n", {400, 431}),    # a 2-MB head
    (lambda start: start.replace("/v1/stream", "/v1/stream?" + "a" * 9000, 1) + "\r\n", {414}),
])
def test_oversized_upgrades_are_answered_through_the_proxy(proxied, head, statuses):
    service, url = proxied
    sock = open_raw(url)
    send(sock, head(UPGRADE).encode())
    status, data, elapsed = answer_head(sock)
    assert status in statuses, data[:200]
    assert elapsed < DEADLINE


def test_a_stalled_upload_and_a_wrong_token_through_the_proxy(proxied):
    service, url = proxied
    frames = vector_frames("int8")
    sock = open_raw(url)
    send(sock, post_head(1_000_000, token="not-a-token"))  # the token is checked before the body, as directly
    status, data, elapsed = answer(sock)
    assert (status, p.decode_frame(body_of(data)).code) == (401, 4401) and elapsed < DEADLINE
    sock = open_raw(url)
    send(sock, post_head(len(b"".join(frames))) + frames[0] + frames[1][:100])
    status, data, elapsed = answer(sock)
    assert status in (408, 504) and elapsed <= max(DEADLINE, PROXY_DEADLINE) + MARGIN + 0.5
    assert wait_until(lambda: service.admission.open_sessions == 0)


def test_a_token_less_flood_through_the_proxy_leaves_room_for_a_client_with_a_token(proxied):
    service, url = proxied
    flood, refused = [], 0
    for _ in range(6):
        try:
            flood.append(connect(ws_url(url), proxy=None, compression=None, open_timeout=5).__enter__())
        except InvalidStatus as exc:
            assert exc.response.status_code == 503
            refused += 1
    assert (len(flood), refused) == (2, 4)  # veil serve's pre-auth pool (2 here), not the proxy's limits
    frames = vector_frames("int8")
    with connect(ws_url(url), additional_headers={"Authorization": f"Bearer {TOKEN}"}, proxy=None,
                 compression=None) as ws:
        for f in frames:
            ws.send(f)
            reply = p.decode_frame(ws.recv(timeout=10))
    assert reply.text == expected_texts("int8")[-1]
    for ws in flood:
        ws.__exit__(None, None, None)
    assert wait_until(lambda: service.admission.preauth == 0, DEADLINE + MARGIN)
