// Mirrors android_demo/core/src/main/kotlin/veil/core/Protocol.kt
//
// Kotlin's `object Protocol` is `VeilProtocol` here: on Apple platforms Foundation re-exports the Objective-C
// runtime's class `Protocol`, and an app importing both Foundation and VeilCore would find the name ambiguous.
import Foundation

/**
 * A typed protocol error (docs/PROTOCOL.md §5): `code` is the ERROR frame's code and the WebSocket close code,
 * `http` the unary transport's status, `retry` what a client may do about it.
 */
public struct ErrorCode: Equatable {
    public let code: Int
    public let name: String
    public let http: Int
    public let retry: String

    public init(_ code: Int, _ name: String, _ http: Int, _ retry: String) {
        self.code = code
        self.name = name
        self.http = http
        self.retry = retry
    }
}

/** The error codes of protocol version 1. */
public enum ErrorCodes {
    public static let ALL: [ErrorCode] = [
        ErrorCode(4400, "bad_frame", 400, "no"),
        ErrorCode(4401, "unauthorized", 401, "no"),
        ErrorCode(4402, "unsupported_version", 400, "no"),
        ErrorCode(4403, "bad_geometry", 422, "no"),
        ErrorCode(4404, "unknown_prefix", 422, "no"),
        ErrorCode(4405, "unexpected_message", 400, "no"),
        ErrorCode(4406, "unsupported_codec", 415, "no"),
        ErrorCode(4407, "bad_payload", 400, "no"),
        ErrorCode(4408, "idle_timeout", 408, "new session"),
        ErrorCode(4409, "sequence_gap", 409, "new session"),
        ErrorCode(4410, "resend_mismatch", 409, "no"),
        ErrorCode(4411, "bad_chunk", 400, "no"),
        ErrorCode(4413, "message_too_big", 413, "no"),
        ErrorCode(4414, "utterance_too_long", 413, "no"),
        ErrorCode(4429, "rate_limited", 429, "after a pause"),
        ErrorCode(4430, "token_busy", 429, "after a pause"),
        ErrorCode(4500, "internal_error", 500, "new session"),
        ErrorCode(4502, "shutting_down", 503, "new session, later"),
        ErrorCode(4503, "server_busy", 503, "after a pause"),
    ]

    public static func byCode(_ code: Int) -> ErrorCode? {
        for e in ALL where e.code == code { return e }
        return nil
    }

    public static func named(_ name: String) throws -> ErrorCode {
        for e in ALL where e.name == name { return e }
        throw IllegalArgumentException(message: "no protocol error named \(name)")
    }
}

/** A frame or message refused by the protocol: the typed `error` and a finer `reason` (e.g. bad_magic). */
public final class ProtocolException: VeilException {
    public let error: ErrorCode

    public init(_ error: ErrorCode, _ reason: String, _ message: String) {
        self.error = error
        super.init(reason, message)
    }

    public var code: Int { error.code }
}

/** Message types (frame byte 5). */
public enum MessageType: Int, CaseIterable {
    case HELLO = 0x01
    case CHUNK = 0x02
    case END = 0x03
    case READY = 0x11
    case PARTIAL = 0x12
    case FINAL = 0x13
    case ERROR = 0x1F

    public var id: Int { rawValue }

    /** The type's name as the spec and index.json write it (HELLO, CHUNK, ...). */
    public var name: String { String(describing: self) }

    static func ofId(_ id: Int) -> MessageType? { MessageType(rawValue: id) }
}

/**
 * The messages of protocol version 1 (Kotlin's sealed class Message): one subclass per type, nested as in
 * Kotlin (`Message.Hello`, `Message.Chunk`...). u32 fields are Ints (0 ... 2^32 - 1), checked when encoded.
 */
public class Message {
    public var type: MessageType { fatalError("Message is abstract") }

    func body() throws -> [UInt8] { fatalError("Message is abstract") }

    /** First client message: the prefix identity, the codec and the chunk geometry; optionally the token. */
    public final class Hello: Message {
        /** 64 lowercase hex digits (manifest.json checkpoint.sha256); 32 raw bytes on the wire. */
        public let checkpointSha256: String
        public let splitLayer: Int
        public let codec: Codec
        public let sampleRate: Int
        public let chunkSamples: Int
        public let frameSamples: Int
        /** Embedding dim; for vq the dim the codewords make (G x dg). */
        public let dim: Int
        public let token: String

