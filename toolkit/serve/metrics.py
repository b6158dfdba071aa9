"""Prometheus metrics of the service, on a registry of its own (several servers can live in one process)."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class ServeMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self):
        r = self.registry = CollectorRegistry()
        self.sessions_active = Gauge("veil_sessions_active", "open sessions (WebSocket connections and HTTP "
                                                              "requests holding a session slot)", registry=r)
        self.connections = Gauge("veil_connections", "open connections past their request head, by phase: "
                                                     "pre_auth (waiting for a HELLO token), session, draining "
                                                     "(a session during shutdown)", ["phase"], registry=r)
        self.open_sockets = Gauge("veil_open_sockets", "open TCP connections of the server, in any phase",
                                  registry=r)
        self.refusals = Counter("veil_connection_refusals", "connections ended below the protocol, by HTTP "
                                                            "status (0: closed without an answer) and reason",
                                ["status", "reason"], registry=r)
        self.sessions = Counter("veil_sessions", "ended sessions by outcome", ["transport", "outcome"], registry=r)
        self.chunks = Counter("veil_chunks", "CHUNK messages received", ["kind"], registry=r)
        self.payload_bytes = Counter("veil_payload_bytes", "payload bytes of new chunks", registry=r)
        self.errors = Counter("veil_errors", "ERROR replies and refusals by code", ["code", "name"], registry=r)
        self.batch_size = Histogram("veil_batch_size", "utterances per suffix call", buckets=BATCH_BUCKETS,
                                    registry=r)
        self.batch_frames = Histogram("veil_batch_padded_frames", "padded frames per suffix call",
                                      buckets=(50, 100, 200, 400, 800, 1600, 3200, 6400, 12800), registry=r)
        self.suffix_seconds = Histogram("veil_suffix_seconds", "wall time of one suffix call",
                                        buckets=LATENCY_BUCKETS, registry=r)
        self.queue_seconds = Histogram("veil_queue_seconds", "time a request waited for its batch",
                                       buckets=LATENCY_BUCKETS, registry=r)
        self.chunk_latency = Histogram("veil_chunk_latency_seconds", "CHUNK received -> PARTIAL sent",
                                       buckets=LATENCY_BUCKETS, registry=r)
        self.final_latency = Histogram("veil_final_latency_seconds", "END received -> FINAL sent",
                                       buckets=LATENCY_BUCKETS, registry=r)

    def observe_batch(self, size: int, padded_frames: int, seconds: float, waits: list[float]) -> None:
        self.batch_size.observe(size)
        self.batch_frames.observe(padded_frames)
        self.suffix_seconds.observe(seconds)
        for w in waits:
            self.queue_seconds.observe(w)

    def watch(self, admission, guard, draining) -> None:
        """Gauges read when scraped: ``admission`` (open_sessions, preauth), ``guard`` (open_sockets),
        ``draining()`` (whether the server is shutting down)."""
        self.sessions_active.set_function(lambda: admission.open_sessions)
        self.connections.labels("pre_auth").set_function(lambda: admission.preauth)
        self.connections.labels("session").set_function(lambda: 0 if draining() else admission.open_sessions)
        self.connections.labels("draining").set_function(lambda: admission.open_sessions if draining() else 0)
        self.open_sockets.set_function(lambda: guard.open_sockets)

    def error(self, code: int, name: str) -> None:
        self.errors.labels(str(code), name).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
