"""The Veil streaming protocol, version 1: the frames phones and the suffix service exchange.

Every message, in both directions and on both transports (one WebSocket binary message per frame; or all
frames of an utterance concatenated in one HTTP body), is one frame::

    offset size  field
    0      4     magic b"VSTR"
    4      1     protocol version (1)
    5      1     message type (HELLO 0x01, CHUNK 0x02, END 0x03; READY 0x11, PARTIAL 0x12, FINAL 0x13, ERROR 0x1F)
    6      2     flags, uint16 LE, 0 in version 1 (a receiver refuses anything else)
    8      4     body length N, uint32 LE
    12     N     body (layout per type, below and in docs/PROTOCOL.md)

All integers are little-endian, text is UTF-8. The document ``docs/PROTOCOL.md`` is the specification; this
module is its reference implementation, and ``toolkit/serve/vectors.py`` writes the cross-language test
vectors from it. Decoding never trusts a length: every refusal is a :class:`ProtocolError` carrying one of the
typed error codes (``ERRORS``) and a machine-readable ``reason``.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from toolkit.errors import VeilError
from toolkit.payload import CODEC_NAMES, CODECS_V2

MAGIC = b"VSTR"
VERSION = 1
FRAME_HEADER = struct.Struct("<4sBBHI")
MAX_TEXT_BYTES = 1 << 20  # an error or transcript longer than this is not a Veil frame


class MessageType(IntEnum):
    HELLO = 0x01
    CHUNK = 0x02
    END = 0x03
    READY = 0x11
    PARTIAL = 0x12
    FINAL = 0x13
    ERROR = 0x1F


CLIENT_TYPES = (MessageType.HELLO, MessageType.CHUNK, MessageType.END)
SERVER_TYPES = (MessageType.READY, MessageType.PARTIAL, MessageType.FINAL, MessageType.ERROR)


@dataclass(frozen=True)
class ErrorCode:
    """A typed error: ``code`` is both the ERROR frame's code and the WebSocket close code; ``http`` is the
    status of the unary transport's response."""
    code: int
    name: str
    http: int
    meaning: str


ERRORS = {e.name: e for e in [
    ErrorCode(4400, "bad_frame", 400, "not a valid protocol frame (magic, flags, length, body layout, UTF-8)"),
    ErrorCode(4401, "unauthorized", 401, "no bearer token, or a token the server does not know"),
    ErrorCode(4402, "unsupported_version", 400, "the frame's protocol version is not one the server speaks"),
    ErrorCode(4403, "bad_geometry", 422, "the hello's sample rate, chunk or frame size or dim differ from the "
                                         "served prefix's"),
    ErrorCode(4404, "unknown_prefix", 422, "no suffix is served for the hello's checkpoint sha256 + split layer"),
    ErrorCode(4405, "unexpected_message", 400, "a message type that is not allowed in this state or direction"),
    ErrorCode(4406, "unsupported_codec", 415, "unknown codec id, vq for a model without a codebook, or a continuous codec for one with a codebook"),
    ErrorCode(4407, "bad_payload", 400, "the chunk's VPL payload does not decode, or its codec/shape differ from "
                                        "the hello"),
    ErrorCode(4408, "idle_timeout", 408, "no message within the idle timeout"),
    ErrorCode(4409, "sequence_gap", 409, "a chunk skipped a sequence number, or END counts other chunks than "
                                         "were received"),
    ErrorCode(4410, "resend_mismatch", 409, "a resent sequence number carries different bytes"),
    ErrorCode(4411, "bad_chunk", 400, "valid samples outside 1..chunk_samples, or a chunk after a short one"),
    ErrorCode(4413, "message_too_big", 413, "a message (WebSocket) or body (HTTP) over the server's limit"),
    ErrorCode(4414, "utterance_too_long", 413, "the utterance exceeds the server's maximum duration"),
    ErrorCode(4429, "rate_limited", 429, "the token sent more messages per second than its rate limit"),
    ErrorCode(4430, "token_busy", 429, "the token already has its maximum number of open sessions"),
    ErrorCode(4500, "internal_error", 500, "the server failed; the session is lost"),
    ErrorCode(4502, "shutting_down", 503, "the server is shutting down and ended the session"),
    ErrorCode(4503, "server_busy", 503, "the server has its maximum number of open sessions"),
]}
ERRORS_BY_CODE = {e.code: e for e in ERRORS.values()}


class ProtocolError(VeilError):
    """A frame or message the protocol refuses: ``error`` is the typed code, ``reason`` a finer machine-readable
    cause (e.g. ``bad_magic``), the message one human line."""

    def __init__(self, name: str, message: str, reason: str = ""):
        super().__init__(message)
        self.error = ERRORS[name]
        self.reason = reason or name

    @property
    def code(self) -> int:
        return self.error.code


# ---- messages -----------------------------------------------------------------------------------------------

