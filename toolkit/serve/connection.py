"""The layer below the protocol: what a connection may cost before it is a session.

uvicorn (httptools parser, websockets' sans-I/O WebSocket protocol) leaves three gaps that a client alone can
use, each measured by ``benchmarks/serve_handshakes.py``:

- no deadline for the request head: a connection that sends half a request line is held forever (its
  keep-alive timeout starts only after a first response);
- no limit on the head: httptools accumulates header lines and the URI without bound (a multi-megabyte header
  block is buffered whole);
- a WebSocket upgrade that websockets' parser refuses (a line over 8,192 bytes, more than 128 headers) gets no
  answer: websockets writes its 414/431 response into its send buffer, and uvicorn's protocol never sends it
  nor closes the socket.

:class:`GuardedHttp` and :class:`GuardedWebSocket` are uvicorn's two protocol classes with those gaps closed:
a head deadline from the first byte (408 if part of a head came, else a plain close), limits on the URI (414),
on each header line, the number of headers and the whole head (431), malformed heads answered 400, and every
refusal followed by a close. A request whose body was not read (refused before it, or over its deadline) is
closed shortly after its answer instead of being read to its end. The body rate and the WebSocket HELLO
deadline are the application's (``toolkit/serve/app.py``): they are answered with typed ERROR frames.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from http import HTTPStatus

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

log = logging.getLogger("veil.serve")

# The answer to a refused request must reach the client before the socket is closed: closing a socket with
# unread input makes the kernel send RST, and the client's kernel may discard the answer. Keep reading (and
# discarding) this long after the answer, then close.
LINGER_SECONDS = 0.5


@dataclass(frozen=True)
class ConnectionLimits:
    """Deadlines (seconds) and sizes (bytes) of a connection before it is a session.

    The head limits sit just under websockets' own (8,192-byte lines, 128 headers), so an upgrade that passes
    them is never refused silently further down."""
    head_timeout_seconds: float = 5.0      # request line + headers, from the first byte (or the accept)
    body_timeout_seconds: float = 10.0     # an upload's body: this long ...
    min_body_rate: float = 16384.0         # ... plus 1 s per this many bytes received (bytes/s; 0: no rate)
    hello_timeout_seconds: float = 5.0     # the first frame (HELLO) after the upgrade or in the body
    max_uri_bytes: int = 8000
    max_header_line_bytes: int = 8190
    max_headers: int = 100
    max_head_bytes: int = 32768

    def body_deadline(self, started: float, received: int) -> float:
        """mod_reqtimeout's rule: the body's deadline moves 1 s later for each ``min_body_rate`` bytes."""
        if self.min_body_rate <= 0:
            return started + self.body_timeout_seconds
        return started + self.body_timeout_seconds + received / self.min_body_rate


class HeadRefused(Exception):
    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status, self.reason = status, reason


class ConnectionGuard:
    """The server-wide side: the limits, the count of open sockets and the refusals (``on_refusal(status,
    reason)``, for metrics)."""

    def __init__(self, limits: ConnectionLimits, on_refusal=None):
        self.limits = limits
        self.open_sockets = 0
        self.on_refusal = on_refusal or (lambda status, reason: None)

    def refused(self, status: int, reason: str) -> None:
        self.on_refusal(status, reason)
        log.info("connection refused status=%d reason=%s", status, reason)

    def protocols(self) -> tuple[type, type]:
        """uvicorn's ``http`` and ``ws`` protocol classes bound to this guard."""
        return (type("VeilHttp", (GuardedHttp,), {"guard": self}),
                type("VeilWebSocket", (GuardedWebSocket,), {"guard": self}))