        public init(_ checkpointSha256: String, _ splitLayer: Int, _ codec: Codec, _ sampleRate: Int,
                    _ chunkSamples: Int, _ frameSamples: Int, _ dim: Int, _ token: String = "") {
            self.checkpointSha256 = checkpointSha256
            self.splitLayer = splitLayer
            self.codec = codec
            self.sampleRate = sampleRate
            self.chunkSamples = chunkSamples
            self.frameSamples = frameSamples
            self.dim = dim
            self.token = token
        }

        public override var type: MessageType { .HELLO }

        override func body() throws -> [UInt8] {
            let sha = try VeilProtocol.hexToBytes(checkpointSha256, 32, "checkpoint sha256")
            let tokenBytes = Array(token.utf8)
            var b = ByteWriter(capacity: 52 + tokenBytes.count)
            b.put(sha)
            try VeilProtocol.putU16(&b, splitLayer, "split layer")
            b.put(UInt8(codec.id))
            b.put(0)
            try VeilProtocol.putU32(&b, sampleRate, "sample rate")
            try VeilProtocol.putU32(&b, chunkSamples, "chunk samples")
            try VeilProtocol.putU32(&b, frameSamples, "frame samples")
            try VeilProtocol.putU16(&b, dim, "dim")
            try VeilProtocol.putU16(&b, tokenBytes.count, "token length")
            b.put(tokenBytes)
            return b.bytes
        }

        /** The HELLO for an export: identity and geometry from its manifest.json. */
        public static func forExport(_ manifest: ExportManifest, _ codec: Codec, _ token: String = "") -> Hello {
            Hello(manifest.checkpointSha256, manifest.splitLayer, codec, manifest.chunk.sampleRate,
                  manifest.chunk.chunkSamples, manifest.chunk.frameSamples, manifest.embeddingDim, token)
        }
    }

    /** One chunk: seq 0, 1, ...; its valid (not zero-padded) samples; a VPL payload. */
    public final class Chunk: Message {
        public let seq: Int
        public let validSamples: Int
        public let payload: [UInt8]

        public init(_ seq: Int, _ validSamples: Int, _ payload: [UInt8]) {
            self.seq = seq
            self.validSamples = validSamples
            self.payload = payload
        }

        public override var type: MessageType { .CHUNK }

        override func body() throws -> [UInt8] {
            var b = ByteWriter(capacity: 8 + payload.count)
            try VeilProtocol.putU32(&b, seq, "seq")
            try VeilProtocol.putU32(&b, validSamples, "valid samples")
            b.put(payload)
            return b.bytes
        }
    }

    /** Last client message: the utterance's chunk count. */
    public final class End: Message {
        public let chunks: Int

        public init(_ chunks: Int) {
            self.chunks = chunks
        }

        public override var type: MessageType { .END }

        override func body() throws -> [UInt8] {
            var b = ByteWriter(capacity: 4)
            try VeilProtocol.putU32(&b, chunks, "chunk count")
            return b.bytes
        }
    }

    /** The server accepted the HELLO: session id and the limits of this session. */
    public final class Ready: Message {
        public let sessionId: [UInt8]
        public let maxMessageBytes: Int
        public let maxUtteranceSamples: Int
        public let partialWindowFrames: Int
        public let idleTimeoutMs: Int

        public init(_ sessionId: [UInt8], _ maxMessageBytes: Int, _ maxUtteranceSamples: Int,
                    _ partialWindowFrames: Int, _ idleTimeoutMs: Int) {
            self.sessionId = sessionId
            self.maxMessageBytes = maxMessageBytes
            self.maxUtteranceSamples = maxUtteranceSamples
            self.partialWindowFrames = partialWindowFrames
            self.idleTimeoutMs = idleTimeoutMs
        }

        public override var type: MessageType { .READY }

        public var sessionIdHex: String { VeilProtocol.bytesToHex(sessionId) }

        override func body() throws -> [UInt8] {
            try require(sessionId.count == 16, "session id must be 16 bytes")
            var b = ByteWriter(capacity: 32)
            b.put(sessionId)
            try VeilProtocol.putU32(&b, maxMessageBytes, "max message bytes")
            try VeilProtocol.putU32(&b, maxUtteranceSamples, "max utterance samples")
            try VeilProtocol.putU32(&b, partialWindowFrames, "partial window frames")
            try VeilProtocol.putU32(&b, idleTimeoutMs, "idle timeout")
            return b.bytes
        }
    }

