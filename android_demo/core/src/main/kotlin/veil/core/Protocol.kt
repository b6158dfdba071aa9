package veil.core

import java.nio.ByteBuffer
import java.nio.ByteOrder
import java.nio.charset.CharacterCodingException
import java.nio.charset.CodingErrorAction

/**
 * A typed protocol error (docs/PROTOCOL.md §5): `code` is the ERROR frame's code and the WebSocket close code,
 * `http` the unary transport's status, `retry` what a client may do about it.
 */
class ErrorCode(val code: Int, val name: String, val http: Int, val retry: String)

/** The error codes of protocol version 1. */
object ErrorCodes {
    @JvmField
    val ALL: List<ErrorCode> = listOf(
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
        ErrorCode(4503, "server_busy", 503, "after a pause"))

    @JvmStatic
    fun byCode(code: Int): ErrorCode? {
        for (e in ALL) if (e.code == code) return e
        return null
    }

    @JvmStatic
    fun named(name: String): ErrorCode {
        for (e in ALL) if (e.name == name) return e
        throw IllegalArgumentException("no protocol error named $name")
    }
}

/** A frame or message refused by the protocol: the typed [error] and a finer `reason` (e.g. bad_magic). */
class ProtocolException(val error: ErrorCode, reason: String, message: String) : VeilException(reason, message) {
    val code: Int get() = error.code
}

/** Message types (frame byte 5). */
enum class MessageType(val id: Int) {
    HELLO(0x01),
    CHUNK(0x02),
    END(0x03),
    READY(0x11),
    PARTIAL(0x12),
    FINAL(0x13),
    ERROR(0x1F);

    companion object {
        internal fun ofId(id: Int): MessageType? {
            for (t in values()) if (t.id == id) return t
            return null
        }
    }
}

/** The messages of protocol version 1; u32 fields are Longs (0 .. 2^32 - 1). */
sealed class Message {
    abstract val type: MessageType

    internal abstract fun body(): ByteArray

    /** First client message: the prefix identity, the codec and the chunk geometry; optionally the token. */
    class Hello(
        /** 64 lowercase hex digits (manifest.json checkpoint.sha256); 32 raw bytes on the wire. */
        val checkpointSha256: String,
        val splitLayer: Int,
        val codec: Codec,
        val sampleRate: Long,
        val chunkSamples: Long,
        val frameSamples: Long,
        /** Embedding dim; for vq the dim the codewords make (G x dg). */
        val dim: Int,
        val token: String = ""
    ) : Message() {
        override val type: MessageType get() = MessageType.HELLO

        override fun body(): ByteArray {
            val sha = Protocol.hexToBytes(checkpointSha256, 32, "checkpoint sha256")
            val tokenBytes = token.toByteArray(Charsets.UTF_8)
            val b = Protocol.buffer(52 + tokenBytes.size)
            b.put(sha)
            Protocol.putU16(b, splitLayer.toLong(), "split layer")
            b.put(codec.id.toByte())
            b.put(0)
            Protocol.putU32(b, sampleRate, "sample rate")
            Protocol.putU32(b, chunkSamples, "chunk samples")
            Protocol.putU32(b, frameSamples, "frame samples")
            Protocol.putU16(b, dim.toLong(), "dim")
            Protocol.putU16(b, tokenBytes.size.toLong(), "token length")
            b.put(tokenBytes)
            return b.array()
        }

        companion object {
            /** The HELLO for an export: identity and geometry from its manifest.json. */
            @JvmStatic
            @JvmOverloads
            fun forExport(manifest: ExportManifest, codec: Codec, token: String = ""): Hello =
                Hello(manifest.checkpointSha256, manifest.splitLayer, codec, manifest.chunk.sampleRate.toLong(),
                    manifest.chunk.chunkSamples.toLong(), manifest.chunk.frameSamples.toLong(), manifest.embeddingDim,
                    token)
        }
    }

    /** One chunk: seq 0, 1, ...; its valid (not zero-padded) samples; a VPL payload. */
    class Chunk(val seq: Long, val validSamples: Long, val payload: ByteArray) : Message() {
        override val type: MessageType get() = MessageType.CHUNK

        override fun body(): ByteArray {
            val b = Protocol.buffer(8 + payload.size)
            Protocol.putU32(b, seq, "seq")
            Protocol.putU32(b, validSamples, "valid samples")
            b.put(payload)
            return b.array()
        }
    }

