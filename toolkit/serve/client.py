"""The reference client: what a phone does, in Python. The Android and iOS cores mirror it.

    manifest = ExportManifest.read("exports/k6-d16-n0.5-k6", only=["executorch"])  # identity, geometry
    prefix = PrefixRunner(manifest, backend="executorch")        # the artifact in its real runtime
    channel = PhoneChannel(manifest)                              # what may leave the phone: the manifest says
    with StreamClient("ws://127.0.0.1:8765", manifest, channel.codec, token) as stream:
        for seq, valid, emb, _ in prefix.chunks(pcm):             # 2-s chunks, the last zero-padded
            partial = stream.send_chunk(seq, valid, channel.encode(emb))
        final = stream.end()

Every refusal by the server surfaces as :class:`ServerRefused` with the protocol's typed code: from an ERROR
frame, from the HTTP status of a refused upgrade (its body is an ERROR frame), or from the WebSocket close code.
"""
from __future__ import annotations

import os
import ssl
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

import export as backends
from toolkit import payload
from toolkit.chunking import chunk_pcm
from toolkit.errors import VeilError
from toolkit.exporting.manifest import ExportManifest
from toolkit.serve import protocol as p

CLOSE_NAMES = {1000: "normal", 1001: "going_away", 1006: "connection_lost", 1009: "message_too_big",
               1011: "internal_error", 1012: "service_restart"}


class ServerRefused(VeilError):
    """The server ended the session with a typed code (an ERROR frame, an HTTP status, or a close code)."""

    def __init__(self, code: int, name: str, message: str):
        super().__init__(f"server refused: {code} {name}: {message}")
        self.code, self.name, self.detail = code, name, message


def refused_by_frame(data: bytes, fallback_code: int, fallback_name: str) -> ServerRefused:
    try:
        m = p.decode_frame(data)
        if isinstance(m, p.Error):
            return ServerRefused(m.code, m.name, m.message)
    except p.ProtocolError:
        pass
    return ServerRefused(fallback_code, fallback_name, data[:120].decode(errors="replace"))


def tls_context(ca_file: str | None) -> ssl.SSLContext | None:
    """A context trusting ``ca_file`` (e.g. a self-signed server certificate), or the system CAs."""
    return ssl.create_default_context(cafile=ca_file) if ca_file else None


def websocket_url(server: str) -> str:
    base = server.rstrip("/")
    if base.startswith("http://"):
        base = "ws://" + base[len("http://"):]
    elif base.startswith("https://"):
        base = "wss://" + base[len("https://"):]
    return base if base.endswith("/v1/stream") else base + "/v1/stream"


def http_url(server: str) -> str:
    base = server.rstrip("/").replace("ws://", "http://", 1).replace("wss://", "https://", 1)
    return base.removesuffix("/v1/stream") + "/v1/transcribe"