    /** The transcript so far, one per chunk. */
    public final class Partial: Message {
        public static let DUPLICATE = 0x01
        public static let WINDOWED = 0x02

        public let seq: Int
        public let chunks: Int
        public let frames: Int
        public let flags: Int
        public let text: String

        public init(_ seq: Int, _ chunks: Int, _ frames: Int, _ flags: Int, _ text: String) {
            self.seq = seq
            self.chunks = chunks
            self.frames = frames
            self.flags = flags
            self.text = text
        }

        public override var type: MessageType { .PARTIAL }

        /** The chunk was a resend, already counted. */
        public var duplicate: Bool { (flags & Partial.DUPLICATE) != 0 }

        /** Frames older than the partial window kept their labels from earlier partials. */
        public var windowed: Bool { (flags & Partial.WINDOWED) != 0 }

        override func body() throws -> [UInt8] {
            let text = Array(self.text.utf8)
            var b = ByteWriter(capacity: 16 + text.count)
            try VeilProtocol.putU32(&b, seq, "seq")
            try VeilProtocol.putU32(&b, chunks, "chunks")
            try VeilProtocol.putU32(&b, frames, "frames")
            b.put(UInt8(truncatingIfNeeded: flags))
            b.put([0, 0, 0])
            b.put(text)
            return b.bytes
        }
    }

    /** The transcript of the whole utterance (exact, never windowed). */
    public final class Final: Message {
        public let chunks: Int
        public let frames: Int
        public let text: String

        public init(_ chunks: Int, _ frames: Int, _ text: String) {
            self.chunks = chunks
            self.frames = frames
            self.text = text
        }

        public override var type: MessageType { .FINAL }

        override func body() throws -> [UInt8] {
            let text = Array(self.text.utf8)
            var b = ByteWriter(capacity: 8 + text.count)
            try VeilProtocol.putU32(&b, chunks, "chunks")
            try VeilProtocol.putU32(&b, frames, "frames")
            b.put(text)
            return b.bytes
        }
    }

    /** A typed error; the server closes the session with the same code. */
    public final class Error: Message {
        public let code: Int
        public let message: String

        public init(_ code: Int, _ message: String) {
            self.code = code
            self.message = message
        }

        public override var type: MessageType { .ERROR }

        /** The code's name (unknown_NNNN for a code this version does not list). */
        public var name: String { ErrorCodes.byCode(code)?.name ?? "unknown_\(code)" }

        override func body() throws -> [UInt8] {
            let text = Array(message.utf8)
            var b = ByteWriter(capacity: 2 + text.count)
            try VeilProtocol.putU16(&b, code, "error code")
            b.put(text)
            return b.bytes
        }
    }
}

/**
 * The Veil streaming protocol, version 1 (docs/PROTOCOL.md §3): every message in both directions is one frame,
 *
 * ```
 * offset size  field
 * 0      4     magic "VSTR"
 * 4      1     protocol version (1)
 * 5      1     message type
 * 6      2     flags, u16 LE, 0 in version 1
 * 8      4     body length N, u32 LE
 * 12     N     body
 * ```
 * Decoding trusts no length and refuses with the code and reason the spec lists, in the spec's order, so that
 * this core, the Python reference (toolkit/serve/protocol.py) and the Kotlin core report the same error for the
 * same bytes.
 */
public enum VeilProtocol {
    public static let MAGIC = "VSTR"
    public static let VERSION = 1
    public static let HEADER_BYTES = 12
    public static let MAX_TEXT_BYTES = 1 << 20

    /** One frame of `message`. */
    public static func encode(_ message: Message, _ version: Int = VeilProtocol.VERSION, _ flags: Int = 0) throws -> [UInt8] {
        let body = try message.body()
        var b = ByteWriter(capacity: HEADER_BYTES + body.count)
        b.put(Array(MAGIC.utf8))
        b.put(UInt8(truncatingIfNeeded: version))
        b.put(UInt8(message.type.id))
        try putU16(&b, flags, "flags")
        try putU32(&b, body.count, "body length")
        b.put(body)
        return b.bytes
    }