def plain_response(status: int, text: str) -> bytes:
    body = text.encode("ascii", "replace") + b"\n"
    return (f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\ncontent-type: text/plain; charset=utf-8\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n").encode() + body


class GuardedHttp(HttpToolsProtocol):
    guard: ConnectionGuard

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.limits = self.guard.limits
        self._head_timer: asyncio.TimerHandle | None = None
        self._linger: asyncio.TimerHandle | None = None
        self._in_head = False
        self._head_bytes = self._uri_bytes = self._header_count = 0
        self._refusal: HeadRefused | None = None
        self._upgraded = False
        self._refused = False

    # ---- the socket ------------------------------------------------------------------------------------------
    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self.guard.open_sockets += 1
        self._start_head()

    def connection_lost(self, exc) -> None:
        self._cancel_timers()
        if not self._upgraded:  # an upgraded socket is the WebSocket protocol's to count
            self.guard.open_sockets -= 1
        super().connection_lost(exc)

    def _cancel_timers(self) -> None:
        for timer in (self._head_timer, self._linger):
            if timer is not None:
                timer.cancel()
        self._head_timer = self._linger = None

    # ---- the head ----------------------------------------------------------------------------------------------
    def _start_head(self) -> None:
        self._in_head = True
        self._head_bytes = self._uri_bytes = self._header_count = 0
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.limits.head_timeout_seconds, self._head_expired)

    def _head_expired(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if self._head_bytes:  # part of a head came: say why the connection ends
            self._refuse(HeadRefused(408, "head_timeout"))
        else:  # nothing came: a plain close (an idle keep-alive or a connect that never spoke)
            self.guard.refused(0, "idle_connect")
            self.transport.close()

    def _refuse(self, refusal: HeadRefused) -> None:
        self._cancel_timers()
        self.guard.refused(refusal.status, refusal.reason)
        self._refused = True
        if not self.transport.is_closing():
            self.transport.write(plain_response(refusal.status, refusal.reason))
            self._linger_and_close()

    def _linger_and_close(self) -> None:
        """End our side now (the client reads the answer, then EOF), discard what still comes for a moment,
        then close."""
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self._linger = self.loop.call_later(LINGER_SECONDS, self.transport.close)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        self._unset_keepalive_if_required()
        if self._in_head:
            self._head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            return  # another upgrade (h2c...): answered as a plain request, as uvicorn does
        except httptools.HttpParserError:
            self._refuse(self._refusal or HeadRefused(400, "bad_request"))
            return
        if self._in_head and self._head_bytes > self.limits.max_head_bytes:
            self._refuse(HeadRefused(431, "head_too_large"))

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if not self._in_head:  # the next request of a keep-alive connection
            self._start_head()

    def on_url(self, url: bytes) -> None:
        self._uri_bytes += len(url)
        if self._uri_bytes > self.limits.max_uri_bytes:
            self._refusal = HeadRefused(414, "uri_too_long")
            raise self._refusal
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if len(name) + 2 + len(value) > self.limits.max_header_line_bytes:
            self._refusal = HeadRefused(431, "header_line_too_long")
            raise self._refusal
        if self._header_count > self.limits.max_headers:
            self._refusal = HeadRefused(431, "too_many_headers")
            raise self._refusal
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().on_headers_complete()

    def handle_websocket_upgrade(self) -> None:
        self._cancel_timers()
        self._upgraded = True
        super().handle_websocket_upgrade()

    # ---- the body ----------------------------------------------------------------------------------------------
    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.cycle is not None and self.cycle.more_body and not self.transport.is_closing():
            # answered before its body was read (a refusal, a body deadline): read on only briefly
            self._unset_keepalive_if_required()
            self._refused = True
            self._linger_and_close()


class GuardedWebSocket(WebSocketsSansIOProtocol):
    """uvicorn's websockets (sans-I/O) protocol that sends websockets' answer to a handshake it refused (414,
    431; 400 where websockets only gives up) and closes, and that counts its socket."""
    guard: ConnectionGuard

    def data_received(self, data: bytes) -> None:
        self.conn.receive_data(data)
        if self.conn.parser_exc is not None:
            self.handle_parser_exception()
            return
        if self.conn.handshake_exc is not None and not self.handshake_initiated:
            answer = b"".join(self.conn.data_to_send())
            status = int(answer[9:12]) if answer.startswith(b"HTTP/1.1 ") and answer[9:12].isdigit() else 400
            self.guard.refused(status, "ws_handshake")
            self.transport.write(answer if status != 400 else plain_response(400, "bad_websocket_handshake"))
            self.handshake_complete = True
            self.close_sent = True
            self.transport.close()
            return
        self.handle_events()

    def connection_lost(self, exc) -> None:
        self.guard.open_sockets -= 1
        super().connection_lost(exc)