class PhoneChannel:
    """What leaves the phone for an export, as its manifest's ``bottleneck`` section decides: the one place a
    client turns the prefix's output into a payload message.

    - A vq bottleneck export sends the indices of the nearest codewords of its shipped codebook (codec ``vq``)
      and nothing else: a continuous codec would send the vectors the codebook exists to withhold.
    - A noisy bottleneck export (``noise_std`` S) adds N(0, S²) to every value before the codec, on the phone,
      from the OS's secure random source (``rng``, a numpy Generator, only where a test or an evaluation needs
      the noise reproducible).
    - Any other export: ``codec`` as asked (default int8)."""

    def __init__(self, manifest: ExportManifest, codec: str | None = None, rng: np.random.Generator | None = None):
        self.codebook = manifest.codebook() if manifest.payload_codec == "vq" else None
        self.noise_std = manifest.noise_std
        codec = codec or manifest.payload_codec
        if self.codebook is not None and codec != "vq":
            raise VeilError(f"codec {codec}: {manifest.path} is a vq bottleneck export; its phone sends codebook "
                            f"indices only (codec vq), a continuous codec would bypass the bottleneck")
        if self.codebook is None and codec == "vq":
            raise VeilError(f"codec vq: {manifest.path} has no codebook (its payload codec is "
                            f"{manifest.payload_codec})")
        self.codec, self.rng = codec, rng

    def normal(self, shape: tuple) -> np.ndarray:
        """Standard normal values: from ``rng``, else Box-Muller on the OS's secure random bytes."""
        if self.rng is not None:
            return self.rng.standard_normal(shape)
        n = int(np.prod(shape))
        u = (np.frombuffer(os.urandom(8 * (n + 1)), dtype="<u8")[: 2 * ((n + 1) // 2)] >> 11) * 2.0 ** -53
        u1, u2 = 1.0 - u[0::2], u[1::2]                       # u1 in (0, 1]: log(u1) is finite
        r = np.sqrt(-2.0 * np.log(u1))
        return np.concatenate([r * np.cos(2 * np.pi * u2), r * np.sin(2 * np.pi * u2)])[:n].reshape(shape)

    def encode(self, emb: np.ndarray) -> bytes:
        """(chunk_frames, dim) prefix output -> the payload message that leaves the phone."""
        if self.codebook is not None:
            return payload.encode_vq(emb, self.codebook)
        if self.noise_std:
            emb = (emb + self.noise_std * self.normal(emb.shape)).astype(np.float32)
        return payload.encode(emb, self.codec)


def hello_for(manifest: ExportManifest, codec: str, token: str = "") -> p.Hello:
    """The HELLO of a session for the prefix of ``manifest``: its identity and chunk geometry."""
    identity, chunk = manifest.prefix_identity, manifest.chunk
    return p.Hello(identity.raw_sha256, identity.split_layer, codec, chunk.sample_rate, chunk.chunk_samples,
                   chunk.frame_samples, manifest.embedding_dim, token)


class PrefixRunner:
    """The exported prefix run chunk by chunk in its real runtime (``export.load``), exactly as a phone does.
    ``manifest``: the export, read with :meth:`ExportManifest.read` (artifacts checked there)."""

    def __init__(self, manifest: ExportManifest, backend: str = "executorch"):
        found = [art for entry, art in manifest.artifacts() if art.backend == backend]
        if not found:
            have = sorted({e.get("backend", "?") for e in manifest.entries()})
            raise VeilError(f"{manifest.path}: no {backend} artifact (have: {', '.join(have)})")
        self.artifact = found[0]
        try:
            self.runner = backends.load(self.artifact)
        except backends.NeedsMacOS:
            raise VeilError(f"{self.artifact.path}: {backend} runs only on macOS; stream with an android "
                            f"artifact here (--backend)") from None
        self.chunk = manifest.chunk

    @property
    def name(self) -> str:
        return f"{self.artifact.backend} {self.artifact.recipe}"

    def chunks(self, pcm: np.ndarray):
        """Yield (seq, valid samples, (chunk_frames, d) embeddings, prefix seconds) per 2-s chunk."""
        valid = self.chunk.valid_samples(len(pcm))
        for seq, chunk in enumerate(chunk_pcm(pcm, self.chunk.chunk_samples)):
            t0 = time.perf_counter()
            emb = self.runner(chunk)[0]
            yield seq, valid[seq], emb, time.perf_counter() - t0


class StreamClient:
    """One utterance over the WebSocket transport, one request/reply at a time."""

    def __init__(self, server: str, manifest: ExportManifest, codec: str, token: str | None,
                 token_in_hello: bool = False, ca_file: str | None = None, timeout: float = 30.0):
        self.url = websocket_url(server)
        self.hello = hello_for(manifest, codec, token if (token and token_in_hello) else "")
        self.headers = {"Authorization": f"Bearer {token}"} if token and not token_in_hello else {}
        self.ssl = tls_context(ca_file) if self.url.startswith("wss://") else None
        self.timeout = timeout
        self.ws = None
        self.ready: p.Ready | None = None
        self.chunks_sent = 0

    def __enter__(self) -> "StreamClient":
        try:
            self.ws = connect(self.url, additional_headers=self.headers, ssl=self.ssl, proxy=None, compression=None,
                              open_timeout=self.timeout, max_size=2 ** 22, legacy=True)
        except InvalidStatus as exc:
            raise refused_by_frame(exc.response.body or b"", exc.response.status_code, "http_status") from None
        except OSError as exc:
            raise VeilError(f"{self.url}: cannot connect ({exc.strerror or exc})") from None
        self.ready = self._request(self.hello, p.Ready)
        return self

    def __exit__(self, *exc) -> None:
        if self.ws is not None:
            self.ws.close()

    def send(self, frame: bytes) -> None:
        self.ws.send(frame)

    def receive(self):
        """The next server message; a close without an ERROR frame becomes ServerRefused with its close code."""
        try:
            data = self.ws.recv(timeout=self.timeout)
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd else 1006
            raise ServerRefused(code, p.ERRORS_BY_CODE[code].name if code in p.ERRORS_BY_CODE
                                else CLOSE_NAMES.get(code, "closed"), exc.rcvd.reason if exc.rcvd else "") from None
        except TimeoutError:
            raise VeilError(f"{self.url}: no reply within {self.timeout:g} s") from None
        if isinstance(data, str):
            raise VeilError(f"{self.url}: the server sent a text message; not a Veil server?")
        m = p.decode_frame(data)
        if isinstance(m, p.Error):
            raise ServerRefused(m.code, m.name, m.message)
        return m

    def _request(self, message: p.Message, expect: type):
        self.send(p.encode_frame(message))
        reply = self.receive()
        if not isinstance(reply, expect):
            raise VeilError(f"{self.url}: expected {expect.__name__}, got {type(reply).__name__}")
        return reply

    def send_chunk(self, seq: int, valid_samples: int, payload: bytes) -> p.Partial:
        self.chunks_sent = max(self.chunks_sent, seq + 1)
        return self._request(p.Chunk(seq, valid_samples, payload), p.Partial)

    def end(self) -> p.Final:
        return self._request(p.End(self.chunks_sent), p.Final)


def transcribe_http(server: str, frames: list[bytes], token: str | None, ca_file: str | None = None,
                    timeout: float = 60.0) -> p.Final:
    """The unary transport: one POST of the concatenated frames -> FINAL (or ServerRefused)."""
    url = http_url(server)
    headers = {"Content-Type": "application/octet-stream"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=b"".join(frames), headers=headers, method="POST")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                         urllib.request.HTTPSHandler(context=tls_context(ca_file)))
    try:
        with opener.open(request, timeout=timeout) as response:
            data = response.read()
    except urllib.error.HTTPError as exc:
        raise refused_by_frame(exc.read(), exc.code, "http_status") from None
    except urllib.error.URLError as exc:
        raise VeilError(f"{url}: cannot connect ({exc.reason})") from None
    m = p.decode_frame(data)
    if not isinstance(m, p.Final):
        raise VeilError(f"{url}: expected FINAL, got {type(m).__name__}")
    return m


@dataclass
class ChunkResult:
    seq: int
    valid_samples: int
    payload_bytes: int
    prefix_ms: float
    round_trip_ms: float
    partial: str


@dataclass
class UtteranceResult:
    audio: str
    seconds: float
    codec: str
    backend: str
    transport: str
    chunks: list[ChunkResult] = field(default_factory=list)
    final: str = ""
    final_ms: float = 0.0
    total_ms: float = 0.0
    embeddings: np.ndarray | None = None  # what the prefix emitted (before the codec), valid frames only

    def to_json(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k not in ("chunks", "embeddings")}
        d["chunks"] = [c.__dict__ for c in self.chunks]
        return d


def stream_utterance(server: str, manifest: ExportManifest, prefix: PrefixRunner, pcm: np.ndarray, codec: str | None,
                     token: str | None, audio: str = "", ca_file: str | None = None, token_in_hello: bool = False,
                     transport: str = "ws", realtime: bool = False) -> UtteranceResult:
    """Run the prefix chunk by chunk and stream each chunk as it is ready; partials and final with timings."""
    channel = PhoneChannel(manifest, codec)  # the manifest's bottleneck decides what may leave the phone
    codec = channel.codec
    g = manifest.chunk
    result = UtteranceResult(audio, len(pcm) / g.sample_rate, codec, prefix.name, transport)
    started = time.perf_counter()
    frames_kept = []
    if transport == "http":
        frames = [p.encode_frame(hello_for(manifest, codec, token if token_in_hello else ""))]
        for seq, valid, emb, prefix_s in prefix.chunks(pcm):
            message = channel.encode(emb)
            frames.append(p.encode_frame(p.Chunk(seq, valid, message)))
            frames_kept.append(emb[: g.frames_for(valid)])
            result.chunks.append(ChunkResult(seq, valid, len(message), 1000 * prefix_s, 0.0, ""))
        frames.append(p.encode_frame(p.End(len(result.chunks))))
        t0 = time.perf_counter()
        final = transcribe_http(server, frames, None if token_in_hello else token, ca_file)
        result.final_ms = 1000 * (time.perf_counter() - t0)
    else:
        with StreamClient(server, manifest, codec, token, token_in_hello, ca_file) as stream:
            for seq, valid, emb, prefix_s in prefix.chunks(pcm):
                if realtime:  # a phone sends a chunk once its 2 s of audio have been recorded
                    time.sleep(max(0.0, started + (seq + 1) * g.chunk_samples / g.sample_rate - time.perf_counter()))
                message = channel.encode(emb)
                t0 = time.perf_counter()
                partial = stream.send_chunk(seq, valid, message)
                frames_kept.append(emb[: g.frames_for(valid)])
                result.chunks.append(ChunkResult(seq, valid, len(message), 1000 * prefix_s,
                                                 1000 * (time.perf_counter() - t0), partial.text))
            t0 = time.perf_counter()
            final = stream.end()
            result.final_ms = 1000 * (time.perf_counter() - t0)
    result.final = final.text
    result.total_ms = 1000 * (time.perf_counter() - started)
    result.embeddings = np.concatenate(frames_kept)
    return result


def read_token(token: str | None, token_file: str | None) -> str | None:
    if token_file:
        path = Path(token_file)
        if not path.is_file():
            raise VeilError(f"{path}: token file not found")
        return path.read_text().strip()
    return token