    /** Last client message: the utterance's chunk count. */
    class End(val chunks: Long) : Message() {
        override val type: MessageType get() = MessageType.END

        override fun body(): ByteArray {
            val b = Protocol.buffer(4)
            Protocol.putU32(b, chunks, "chunk count")
            return b.array()
        }
    }

    /** The server accepted the HELLO: session id and the limits of this session. */
    class Ready(
        val sessionId: ByteArray,
        val maxMessageBytes: Long,
        val maxUtteranceSamples: Long,
        val partialWindowFrames: Long,
        val idleTimeoutMs: Long
    ) : Message() {
        override val type: MessageType get() = MessageType.READY

        val sessionIdHex: String get() = Protocol.bytesToHex(sessionId)

        override fun body(): ByteArray {
            require(sessionId.size == 16) { "session id must be 16 bytes" }
            val b = Protocol.buffer(32)
            b.put(sessionId)
            Protocol.putU32(b, maxMessageBytes, "max message bytes")
            Protocol.putU32(b, maxUtteranceSamples, "max utterance samples")
            Protocol.putU32(b, partialWindowFrames, "partial window frames")
            Protocol.putU32(b, idleTimeoutMs, "idle timeout")
            return b.array()
        }
    }

    /** The transcript so far, one per chunk. */
    class Partial(val seq: Long, val chunks: Long, val frames: Long, val flags: Int, val text: String) : Message() {
        override val type: MessageType get() = MessageType.PARTIAL

        /** The chunk was a resend, already counted. */
        val duplicate: Boolean get() = (flags and DUPLICATE) != 0

        /** Frames older than the partial window kept their labels from earlier partials. */
        val windowed: Boolean get() = (flags and WINDOWED) != 0

        override fun body(): ByteArray {
            val text = text.toByteArray(Charsets.UTF_8)
            val b = Protocol.buffer(16 + text.size)
            Protocol.putU32(b, seq, "seq")
            Protocol.putU32(b, chunks, "chunks")
            Protocol.putU32(b, frames, "frames")
            b.put(flags.toByte())
            b.put(ByteArray(3))
            b.put(text)
            return b.array()
        }

        companion object {
            const val DUPLICATE = 0x01
            const val WINDOWED = 0x02
        }
    }

    /** The transcript of the whole utterance (exact, never windowed). */
    class Final(val chunks: Long, val frames: Long, val text: String) : Message() {
        override val type: MessageType get() = MessageType.FINAL

        override fun body(): ByteArray {
            val text = text.toByteArray(Charsets.UTF_8)
            val b = Protocol.buffer(8 + text.size)
            Protocol.putU32(b, chunks, "chunks")
            Protocol.putU32(b, frames, "frames")
            b.put(text)
            return b.array()
        }
    }

    /** A typed error; the server closes the session with the same code. */
    class Error(val code: Int, val message: String) : Message() {
        override val type: MessageType get() = MessageType.ERROR

        /** The code's name (unknown_NNNN for a code this version does not list). */
        val name: String get() = ErrorCodes.byCode(code)?.name ?: "unknown_$code"