    /** Check the 12-byte header at `offset`; returns the type and the body length (the body may be absent). */
    public static func readHeader(_ data: [UInt8], _ offset: Int = 0) throws -> (MessageType, Int) {
        if data.count - offset < HEADER_BYTES {
            throw refuse("bad_frame", "short_header",
                "frame of \(data.count - offset) bytes is shorter than its \(HEADER_BYTES)-byte header")
        }
        let magic = Array(data[offset..<(offset + 4)])
        if magic != Array(MAGIC.utf8) {
            throw refuse("bad_frame", "bad_magic",
                "frame does not start with b'VSTR' (got \(PayloadCodec.pythonBytesRepr(magic)))")
        }
        var b = ByteReader(data, offset + 4)
        let version = Int(b.get())
        let typeId = Int(b.get())
        let flags = Int(b.getShort())
        let length = Int(b.getInt())
        if version != VERSION {
            throw refuse("unsupported_version", "bad_version",
                "protocol version \(version) is not supported (this client speaks \(VERSION))")
        }
        if flags != 0 {
            throw refuse("bad_frame", "nonzero_flags",
                "frame flags are \(alternateHex(flags, 6)); version 1 defines none")
        }
        guard let type = MessageType.ofId(typeId) else {
            throw refuse("bad_frame", "unknown_type", "message type \(alternateHex(typeId, 4)) is unknown")
        }
        return (type, length)
    }

    /** Exactly one frame (one WebSocket message) -> its message; the body length must match exactly. */
    public static func decode(_ frame: [UInt8]) throws -> Message {
        let (type, length) = try readHeader(frame)
        let have = frame.count - HEADER_BYTES
        if have != length {
            throw refuse("bad_frame", "length_mismatch", "frame header says \(length) body bytes, the message has \(have)")
        }
        return try decodeBody(type, Array(frame[HEADER_BYTES..<frame.count]))
    }

    /** Frames concatenated (a unary HTTP body) -> one array per frame; a cut frame is refused (truncated). */
    public static func split(_ data: [UInt8]) throws -> [[UInt8]] {
        var frames: [[UInt8]] = []
        var offset = 0
        while offset < data.count {
            let length = try readHeader(data, offset).1
            let end = offset + HEADER_BYTES + length
            if end > data.count {
                throw refuse("bad_frame", "truncated", "frame at byte \(offset) needs \(length) body bytes, the body " +
                    "has \(data.count - offset - HEADER_BYTES)")
            }
            frames.append(Array(data[offset..<end]))
            offset = end
        }
        return frames
    }

    private static func decodeBody(_ type: MessageType, _ body: [UInt8]) throws -> Message {
        var b = ByteReader(body)
        let name = type.name
        switch type {
        case .HELLO:
            try need(body, 52, name, false)
            let sha = b.get(32)
            let split = u16(&b)
            let codecId = Int(b.get())
            let reserved = Int(b.get())
            let rate = u32(&b)
            let chunk = u32(&b)
            let frame = u32(&b)
            let dim = u16(&b)
            let tokenLength = u16(&b)
            try need(body, 52 + tokenLength, name, true)
            if reserved != 0 {
                throw refuse("bad_frame", "nonzero_reserved", "HELLO reserved byte is \(reserved); it must be 0")
            }
            guard let codec = Codec.ofId(codecId) else {
                throw refuse("unsupported_codec", "unknown_codec",
                    "codec id \(codecId) is unknown (codecs: 0 fp32, 1 fp16, 2 int8, 3 vq)")
            }
            return Message.Hello(bytesToHex(sha), split, codec, rate, chunk, frame, dim,
                                 try text(body, 52))
        case .CHUNK:
            try need(body, 8, name, false)
            let seq = u32(&b)
            let valid = u32(&b)
            return Message.Chunk(seq, valid, Array(body[8..<body.count]))
        case .END:
            try need(body, 4, name, true)
            return Message.End(u32(&b))
        case .READY:
            try need(body, 32, name, true)
            let sid = b.get(16)
            let maxMessage = u32(&b)
            let maxUtterance = u32(&b)
            let window = u32(&b)
            let idle = u32(&b)
            return Message.Ready(sid, maxMessage, maxUtterance, window, idle)
        case .PARTIAL:
            try need(body, 16, name, false)
            let seq = u32(&b)
            let chunks = u32(&b)
            let frames = u32(&b)
            let flags = Int(b.get())
            if body[13] != 0 || body[14] != 0 || body[15] != 0 {
                throw refuse("bad_frame", "nonzero_reserved", "PARTIAL reserved bytes must be 0")
            }
            return Message.Partial(seq, chunks, frames, flags, try text(body, 16))
        case .FINAL:
            try need(body, 8, name, false)
            let chunks = u32(&b)
            let frames = u32(&b)
            return Message.Final(chunks, frames, try text(body, 8))
        case .ERROR:
            try need(body, 2, name, false)
            let code = u16(&b)
            return Message.Error(code, try text(body, 2))
        }
    }