HELLO_FIXED = struct.Struct("<32sHBBIIIHH")   # sha256, split, codec, reserved, rate, chunk, frame, dim, token len
CHUNK_FIXED = struct.Struct("<II")            # seq, valid samples
END_BODY = struct.Struct("<I")                # chunk count
READY_BODY = struct.Struct("<16sIIII")        # session id, max message bytes, max utterance samples,
                                              # partial window frames, idle timeout ms
PARTIAL_FIXED = struct.Struct("<IIIB3x")      # seq, chunks, frames, flags, 3 reserved
FINAL_FIXED = struct.Struct("<II")            # chunks, frames
ERROR_FIXED = struct.Struct("<H")             # code

PARTIAL_DUPLICATE = 0x01   # the chunk was a resend already counted; the text is the current partial
PARTIAL_WINDOWED = 0x02    # frames older than the partial window kept their labels from earlier partials


@dataclass(frozen=True)
class Hello:
    """First client message: protocol version (in the frame header), the prefix identity (checkpoint sha256 +
    split layer), the codec and the chunk geometry; optionally the bearer token."""
    checkpoint_sha256: bytes
    split_layer: int
    codec: str
    sample_rate: int
    chunk_samples: int
    frame_samples: int
    dim: int
    token: str = ""
    type = MessageType.HELLO

    def body(self) -> bytes:
        token = self.token.encode()
        return HELLO_FIXED.pack(self.checkpoint_sha256, self.split_layer, CODECS_V2[self.codec], 0,
                                self.sample_rate, self.chunk_samples, self.frame_samples, self.dim,
                                len(token)) + token


@dataclass(frozen=True)
class Chunk:
    """One 2-s chunk: its sequence number (0, 1, ...), its valid (not zero-padded) samples, a VPL payload."""
    seq: int
    valid_samples: int
    payload: bytes
    type = MessageType.CHUNK

    def body(self) -> bytes:
        return CHUNK_FIXED.pack(self.seq, self.valid_samples) + self.payload


@dataclass(frozen=True)
class End:
    """Last client message: how many chunks the utterance has; asks for the final transcript."""
    chunks: int
    type = MessageType.END

    def body(self) -> bytes:
        return END_BODY.pack(self.chunks)


@dataclass(frozen=True)
class Ready:
    """The server accepted the hello: the session id and the limits that apply to it."""
    session_id: bytes
    max_message_bytes: int
    max_utterance_samples: int
    partial_window_frames: int
    idle_timeout_ms: int
    type = MessageType.READY

    def body(self) -> bytes:
        return READY_BODY.pack(self.session_id, self.max_message_bytes, self.max_utterance_samples,
                               self.partial_window_frames, self.idle_timeout_ms)


@dataclass(frozen=True)
class Partial:
    """The server's answer to each chunk: the transcript of the utterance so far."""
    seq: int
    chunks: int
    frames: int
    flags: int
    text: str
    type = MessageType.PARTIAL

    def body(self) -> bytes:
        return PARTIAL_FIXED.pack(self.seq, self.chunks, self.frames, self.flags) + self.text.encode()


@dataclass(frozen=True)
class Final:
    """The server's answer to END: the transcript of the whole utterance (exact, never windowed)."""
    chunks: int
    frames: int
    text: str
    type = MessageType.FINAL

    def body(self) -> bytes:
        return FINAL_FIXED.pack(self.chunks, self.frames) + self.text.encode()


@dataclass(frozen=True)
class Error:
    """A typed error; the session ends with it (WebSocket close code = ``code``)."""
    code: int
    message: str
    type = MessageType.ERROR

    def body(self) -> bytes:
        return ERROR_FIXED.pack(self.code) + self.message.encode()

    @property
    def name(self) -> str:
        e = ERRORS_BY_CODE.get(self.code)
        return e.name if e else f"unknown_{self.code}"


Message = Hello | Chunk | End | Ready | Partial | Final | Error


def error_frame(exc: ProtocolError) -> Error:
    return Error(exc.code, one_line(str(exc)))


def one_line(text: str, limit: int = 120) -> str:
    """An error message fit for a WebSocket close reason (<= 123 bytes UTF-8): one line, cut at ``limit`` bytes."""
    line = " ".join(text.split())
    data = line.encode()[:limit]
    return data.decode(errors="ignore")


# ---- encoding and decoding ----------------------------------------------------------------------------------

def encode_frame(message: Message, version: int = VERSION, flags: int = 0) -> bytes:
    body = message.body()
    return FRAME_HEADER.pack(MAGIC, version, int(message.type), flags, len(body)) + body


