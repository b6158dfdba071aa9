"""The ASGI application of `veil serve` (FastAPI on Starlette): the protocol's two transports, health,
readiness, model listing and Prometheus metrics, over one :class:`Service` that holds the served suffixes,
the batcher, the admission counters and the metrics.

Privacy of the service itself: nothing a client sends is written anywhere. Logs (logger ``veil.serve``) carry
session ids, token ids (8 hex digits of the token's hash), sizes, timings and error codes, never text,
embeddings or error messages (which may quote input).
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import JSONResponse, Response
from starlette.websockets import WebSocketDisconnect
from uvicorn.protocols.utils import ClientDisconnected

from toolkit.exporting.manifest import PrefixIdentity
from toolkit.serve import protocol as p
from toolkit.serve.admission import Admission, AdmissionLimits, ConnectionGate
from toolkit.serve.auth import TokenStore, bearer_token
from toolkit.serve.batcher import BatchConfig, DynamicBatcher
from toolkit.serve.connection import ConnectionGuard, ConnectionLimits
from toolkit.serve.metrics import ServeMetrics
from toolkit.serve.protocol import ProtocolError
from toolkit.serve.session import Conversation, SessionLimits, Work
from toolkit.serve.suffix import ServedSuffix

log = logging.getLogger("veil.serve")
FRAME_MEDIA_TYPE = "application/octet-stream"
# a client that went away mid-session: not the server's fault, counted as `disconnected`
CLIENT_GONE = (WebSocketDisconnect, ClientDisconnected, ConnectionError)


class ClientGone(Exception):
    """The client closed the connection before its request was read."""


@dataclass(frozen=True)
class ServiceConfig:
    session: SessionLimits = SessionLimits()
    admission: AdmissionLimits = AdmissionLimits()
    batch: BatchConfig = BatchConfig()
    shutdown_grace_seconds: float = 15.0
    connection: ConnectionLimits = ConnectionLimits()

    def max_body_bytes(self, served: list[ServedSuffix]) -> int:
        """HTTP body limit: max message bytes for HELLO, END and every chunk of the longest utterance."""
        chunks = max(s.chunk.chunks_for(self.session.max_utterance_samples(s.chunk.sample_rate)) for s in served)
        return self.session.max_message_bytes * (chunks + 2)


class Service:
    def __init__(self, models: list[ServedSuffix], tokens: TokenStore | None, config: ServiceConfig,
                 batcher_factory=None):
        """``batcher_factory(served) -> batcher`` (start/stop/submit): default the in-process
        :class:`DynamicBatcher`; the Ray Serve gateway passes one that calls the suffix deployment."""
        self.models: dict[PrefixIdentity, ServedSuffix] = {m.identity: m for m in models}
        self.config = config
        self.batcher_factory = batcher_factory or (
            lambda served: DynamicBatcher(served.labels, config.batch, self.metrics.observe_batch))
        self.admission = Admission(tokens, config.admission)
        self.metrics = ServeMetrics()
        self.guard = ConnectionGuard(config.connection,
                                     lambda status, reason: self.metrics.refusals.labels(str(status), reason).inc())
        self.metrics.watch(self.admission, self.guard, lambda: self.shutting_down)
        self.batchers: dict[PrefixIdentity, DynamicBatcher] = {}  # one per served model (its own weights)
        self.shutting_down = False
        self.ready = False
        self._stops: set[asyncio.Event] = set()  # one per open WebSocket connection: set to end it (shutdown)
        self.max_body_bytes = config.max_body_bytes(models)

    # ---- lifecycle ---------------------------------------------------------------------------------------------
    async def start(self) -> None:
        for identity, served in self.models.items():
            self.batchers[identity] = self.batcher_factory(served)
            await self.batchers[identity].start()
        self.ready = True

    async def stop(self) -> None:
        self.ready = False
        for batcher in self.batchers.values():
            await batcher.stop()

    async def drain(self, grace_seconds: float) -> None:
        """Graceful shutdown: refuse new sessions (4502), let open ones finish for ``grace_seconds``, then end
        the rest with ERROR 4502."""
        self.shutting_down = True
        self.ready = False
        deadline = time.monotonic() + grace_seconds
        while self.admission.open_sessions and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for stop in list(self._stops):
            stop.set()
        while self.admission.open_sessions and time.monotonic() < deadline + 2.0:
            await asyncio.sleep(0.02)

    # ---- compute ----------------------------------------------------------------------------------------------
    async def compute(self, served: ServedSuffix, work: Work) -> p.Message:
        labels = await self.batchers[served.identity].submit(work.embeddings)
        return work.finish(labels)

    # ---- sessions ------------------------------------------------------------------------------------------------
    def admit(self, header_token: str | None) -> ConnectionGate:
        if self.shutting_down:
            raise ProtocolError("shutting_down", "server is shutting down")
        return self.admission.connect(header_token)

    def release(self, gate: ConnectionGate) -> None:
        gate.close()

    def conversation(self, gate: ConnectionGate) -> Conversation:
        return Conversation(self.models, self.config.session, lambda: os.urandom(16), gate)

    def refusal(self, exc: ProtocolError, sid: str, transport: str) -> bytes:
        self.metrics.error(exc.code, exc.error.name)
        log.info("session %s %s error code=%d name=%s reason=%s", sid, transport, exc.code, exc.error.name,
                 exc.reason)
        return p.encode_frame(p.error_frame(exc))


def create_app(service: Service) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await service.start()
        yield
        await service.stop()

    app = FastAPI(title="veil serve", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.service = service

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz():
        ok = service.ready and not service.shutting_down
        return JSONResponse({"ready": ok, "shutting_down": service.shutting_down,
                             "sessions": service.admission.open_sessions}, status_code=200 if ok else 503)

    @app.get("/v1/models")
    async def models():
        return {"protocol_version": p.VERSION, "models": [m.describe() for m in service.models.values()]}

    @app.get("/metrics")
    async def metrics():
        return Response(service.metrics.render(), media_type=service.metrics.content_type)

    @app.websocket("/v1/stream")
    async def stream(ws: WebSocket):
        await stream_session(service, ws)

    @app.post("/v1/transcribe")
    async def transcribe(request: Request):
        return await unary_session(service, request)

    return app


def frame_response(data: bytes, status: int) -> Response:
    return Response(data, status_code=status, media_type=FRAME_MEDIA_TYPE)


async def stream_session(service: Service, ws: WebSocket) -> None:
    """One WebSocket session: HELLO -> READY, CHUNK -> PARTIAL ..., END -> FINAL; ERROR + close on refusal."""
    started = time.perf_counter()
    try:
        gate = service.admit(bearer_token(ws.headers.get("authorization")))
    except ProtocolError as exc:  # refused at the upgrade: an HTTP response carrying the ERROR frame
        await ws.send_denial_response(frame_response(service.refusal(exc, "-", "ws"), exc.error.http))
        return
    conversation = service.conversation(gate)
    sid, outcome = "-", "disconnected"
    stop = asyncio.Event()
    service._stops.add(stop)
    stop_wait = asyncio.ensure_future(stop.wait())
    idle = service.config.session.idle_timeout_seconds
    hello_wait = min(idle, service.config.connection.hello_timeout_seconds)
    try:
        await ws.accept()
        while True:
            receive = asyncio.ensure_future(ws.receive())
            wait = hello_wait if conversation.session is None else idle
            done, _ = await asyncio.wait({receive, stop_wait}, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
            if receive not in done:
                receive.cancel()
                if stop_wait in done:
                    raise ProtocolError("shutting_down", "server is shutting down")
                if conversation.session is None:
                    raise ProtocolError("idle_timeout", f"no HELLO within {wait:g} s of the upgrade", "hello_timeout")
                raise ProtocolError("idle_timeout", f"no message for {idle:g} s")
            message = receive.result()
            if message["type"] == "websocket.disconnect":
                if message.get("code") == 1009:  # the WebSocket layer refused an oversized message
                    service.metrics.error(4413, "message_too_big")
                    log.info("session %s ws error code=1009 name=message_too_big", sid)
                    outcome = "error"
                break
            if message.get("bytes") is None:
                raise ProtocolError("bad_frame", "text message; the protocol is binary frames", "text_message")
            if len(message["bytes"]) > service.config.session.max_message_bytes:  # behind a proxy (Ray Serve)
                raise ProtocolError("message_too_big", f"message of {len(message['bytes'])} bytes exceeds "
                                                       f"{service.config.session.max_message_bytes}")
            t0 = time.perf_counter()
            step = conversation.receive(message["bytes"])
            if conversation.session is not None and sid == "-":
                sid = conversation.session.id.hex()[:16]
                session = conversation.session
                log.info("session %s ws open prefix=%s codec=%s token=%s", sid, session.served.identity.short,
                         session.hello.codec, gate.token_id or "-")
            reply = step.reply if step.work is None else await service.compute(conversation.session.served, step.work)
            await ws.send_bytes(p.encode_frame(reply))
            observe_reply(service, reply, time.perf_counter() - t0, len(message["bytes"]), sid)
            if step.done:
                outcome = "final"
                await ws.close(1000)
                break
    except ProtocolError as exc:
        outcome = "shutdown" if exc.error.name == "shutting_down" else "error"
        await send_error_and_close(ws, service.refusal(exc, sid, "ws"), exc)
    except CLIENT_GONE:
        outcome = "disconnected"
    except Exception as exc:  # a server bug: the session is lost, the server lives on
        outcome = "error"
        log.error("session %s ws internal error %s", sid, type(exc).__name__)
        log.debug("session %s traceback", sid, exc_info=True)
        err = ProtocolError("internal_error", "internal error")
        await send_error_and_close(ws, service.refusal(err, sid, "ws"), err)
    finally:
        stop_wait.cancel()
        service._stops.discard(stop)
        service.release(gate)
        service.metrics.sessions.labels("ws", outcome).inc()
        s = conversation.session
        log.info("session %s ws closed outcome=%s chunks=%d payload_bytes=%d duration_ms=%.1f", sid, outcome,
                 s.chunks if s else 0, s.bytes_received if s else 0, 1000 * (time.perf_counter() - started))


def observe_reply(service: Service, reply: p.Message, seconds: float, size: int, sid: str) -> None:
    m = service.metrics
    if isinstance(reply, p.Partial):
        m.chunks.labels("duplicate" if reply.flags & p.PARTIAL_DUPLICATE else "new").inc()
        if not reply.flags & p.PARTIAL_DUPLICATE:
            m.payload_bytes.inc(size)
        m.chunk_latency.observe(seconds)
        log.debug("session %s chunk seq=%d bytes=%d frames=%d ms=%.1f", sid, reply.seq, size, reply.frames,
                  1000 * seconds)
    elif isinstance(reply, p.Final):
        m.final_latency.observe(seconds)
        log.info("session %s final chunks=%d frames=%d ms=%.1f", sid, reply.chunks, reply.frames, 1000 * seconds)


async def send_error_and_close(ws: WebSocket, frame: bytes, exc: ProtocolError) -> None:
    try:
        await ws.send_bytes(frame)
        await ws.close(exc.code, p.one_line(str(exc)))
    except Exception:  # the client is already gone
        pass


def check_content_type(request: Request) -> None:
    """The unary body is protocol frames: ``application/octet-stream``, or no Content-Type at all; anything
    else (a form, JSON, text) is refused with 415 before the body is read."""
    declared = request.headers.get("content-type")
    if declared is not None and declared.split(";", 1)[0].strip().lower() != FRAME_MEDIA_TYPE:
        raise ProtocolError("unsupported_codec", f"Content-Type {p.one_line(declared)[:80]!r} is not "
                                                 f"{FRAME_MEDIA_TYPE}", "content_type")


def check_content_length(request: Request, limit: int) -> None:
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise ProtocolError("bad_frame", "Content-Length is not a number", "bad_length")
        if int(declared) > limit:
            raise ProtocolError("message_too_big", f"body of {declared} bytes exceeds {limit}")


async def body_frames(request: Request, limit: int, limits: ConnectionLimits):
    """The POST body's frames, each yielded as soon as it is whole (the HELLO authenticates before the rest is
    read). Deadlines: the first frame within ``hello_timeout_seconds``; the whole body within
    ``limits.body_deadline`` (a minimum rate); past either, 4408 (HTTP 408). More than ``limit`` bytes: 4413."""
    started = time.monotonic()
    buf, received, more, first = bytearray(), 0, True, True
    while True:
        while len(buf) >= p.FRAME_HEADER.size:
            _, length = p.read_frame_header(buf)
            end = p.FRAME_HEADER.size + length
            if len(buf) < end:
                break
            frame = bytes(buf[:end])
            del buf[:end]
            first = False
            yield frame
        if not more:
            break
        deadline = limits.body_deadline(started, received)
        if first:
            deadline = min(deadline, started + limits.hello_timeout_seconds)
        try:
            message = await asyncio.wait_for(request.receive(), max(0.0, deadline - time.monotonic()))
        except asyncio.TimeoutError:
            what = "the HELLO frame" if first else "the body"
            raise ProtocolError("idle_timeout", f"{what} did not arrive in time ({received} bytes in "
                                                f"{time.monotonic() - started:.1f} s)",
                                "hello_timeout" if first else "body_timeout") from None
        if message["type"] == "http.disconnect":
            raise ClientGone()
        part = message.get("body", b"")
        received += len(part)
        if received > limit:
            raise ProtocolError("message_too_big", f"body exceeds {limit} bytes")
        buf += part
        more = message.get("more_body", False)
    if buf:
        _, length = p.read_frame_header(buf)
        raise ProtocolError("bad_frame", f"the last frame needs {length} body bytes, the body has "
                                         f"{len(buf) - p.FRAME_HEADER.size}", "truncated")


async def unary_session(service: Service, request: Request) -> Response:
    """One utterance in one POST: the frames concatenated; 200 + FINAL, or the error's status + ERROR.

    Admission comes first, from the headers (401/429/503 before any body byte is read; without a header token
    the request waits in the pre-auth pool until its HELLO), then Content-Type (415) and Content-Length (413);
    the body is read frame by frame under its deadlines."""
    started = time.perf_counter()
    sid, outcome, gate, size = "-", "error", None, 0
    try:
        gate = service.admit(bearer_token(request.headers.get("authorization")))
        check_content_type(request)
        check_content_length(request, service.max_body_bytes)
        conversation = service.conversation(gate)
        end = None
        async for frame in body_frames(request, service.max_body_bytes, service.config.connection):
            size += len(frame)
            if end is not None:
                raise ProtocolError("unexpected_message", "frames after END", "after_end")
            step = conversation.receive(frame)
            if conversation.session is not None and sid == "-":
                sid = conversation.session.id.hex()[:16]
            if step.done:
                end = step
            elif step.reply is not None and isinstance(step.reply, p.Partial):
                service.metrics.chunks.labels("duplicate").inc()
            elif step.work is not None:  # a new chunk: partials are not sent on this transport
                service.metrics.chunks.labels("new").inc()
        if end is None:
            raise ProtocolError("unexpected_message", "the body ended before END", "no_end")
        final = await service.compute(conversation.session.served, end.work)
        outcome = "final"
        service.metrics.final_latency.observe(time.perf_counter() - started)
        log.info("session %s http final chunks=%d frames=%d bytes=%d ms=%.1f", sid, final.chunks, final.frames,
                 size, 1000 * (time.perf_counter() - started))
        return frame_response(p.encode_frame(final), 200)
    except ProtocolError as exc:
        return frame_response(service.refusal(exc, sid, "http"), exc.error.http)
    except ClientGone:
        outcome = "disconnected"
        log.info("session %s http client disconnected after %d bytes", sid, size)
        return Response(status_code=400)  # nobody reads it: the connection is gone
    except Exception as exc:
        log.error("session %s http internal error %s", sid, type(exc).__name__)
        log.debug("session %s traceback", sid, exc_info=True)
        err = ProtocolError("internal_error", "internal error")
        return frame_response(service.refusal(err, sid, "http"), 500)
    finally:
        if gate is not None:
            service.release(gate)
        service.metrics.sessions.labels("http", outcome).inc()