        override fun body(): ByteArray {
            val text = message.toByteArray(Charsets.UTF_8)
            val b = Protocol.buffer(2 + text.size)
            Protocol.putU16(b, code.toLong(), "error code")
            b.put(text)
            return b.array()
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
 * this core, the Python reference (toolkit/serve/protocol.py) and the iOS core report the same error for the
 * same bytes.
 */
object Protocol {
    const val MAGIC = "VSTR"
    const val VERSION = 1
    const val HEADER_BYTES = 12
    const val MAX_TEXT_BYTES = 1 shl 20

    /** One frame of `message`. */
    @JvmStatic
    @JvmOverloads
    fun encode(message: Message, version: Int = VERSION, flags: Int = 0): ByteArray {
        val body = message.body()
        val b = buffer(HEADER_BYTES + body.size)
        b.put(MAGIC.toByteArray(Charsets.ISO_8859_1))
        b.put(version.toByte())
        b.put(message.type.id.toByte())
        putU16(b, flags.toLong(), "flags")
        putU32(b, body.size.toLong(), "body length")
        b.put(body)
        return b.array()
    }

    /** Check the 12-byte header at `offset`; returns the type and the body length (the body may be absent). */
    @JvmStatic
    @JvmOverloads
    fun readHeader(data: ByteArray, offset: Int = 0): Pair<MessageType, Long> {
        if (data.size - offset < HEADER_BYTES) {
            throw refuse("bad_frame", "short_header",
                "frame of ${data.size - offset} bytes is shorter than its $HEADER_BYTES-byte header")
        }
        val magic = data.copyOfRange(offset, offset + 4)
        if (String(magic, Charsets.ISO_8859_1) != MAGIC) {
            throw refuse("bad_frame", "bad_magic",
                "frame does not start with b'VSTR' (got ${PayloadCodec.pythonBytesRepr(magic)})")
        }
        val b = ByteBuffer.wrap(data, offset + 4, 8).order(ByteOrder.LITTLE_ENDIAN)
        val version = b.get().toInt() and 0xFF
        val typeId = b.get().toInt() and 0xFF
        val flags = b.short.toInt() and 0xFFFF
        val length = b.int.toLong() and 0xFFFFFFFFL
        if (version != VERSION) {
            throw refuse("unsupported_version", "bad_version",
                "protocol version $version is not supported (this client speaks $VERSION)")
        }
        if (flags != 0) {
            throw refuse("bad_frame", "nonzero_flags",
                String.format(java.util.Locale.ROOT, "frame flags are %#06x; version 1 defines none", flags))
        }
        val type = MessageType.ofId(typeId) ?: throw refuse("bad_frame", "unknown_type",
            String.format(java.util.Locale.ROOT, "message type %#04x is unknown", typeId))
        return Pair(type, length)
    }

    /** Exactly one frame (one WebSocket message) -> its message; the body length must match exactly. */
    @JvmStatic
    fun decode(frame: ByteArray): Message {
        val (type, length) = readHeader(frame)
        val have = (frame.size - HEADER_BYTES).toLong()
        if (have != length) {
            throw refuse("bad_frame", "length_mismatch", "frame header says $length body bytes, the message has $have")
        }
        return decodeBody(type, frame.copyOfRange(HEADER_BYTES, frame.size))
    }

    /** Frames concatenated (a unary HTTP body) -> one array per frame; a cut frame is refused (truncated). */
    @JvmStatic
    fun split(data: ByteArray): List<ByteArray> {
        val frames = ArrayList<ByteArray>()
        var offset = 0
        while (offset < data.size) {
            val length = readHeader(data, offset).second
            val end = offset.toLong() + HEADER_BYTES + length
            if (end > data.size) {
                throw refuse("bad_frame", "truncated", "frame at byte $offset needs $length body bytes, the body " +
                    "has ${data.size - offset - HEADER_BYTES}")
            }
            frames.add(data.copyOfRange(offset, end.toInt()))
            offset = end.toInt()
        }
        return frames
    }

    private fun decodeBody(type: MessageType, body: ByteArray): Message {
        val b = ByteBuffer.wrap(body).order(ByteOrder.LITTLE_ENDIAN)
        val name = type.name
        return when (type) {
            MessageType.HELLO -> {
                need(body, 52, name, false)
                val sha = ByteArray(32)
                b.get(sha)
                val split = u16(b)
                val codecId = b.get().toInt() and 0xFF
                val reserved = b.get().toInt() and 0xFF
                val rate = u32(b)
                val chunk = u32(b)
                val frame = u32(b)
                val dim = u16(b)
                val tokenLength = u16(b)
                need(body, 52 + tokenLength, name, true)
                if (reserved != 0) {
                    throw refuse("bad_frame", "nonzero_reserved", "HELLO reserved byte is $reserved; it must be 0")
                }
                val codec = Codec.ofId(codecId) ?: throw refuse("unsupported_codec", "unknown_codec",
                    "codec id $codecId is unknown (codecs: 0 fp32, 1 fp16, 2 int8, 3 vq)")
                Message.Hello(bytesToHex(sha), split, codec, rate, chunk, frame, dim,
                    text(body, 52))
            }
            MessageType.CHUNK -> {
                need(body, 8, name, false)
                Message.Chunk(u32(b), u32(b), body.copyOfRange(8, body.size))
            }
            MessageType.END -> {
                need(body, 4, name, true)
                Message.End(u32(b))
            }
            MessageType.READY -> {
                need(body, 32, name, true)
                val sid = ByteArray(16)
                b.get(sid)
                Message.Ready(sid, u32(b), u32(b), u32(b), u32(b))
            }
            MessageType.PARTIAL -> {
                need(body, 16, name, false)
                val seq = u32(b)
                val chunks = u32(b)
                val frames = u32(b)
                val flags = b.get().toInt() and 0xFF
                if (body[13].toInt() != 0 || body[14].toInt() != 0 || body[15].toInt() != 0) {
                    throw refuse("bad_frame", "nonzero_reserved", "PARTIAL reserved bytes must be 0")
                }
                Message.Partial(seq, chunks, frames, flags, text(body, 16))
            }
            MessageType.FINAL -> {
                need(body, 8, name, false)
                Message.Final(u32(b), u32(b), text(body, 8))
            }
            MessageType.ERROR -> {
                need(body, 2, name, false)
                Message.Error(u16(b), text(body, 2))
            }
        }
    }

    /** An error message fit for a WebSocket close reason: one line, at most `limit` UTF-8 bytes. */
    @JvmStatic
    @JvmOverloads
    fun oneLine(text: String, limit: Int = 120): String {
        val line = text.trim().split(Regex("\\s+")).joinToString(" ")
        val bytes = line.toByteArray(Charsets.UTF_8)
        if (bytes.size <= limit) return line
        val decoder = Charsets.UTF_8.newDecoder().onMalformedInput(CodingErrorAction.IGNORE)
        return decoder.decode(ByteBuffer.wrap(bytes, 0, limit)).toString()
    }

    private fun need(body: ByteArray, size: Int, what: String, exact: Boolean) {
        if (body.size < size || (exact && body.size != size)) {
            val want = if (exact) "$size" else "at least $size"
            throw refuse("bad_frame", if (body.size < size) "short_body" else "long_body",
                "$what body needs $want bytes, got ${body.size}")
        }
    }

    private fun text(body: ByteArray, from: Int): String {
        val n = body.size - from
        if (n > MAX_TEXT_BYTES) throw refuse("bad_frame", "long_body", "text of $n bytes exceeds $MAX_TEXT_BYTES")
        val decoder = Charsets.UTF_8.newDecoder()
            .onMalformedInput(CodingErrorAction.REPORT)
            .onUnmappableCharacter(CodingErrorAction.REPORT)
        return try {
            decoder.decode(ByteBuffer.wrap(body, from, n)).toString()
        } catch (e: CharacterCodingException) {
            throw refuse("bad_frame", "bad_text", "text is not valid UTF-8")
        }
    }

    private fun refuse(error: String, reason: String, message: String): ProtocolException =
        ProtocolException(ErrorCodes.named(error), reason, message)

    internal fun buffer(size: Int): ByteBuffer = ByteBuffer.allocate(size).order(ByteOrder.LITTLE_ENDIAN)

    internal fun putU16(b: ByteBuffer, v: Long, what: String) {
        require(v in 0..0xFFFF) { "$what $v does not fit 16 bits" }
        b.putShort(v.toInt().toShort())
    }

    internal fun putU32(b: ByteBuffer, v: Long, what: String) {
        require(v in 0..0xFFFFFFFFL) { "$what $v does not fit 32 bits" }
        b.putInt(v.toInt())
    }

    private fun u16(b: ByteBuffer): Int = b.short.toInt() and 0xFFFF

    private fun u32(b: ByteBuffer): Long = b.int.toLong() and 0xFFFFFFFFL

    @JvmStatic
    fun hexToBytes(hex: String, size: Int, what: String): ByteArray {
        require(hex.length == 2 * size && hex.all { it in '0'..'9' || it in 'a'..'f' }) {
            "$what '$hex' is not ${2 * size} lowercase hex digits"
        }
        val out = ByteArray(size)
        for (i in 0 until size) out[i] = Integer.parseInt(hex.substring(2 * i, 2 * i + 2), 16).toByte()
        return out
    }

    @JvmStatic
    fun bytesToHex(bytes: ByteArray): String {
        val s = StringBuilder()
        for (x in bytes) s.append(String.format(java.util.Locale.ROOT, "%02x", x.toInt() and 0xFF))
        return s.toString()
    }
}
