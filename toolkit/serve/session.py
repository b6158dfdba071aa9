"""One utterance on the server, without any I/O: the protocol's state machine (docs/PROTOCOL.md §4).

:class:`Conversation` takes client frames one at a time and returns what to answer. When an answer needs the
suffix, it returns a :class:`Work` item (the embeddings to decode and a ``finish(labels)`` that makes the
reply), so the same logic runs under the WebSocket handler, the HTTP handler (both through the dynamic
batcher) and the test-vector generator (a direct call).

Partial results, capped (``partial_window_frames``): after each new chunk the suffix runs over at most the
newest W frames of the utterance (W = 400 frames = 16 s by default). Frames older than the window keep the
per-frame CTC labels of the last partial that covered them, and the partial text is the greedy collapse of
all labels. A partial therefore costs at most one W-frame suffix call however long the utterance grows. The
final transcript is never windowed: END runs the suffix over the whole utterance, exactly as the local
pipeline does, and its length is capped by ``max_utterance_samples`` (60 s by default). When the last partial
already decoded the whole utterance in one call (it was not windowed), that decode is the final: END then
costs no suffix call.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable

import numpy as np

from toolkit.exporting.manifest import PrefixIdentity
from toolkit.payload import PayloadError, decode as decode_payload, read_header
from toolkit.serve import protocol as p
from toolkit.serve.protocol import ProtocolError
from toolkit.serve.suffix import ServedSuffix


@dataclass(frozen=True)
class SessionLimits:
    max_message_bytes: int = 64 * 1024        # one frame; fp32 50x144 is 28,832 B, fp32 50x256 51,244 B
    max_utterance_seconds: float = 60.0       # caps the final's cost (attention is quadratic in frames)
    partial_window_seconds: float = 16.0      # caps each partial's cost
    idle_timeout_seconds: float = 30.0        # no message for this long ends the session (4408)

    def max_utterance_samples(self, sample_rate: int) -> int:
        return int(round(self.max_utterance_seconds * sample_rate))

    def partial_window_frames(self, sample_rate: int, frame_samples: int) -> int:
        return max(1, int(round(self.partial_window_seconds * sample_rate / frame_samples)))


class Session:
    """The utterance of one accepted HELLO: chunks in sequence, their frames, the partial labels."""

    def __init__(self, session_id: bytes, hello: p.Hello, served: ServedSuffix, limits: SessionLimits):
        self.id = session_id
        self.hello = hello
        self.served = served
        self.limits = limits
        self.chunk = served.chunk
        self.dim = served.dim
        self.max_samples = limits.max_utterance_samples(self.chunk.sample_rate)
        self.window = limits.partial_window_frames(self.chunk.sample_rate, self.chunk.frame_samples)
        self.digests: list[bytes] = []        # per received seq: what a resend must repeat
        self.frames: list[np.ndarray] = []    # per chunk: its valid frames (n_i, d)
        self.samples = 0                      # valid samples received
        self.short_seen = False               # a chunk with valid < chunk_samples ends the utterance
        self.labels = np.zeros(0, np.int64)   # partial labels of every frame so far
        self.labels_exact = True              # the labels come from one suffix call over the whole utterance
        self.bytes_received = 0

    @property
    def chunks(self) -> int:
        return len(self.digests)

    def ready(self) -> p.Ready:
        return p.Ready(self.id, self.limits.max_message_bytes, self.max_samples, self.window,
                       int(round(self.limits.idle_timeout_seconds * 1000)))

    def add_chunk(self, chunk: p.Chunk) -> bool:
        """Check and store a chunk; False for an identical resend (counted once). The checks run in the order
        docs/PROTOCOL.md §4.3 lists, so every implementation reports the same code for the same bytes."""
        g = self.chunk
        if not 1 <= chunk.valid_samples <= g.chunk_samples:
            raise ProtocolError("bad_chunk", f"chunk {chunk.seq}: valid samples {chunk.valid_samples} outside "
                                             f"1..{g.chunk_samples}", "valid_samples")
        digest = hashlib.blake2b(p.CHUNK_FIXED.pack(chunk.seq, chunk.valid_samples) + chunk.payload,
                                 digest_size=16).digest()
        if chunk.seq < self.chunks:
            if digest != self.digests[chunk.seq]:
                raise ProtocolError("resend_mismatch", f"chunk {chunk.seq} was resent with different bytes")
            return False
        if chunk.seq > self.chunks:
            raise ProtocolError("sequence_gap", f"chunk {chunk.seq} arrived after chunk {self.chunks - 1}; "
                                                f"expected {self.chunks}")
        if self.short_seen:
            raise ProtocolError("bad_chunk", f"chunk {chunk.seq} follows a short chunk, which must be the last",
                                "after_short")
        if self.samples + chunk.valid_samples > self.max_samples:
            raise ProtocolError("utterance_too_long", f"utterance exceeds {self.limits.max_utterance_seconds:g} s "
                                                      f"({self.max_samples} samples)")
        frames = self._decode(chunk)
        self.digests.append(digest)
        self.frames.append(frames)
        self.samples += chunk.valid_samples
        self.short_seen = chunk.valid_samples < g.chunk_samples
        self.bytes_received += len(chunk.payload)
        self.labels_exact = False
        return True

    def _decode(self, chunk: p.Chunk) -> np.ndarray:
        g = self.chunk
        try:
            _, codec, _, frames, dim = read_header(chunk.payload)
            if codec != self.hello.codec:
                raise ProtocolError("bad_payload", f"chunk {chunk.seq}: payload codec {codec}, the hello said "
                                                   f"{self.hello.codec}", "codec_mismatch")
            values = decode_payload(chunk.payload, self.served.codebook if codec == "vq" else None)
        except PayloadError as exc:
            raise ProtocolError("bad_payload", f"chunk {chunk.seq}: {exc}", exc.reason) from None
        if values.shape[1] != self.dim:
            raise ProtocolError("bad_payload", f"chunk {chunk.seq}: payload has {values.shape[1]} dims, the prefix "
                                               f"{self.dim}", "dim_mismatch")
        valid_frames = g.frames_for(chunk.valid_samples)
        if frames != g.chunk_frames and not (chunk.valid_samples < g.chunk_samples and frames == valid_frames):
            raise ProtocolError("bad_payload", f"chunk {chunk.seq}: payload has {frames} frames, expected "
                                               f"{g.chunk_frames}" + (f" or {valid_frames}" if chunk.valid_samples <
                                                                      g.chunk_samples else ""), "frames_mismatch")
        return values[:valid_frames]

    # ---- the suffix's inputs and what its labels become ----------------------------------------------------
    def partial_window(self) -> tuple[np.ndarray, int]:
        """The embeddings a partial decodes, and the frame where that window starts."""
        total = sum(len(f) for f in self.frames)
        start = max(0, total - self.window)
        picked, offset = [], 0
        for f in self.frames:
            lo, hi = max(start - offset, 0), len(f)
            if offset + len(f) > start:
                picked.append(f[lo:hi])
            offset += len(f)
        return (np.concatenate(picked) if picked else np.zeros((0, self.dim), np.float32)), start

    def apply_partial(self, seq: int, start: int, window_labels: np.ndarray) -> p.Partial:
        total = start + len(window_labels)
        labels = np.zeros(total, np.int64)
        keep = min(start, len(self.labels))
        labels[:keep] = self.labels[:keep]
        labels[start:] = window_labels
        self.labels = labels
        self.labels_exact = start == 0
        return self.current_partial(seq, duplicate=False, windowed=start > 0)

    def current_partial(self, seq: int, duplicate: bool, windowed: bool | None = None) -> p.Partial:
        if windowed is None:
            windowed = len(self.labels) > self.window
        flags = (p.PARTIAL_DUPLICATE if duplicate else 0) | (p.PARTIAL_WINDOWED if windowed else 0)
        return p.Partial(seq, self.chunks, len(self.labels), flags, self.served.text(self.labels))

    def utterance(self) -> np.ndarray:
        if not self.frames:
            return np.zeros((0, self.dim), np.float32)
        return np.concatenate(self.frames)

    def final(self, labels: np.ndarray) -> p.Final:
        return p.Final(self.chunks, len(labels), self.served.text(labels))


@dataclass
class Work:
    """Embeddings for one suffix call and what to answer with its labels."""
    embeddings: np.ndarray
    finish: Callable[[np.ndarray], p.Message]
    kind: str  # "partial" | "final"


@dataclass
class Step:
    reply: p.Message | None = None
    work: Work | None = None
    done: bool = False  # the conversation is over after this reply


class Gate:
    """Admission checks the server makes beyond the protocol itself: auth and per-token limits at HELLO, rate
    limits per message. The default admits everything (the test-vector generator; tests of the state machine)."""

    def admit_hello(self, hello: p.Hello) -> None:
        pass

    def admit_message(self) -> None:
        pass


class Conversation:
    """The protocol on one connection: HELLO, then CHUNKs, then END; every refusal is a ProtocolError whose
    ERROR frame ends the conversation (the caller sends it and closes)."""

    def __init__(self, models: dict[PrefixIdentity, ServedSuffix], limits: SessionLimits,
                 new_session_id: Callable[[], bytes], gate: Gate | None = None):
        self.models = models
        self.limits = limits
        self.new_session_id = new_session_id
        self.gate = gate or Gate()
        self.session: Session | None = None
        self.over = False

    def receive(self, frame: bytes) -> Step:
        if self.over:
            raise ProtocolError("unexpected_message", "the session is over")
        message = p.decode_frame(frame)
        if isinstance(message, p.Hello):
            ready = self._hello(message)
            self.gate.admit_message()  # counted once the HELLO named its token
            return Step(reply=ready)
        self.gate.admit_message()
        if self.session is None:
            raise ProtocolError("unexpected_message", f"{message.type.name} before HELLO")
        if isinstance(message, p.Chunk):
            return self._chunk(message)
        if isinstance(message, p.End):
            return self._end(message)
        raise ProtocolError("unexpected_message", f"{message.type.name} is a server message")

    def _hello(self, hello: p.Hello) -> p.Ready:
        if self.session is not None:
            raise ProtocolError("unexpected_message", "a second HELLO in one session")
        self.gate.admit_hello(hello)
        identity = PrefixIdentity(hello.checkpoint_sha256.hex(), hello.split_layer)
        served = self.models.get(identity)
        if served is None:
            served_ids = ", ".join(i.short for i in self.models) or "none"
            raise ProtocolError("unknown_prefix", f"no suffix for prefix {identity.short} (served: {served_ids})")
        g = served.chunk
        asked = (hello.sample_rate, hello.chunk_samples, hello.frame_samples, hello.dim)
        if asked != (g.sample_rate, g.chunk_samples, g.frame_samples, served.dim):
            raise ProtocolError("bad_geometry", f"hello geometry rate/chunk/frame/dim {'/'.join(map(str, asked))} "
                                                f"differs from the prefix's {g.sample_rate}/{g.chunk_samples}/"
                                                f"{g.frame_samples}/{served.dim}")
        if hello.codec not in served.codecs:
            raise ProtocolError("unsupported_codec", f"codec {hello.codec} is not served for prefix {identity.short} "
                                                     f"(codecs: {', '.join(served.codecs)})", "codec_not_served")
        self.session = Session(self.new_session_id(), hello, served, self.limits)
        return self.session.ready()

    def _chunk(self, chunk: p.Chunk) -> Step:
        s = self.session
        if not s.add_chunk(chunk):
            return Step(reply=s.current_partial(chunk.seq, duplicate=True))
        window, start = s.partial_window()
        return Step(work=Work(window, lambda labels: s.apply_partial(chunk.seq, start, labels), "partial"))

    def _end(self, end: p.End) -> Step:
        s = self.session
        if end.chunks != s.chunks:
            raise ProtocolError("sequence_gap", f"END counts {end.chunks} chunks, {s.chunks} were received",
                                "end_count")
        self.over = True
        if s.labels_exact:  # the last partial already decoded the whole utterance: that decode is the final
            return Step(reply=s.final(s.labels), done=True)
        return Step(work=Work(s.utterance(), s.final, "final"), done=True)


def run_direct(conversation: Conversation, frames: list[bytes]) -> list[p.Message]:
    """Drive a conversation with direct (unbatched) suffix calls; stops at the first error, as a server does.
    The reference behaviour that the test vectors record."""
    replies: list[p.Message] = []
    for frame in frames:
        try:
            step = conversation.receive(frame)
        except ProtocolError as exc:
            replies.append(p.error_frame(exc))
            conversation.over = True
            break
        if step.work is not None:
            served = conversation.session.served
            labels = served.labels([step.work.embeddings])[0]
            replies.append(step.work.finish(labels))
        else:
            replies.append(step.reply)
        if step.done:
            break
    return replies
