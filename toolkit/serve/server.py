"""Running the service: uvicorn on a socket we bind ourselves (so port 0 works and the real port is known),
optional TLS, WebSocket limits in the transport, graceful shutdown, and a background-thread mode for
embedding the server in another process (tests, notebooks).

The WebSocket layer (uvicorn's websockets-sansio protocol) enforces ``max_message_bytes`` from each frame's
header, before reading its body, and closes with 1009; permessage-deflate is off (embeddings do not compress
and inflating is a decompression-bomb risk). Below the protocol, uvicorn runs Veil's guarded protocol classes
(``toolkit/serve/connection.py``): a deadline and size limits for every request head, an answer to every
refused handshake, and a count of open sockets.
"""
from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import threading
from dataclasses import dataclass

import uvicorn

from toolkit.errors import VeilError
from toolkit.serve.app import Service, create_app

log = logging.getLogger("veil.serve")


def exposed_interfaces(interfaces: list[str] | None = None) -> list[str]:
    """Network interfaces other than loopback (default: this process's network namespace)."""
    if interfaces is None:
        interfaces = [name for _, name in socket.if_nameindex()]
    return sorted(name for name in interfaces if name != "lo")


def is_loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def ray_reach(host: str, interfaces: list[str] | None = None) -> list[str]:
    """The interfaces Ray will also bind its cluster ports on (GCS, raylets, object store: Ray binds them beyond
    its HTTP host, ``--node-ip-address`` notwithstanding). Serving on loopback with any other interface in reach
    is refused: start Ray inside a network namespace whose only interface is ``lo``. A non-loopback ``host`` is
    the operator's choice to serve on a network; the caller says what else is then reachable."""
    exposed = exposed_interfaces(interfaces)
    if exposed and is_loopback(host):
        raise VeilError(f"--engine ray on {host}: Ray would also bind its cluster ports (GCS, raylets, object store) "
                        f"on {', '.join(exposed)}; run it inside a network namespace whose only interface is lo "
                        f"(unshare --net; docs/SERVE.md), or serve on a private network address with --host")
    return exposed


@dataclass(frozen=True)
class Listen:
    host: str = "127.0.0.1"
    port: int = 8765
    tls_cert: str | None = None
    tls_key: str | None = None

    @property
    def scheme(self) -> str:
        return "https" if self.tls_cert else "http"


def bind(listen: Listen) -> socket.socket:
    family = socket.AF_INET6 if ":" in listen.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # accepted sockets inherit it: an ERROR frame and the close frame after it are two small writes, which
    # Nagle's algorithm would hold for the client's delayed ACK (40 ms)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((listen.host, listen.port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


class DenialLogFilter(logging.Filter):
    """uvicorn 0.54's websockets-sansio protocol logs a spurious ERROR when the app returns before a handshake
    completes: after a WebSocket denial response (an upgrade refused with 401/429/503, which is how this service
    answers) and when a client closes mid-handshake. The service logs the refusal or the disconnect itself, so the
    line is downgraded to DEBUG (shown with ``veil serve --log-level debug``), not an ERROR."""

    MESSAGE = "ASGI callable returned without completing handshake."

    def filter(self, record: logging.LogRecord) -> bool:
        if record.getMessage() != self.MESSAGE:
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger("veil.serve").isEnabledFor(logging.DEBUG)


logging.getLogger("uvicorn.error").addFilter(DenialLogFilter())


class VeilServer(uvicorn.Server):
    """uvicorn's server with Veil's drain first: on SIGTERM/SIGINT (or ``should_exit``) stop accepting, let open
    sessions finish within the grace period, end the rest with ERROR 4502, then shut uvicorn down."""

    def __init__(self, config: uvicorn.Config, service: Service):
        super().__init__(config)
        self.service = service

    async def shutdown(self, sockets=None) -> None:
        for server in self.servers:
            server.close()
        log.info("shutting down: draining %d open sessions (grace %.0f s)", self.service.admission.open_sessions,
                 self.service.config.shutdown_grace_seconds)
        await self.service.drain(self.service.config.shutdown_grace_seconds)
        await super().shutdown(sockets)


def make_server(service: Service, listen: Listen) -> VeilServer:
    limits = service.config.session
    http_protocol, ws_protocol = service.guard.protocols()
    config = uvicorn.Config(
        create_app(service), host=listen.host, port=listen.port, log_config=None, access_log=False,
        http=http_protocol, ws=ws_protocol,
        ws_max_size=limits.max_message_bytes, ws_per_message_deflate=False, ws_ping_interval=20.0,
        ws_ping_timeout=20.0, ssl_certfile=listen.tls_cert, ssl_keyfile=listen.tls_key,
        timeout_graceful_shutdown=5, lifespan="on", server_header=False, timeout_keep_alive=5)
    return VeilServer(config, service)


def serve_forever(service: Service, listen: Listen, on_ready=None) -> None:
    """Bind, report the real address through ``on_ready(url)``, serve until a signal; blocks."""
    sock = bind(listen)
    server = make_server(service, listen)
    host, port = sock.getsockname()[:2]

    async def main():
        task = asyncio.ensure_future(server.serve(sockets=[sock]))
        while not server.started and not task.done():
            await asyncio.sleep(0.01)
        if server.started and on_ready is not None:
            on_ready(f"{listen.scheme}://{host}:{port}")
        await task

    asyncio.run(main())


class ServerThread:
    """The server on a background thread of this process: ``with ServerThread(service) as url: ...``."""

    def __init__(self, service: Service, listen: Listen = Listen(port=0)):
        self.service = service
        self.listen = listen
        self.server: VeilServer | None = None
        self.url = ""
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def __enter__(self) -> str:
        sock = bind(self.listen)
        host, port = sock.getsockname()[:2]
        self.url = f"{self.listen.scheme}://{host}:{port}"
        self.server = make_server(self.service, self.listen)

        def run():
            try:
                asyncio.run(self.server.serve(sockets=[sock]))
            except BaseException as exc:  # surfaced by __enter__ / __exit__
                self._error = exc

        self._thread = threading.Thread(target=run, name="veil-serve", daemon=True)
        self._thread.start()
        while not self.server.started:
            if not self._thread.is_alive():
                raise RuntimeError(f"server thread died: {self._error!r}")
            self._thread.join(0.01)
        return self.url

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        if self.server is not None and self._thread is not None and self._thread.is_alive():
            self.server.should_exit = True
            self._thread.join(30)