    /** An error message fit for a WebSocket close reason: one line, at most `limit` UTF-8 bytes. */
    public static func oneLine(_ text: String, _ limit: Int = 120) -> String {
        // Kotlin: trim(), then split on Java's \s+ (ASCII whitespace only), joined by single spaces
        let ascii: Set<Unicode.Scalar> = [" ", "\t", "\n", "\u{0B}", "\u{0C}", "\r"]
        var words: [String] = []
        var word = ""
        for s in text.trimmingCharacters(in: .whitespacesAndNewlines).unicodeScalars {
            if ascii.contains(s) {
                if !word.isEmpty { words.append(word) }
                word = ""
            } else {
                word.unicodeScalars.append(s)
            }
        }
        if !word.isEmpty { words.append(word) }
        let line = words.joined(separator: " ")
        let bytes = Array(line.utf8)
        if bytes.count <= limit { return line }
        // cut at a character boundary: a UTF-8 continuation byte (10xxxxxx) never starts a character
        var cut = limit
        while cut > 0 && (bytes[cut] & 0xC0) == 0x80 { cut -= 1 }
        return String(decoding: bytes[0..<cut], as: UTF8.self)
    }

    private static func need(_ body: [UInt8], _ size: Int, _ what: String, _ exact: Bool) throws {
        if body.count < size || (exact && body.count != size) {
            let want = exact ? "\(size)" : "at least \(size)"
            throw refuse("bad_frame", body.count < size ? "short_body" : "long_body",
                "\(what) body needs \(want) bytes, got \(body.count)")
        }
    }

    private static func text(_ body: [UInt8], _ from: Int) throws -> String {
        let n = body.count - from
        if n > MAX_TEXT_BYTES { throw refuse("bad_frame", "long_body", "text of \(n) bytes exceeds \(MAX_TEXT_BYTES)") }
        let bytes = Array(body[from..<body.count])
        // strict UTF-8: decoding repairs a bad sequence with U+FFFD, so valid text is exactly what re-encodes alike
        let decoded = String(decoding: bytes, as: UTF8.self)
        if Array(decoded.utf8) != bytes {
            throw refuse("bad_frame", "bad_text", "text is not valid UTF-8")
        }
        return decoded
    }

    private static func refuse(_ error: String, _ reason: String, _ message: String) -> ProtocolException {
        guard let code = ErrorCodes.ALL.first(where: { $0.name == error }) else {
            preconditionFailure("no protocol error named \(error)")
        }
        return ProtocolException(code, reason, message)
    }

    /** Python's `{v:#0Nx}` (and Java's `%#0Nx`): "0x" then hex digits zero-padded to a total width of N. */
    private static func alternateHex(_ v: Int, _ width: Int) -> String {
        let digits = String(v, radix: 16)
        let pad = max(0, width - 2 - digits.count)
        return "0x" + String(repeating: "0", count: pad) + digits
    }

    static func putU16(_ b: inout ByteWriter, _ v: Int, _ what: String) throws {
        try require(v >= 0 && v <= 0xFFFF, "\(what) \(v) does not fit 16 bits")
        b.putShort(UInt16(v))
    }

    static func putU32(_ b: inout ByteWriter, _ v: Int, _ what: String) throws {
        try require(v >= 0 && v <= 0xFFFF_FFFF, "\(what) \(v) does not fit 32 bits")
        b.putInt(UInt32(v))
    }

    private static func u16(_ b: inout ByteReader) -> Int { Int(b.getShort()) }

    private static func u32(_ b: inout ByteReader) -> Int { Int(b.getInt()) }

    public static func hexToBytes(_ hex: String, _ size: Int, _ what: String) throws -> [UInt8] {
        let digits = Array(hex.utf8)
        let isHex: (UInt8) -> Bool = { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }
        try require(digits.count == 2 * size && digits.allSatisfy(isHex),
                    "\(what) '\(hex)' is not \(2 * size) lowercase hex digits")
        var out = [UInt8](repeating: 0, count: size)
        for i in 0..<size {
            out[i] = UInt8(String(decoding: digits[(2 * i)..<(2 * i + 2)], as: UTF8.self), radix: 16)!
        }
        return out
    }

    public static func bytesToHex(_ bytes: [UInt8]) -> String {
        var s = ""
        for x in bytes { s += String(format: "%02x", UInt32(x)) }
        return s
    }
}
