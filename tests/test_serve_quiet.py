"""uvicorn's false alarm when the app returns before a WebSocket handshake completes (a refused upgrade, a client
that closes mid-handshake) is a DEBUG line, not an ERROR: on a real server on 127.0.0.1, with real sockets."""
from __future__ import annotations

import logging
import socket
import time
from pathlib import Path

import pytest

from toolkit.serve.app import Service, ServiceConfig
from toolkit.serve.auth import TokenStore
from toolkit.serve.server import DenialLogFilter, ServerThread
from toolkit.serve.suffix import ServedSuffix

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "test-token-quiet"
UPGRADE = ("GET /v1/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n")


def handshake_then_close(url: str, headers: str) -> None:
    """Send an upgrade request and close before reading the answer (RST: SO_LINGER 0)."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=5)
    sock.sendall((UPGRADE + headers + "\r\n").encode())
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()


def test_the_false_handshake_error_is_downgraded_to_debug(caplog):
    record = logging.LogRecord("uvicorn.error", logging.ERROR, __file__, 1, DenialLogFilter.MESSAGE, None, None)
    serve_log = logging.getLogger("veil.serve")
    level = serve_log.level
    try:
        serve_log.setLevel(logging.DEBUG)
        assert DenialLogFilter().filter(record) and record.levelname == "DEBUG"  # visible under --log-level debug
        serve_log.setLevel(logging.INFO)
        assert not DenialLogFilter().filter(record)
    finally:
        serve_log.setLevel(level)
    other = logging.LogRecord("uvicorn.error", logging.ERROR, __file__, 1, "Exception in ASGI application", None, None)
    assert DenialLogFilter().filter(other) and other.levelname == "ERROR"  # real errors stay errors

    models = [ServedSuffix.load(ROOT / "models" / "normalized.safetensors")]
    service = Service(models, TokenStore.of_tokens([TOKEN]), ServiceConfig())
    caplog.set_level(logging.DEBUG, logger="uvicorn.error")
    with ServerThread(service) as url:
        for _ in range(3):
            handshake_then_close(url, f"Authorization: Bearer {TOKEN}\r\n")  # accepted, client already gone
            handshake_then_close(url, "Authorization: Bearer wrong\r\n")      # refused with 401
        time.sleep(1.0)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR and r.name.startswith("uvicorn")]
    assert not errors, [r.getMessage() for r in errors]