def read_frame_header(data: bytes | memoryview, offset: int = 0) -> tuple[int, int]:
    """Check the 12-byte header at ``offset``; returns (message type, body length). The body may be absent."""
    if len(data) - offset < FRAME_HEADER.size:
        raise ProtocolError("bad_frame", f"frame of {len(data) - offset} bytes is shorter than its "
                                         f"{FRAME_HEADER.size}-byte header", "short_header")
    magic, version, mtype, flags, length = FRAME_HEADER.unpack_from(data, offset)
    if magic != MAGIC:
        raise ProtocolError("bad_frame", f"frame does not start with {MAGIC!r} (got {bytes(magic)!r})", "bad_magic")
    if version != VERSION:
        raise ProtocolError("unsupported_version", f"protocol version {version} is not supported (this server "
                                                   f"speaks {VERSION})", "bad_version")
    if flags != 0:
        raise ProtocolError("bad_frame", f"frame flags are {flags:#06x}; version 1 defines none", "nonzero_flags")
    if mtype not in MessageType._value2member_map_:
        raise ProtocolError("bad_frame", f"message type {mtype:#04x} is unknown", "unknown_type")
    return mtype, length


def decode_frame(data: bytes) -> Message:
    """Exactly one frame (one WebSocket message) -> its message; the body length must match exactly."""
    mtype, length = read_frame_header(data)
    if len(data) - FRAME_HEADER.size != length:
        raise ProtocolError("bad_frame", f"frame header says {length} body bytes, the message has "
                                         f"{len(data) - FRAME_HEADER.size}", "length_mismatch")
    return decode_body(MessageType(mtype), memoryview(data)[FRAME_HEADER.size:])


def split_frames(data: bytes) -> list[bytes]:
    """A concatenation of frames (an HTTP body) -> one bytes object per frame; a cut frame is refused."""
    frames, offset = [], 0
    while offset < len(data):
        _, length = read_frame_header(data, offset)
        end = offset + FRAME_HEADER.size + length
        if end > len(data):
            raise ProtocolError("bad_frame", f"frame at byte {offset} needs {length} body bytes, the body has "
                                             f"{len(data) - offset - FRAME_HEADER.size}", "truncated")
        frames.append(bytes(data[offset:end]))
        offset = end
    return frames


def _text(body: memoryview) -> str:
    if len(body) > MAX_TEXT_BYTES:
        raise ProtocolError("bad_frame", f"text of {len(body)} bytes exceeds {MAX_TEXT_BYTES}", "long_body")
    try:
        return bytes(body).decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("bad_frame", "text is not valid UTF-8", "bad_text") from None


def _need(body: memoryview, size: int, what: str, exact: bool = False) -> None:
    if len(body) < size or (exact and len(body) != size):
        want = f"{size}" if exact else f"at least {size}"
        raise ProtocolError("bad_frame", f"{what} body needs {want} bytes, got {len(body)}",
                            "short_body" if len(body) < size else "long_body")


def decode_body(mtype: MessageType, body: memoryview) -> Message:
    name = mtype.name
    if mtype == MessageType.HELLO:
        _need(body, HELLO_FIXED.size, name)
        sha, split, codec_id, reserved, rate, chunk, frame, dim, token_len = HELLO_FIXED.unpack_from(body)
        _need(body, HELLO_FIXED.size + token_len, name, exact=True)
        if reserved != 0:
            raise ProtocolError("bad_frame", f"HELLO reserved byte is {reserved}; it must be 0", "nonzero_reserved")
        if codec_id not in CODEC_NAMES:
            raise ProtocolError("unsupported_codec", f"codec id {codec_id} is unknown (codecs: "
                                f"{', '.join(f'{v} {k}' for k, v in CODECS_V2.items())})", "unknown_codec")
        return Hello(bytes(sha), split, CODEC_NAMES[codec_id], rate, chunk, frame, dim,
                     _text(body[HELLO_FIXED.size:]))
    if mtype == MessageType.CHUNK:
        _need(body, CHUNK_FIXED.size, name)
        seq, valid = CHUNK_FIXED.unpack_from(body)
        return Chunk(seq, valid, bytes(body[CHUNK_FIXED.size:]))
    if mtype == MessageType.END:
        _need(body, END_BODY.size, name, exact=True)
        return End(*END_BODY.unpack_from(body))
    if mtype == MessageType.READY:
        _need(body, READY_BODY.size, name, exact=True)
        sid, *rest = READY_BODY.unpack_from(body)
        return Ready(bytes(sid), *rest)
    if mtype == MessageType.PARTIAL:
        _need(body, PARTIAL_FIXED.size, name)
        seq, chunks, frames, flags = PARTIAL_FIXED.unpack_from(body)
        if bytes(body[13:16]) != b"\0\0\0":
            raise ProtocolError("bad_frame", "PARTIAL reserved bytes must be 0", "nonzero_reserved")
        return Partial(seq, chunks, frames, flags, _text(body[PARTIAL_FIXED.size:]))
    if mtype == MessageType.FINAL:
        _need(body, FINAL_FIXED.size, name)
        chunks, frames = FINAL_FIXED.unpack_from(body)
        return Final(chunks, frames, _text(body[FINAL_FIXED.size:]))
    _need(body, ERROR_FIXED.size, name)
    (code,) = ERROR_FIXED.unpack_from(body)
    return Error(code, _text(body[ERROR_FIXED.size:]))
