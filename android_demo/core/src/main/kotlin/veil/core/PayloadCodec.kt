package veil.core

import java.nio.ByteBuffer
import java.nio.ByteOrder

/** The payload codecs; `id` is the codec byte of the header, `wireName` the name the Python side uses. */
enum class Codec(val id: Int, val wireName: String) {
    FP32(0, "fp32"),
    FP16(1, "fp16"),
    INT8(2, "int8"),
    VQ(3, "vq");

    companion object {
        /** The codec with this wire name; PayloadException (unknown-codec) otherwise. */
        @JvmStatic
        fun named(name: String): Codec {
            for (c in values()) if (c.wireName == name) return c
            throw PayloadException("unknown_codec", "unknown payload codec '$name' (codecs: fp32, fp16, int8, vq)")
        }

        internal fun ofId(id: Int): Codec? {
            for (c in values()) if (c.id == id) return c
            return null
        }
    }
}

/** The 10-byte header `<4sBBHH`: magic, codec id, aux byte, frames T, dim field. */
class PayloadHeader(val magic: String, val codec: Codec, val aux: Int, val frames: Int, val dimField: Int)

/**
 * The payload codec: how one chunk of embeddings leaves the phone, byte-identical to `toolkit/payload.py`.
 *
 * ```
 * header  4 s  magic "VPL1" (codecs 0-2) or "VPL2" (codecs 0-3)
 *         1 B  codec id: 0 fp32, 1 fp16, 2 int8, 3 vq
 *         1 B  aux: 0 (reserved) for codecs 0-2; for vq the index width in bits (8 or 16)
 *         2 H  frames T (little-endian uint16)
 *         2 H  dim d, for vq the number of groups G (little-endian uint16)
 * body    fp32: T*d float32 LE      fp16: T*d float16 LE
 *         int8: T float32 scales (max|x_t| / 127), then T*d int8 with x ~= q * scale[t]
 *         vq:   T*G indices, uint8 or uint16 LE, frame-major
 * ```
 * Encoders write VPL1 for fp32/fp16/int8 and VPL2 only for vq; decoders accept both. int8 rounds half to even
 * (Math.rint, as numpy's rint) and fp16 rounds to nearest even (Fp16): half-up rounding would change bytes.
 * Non-finite embeddings are refused on both sides.
 */
object PayloadCodec {
    const val HEADER_BYTES = 10
    const val MAGIC_V1 = "VPL1"
    const val MAGIC_V2 = "VPL2"
    const val INT8_MAX = 127
    const val MAX_FRAMES = 0xFFFF
    const val MAX_DIM = 0xFFFF
    private const val SINGLE_QUOTE = 0x27
    private const val DOUBLE_QUOTE = 0x22
    private const val BACKSLASH = 0x5C

    /** Bytes after the header for `frames` x `dim` embeddings (for vq, `dim` is the group count G). */
    @JvmStatic
    @JvmOverloads
    fun bodyBytes(codec: Codec, frames: Int, dim: Int, indexBits: Int = 8): Int = when (codec) {
        Codec.FP32 -> 4 * frames * dim
        Codec.FP16 -> 2 * frames * dim
        Codec.INT8 -> 4 * frames + frames * dim
        Codec.VQ -> frames * dim * (indexBits / 8)
    }

    @JvmStatic
    @JvmOverloads
    fun messageBytes(codec: Codec, frames: Int, dim: Int, indexBits: Int = 8): Int =
        HEADER_BYTES + bodyBytes(codec, frames, dim, indexBits)

    /** (T, d) embeddings -> one VPL1 message (fp32, fp16 or int8). For vq use [encodeVq]. */
    @JvmStatic
    fun encode(x: Embeddings, codec: Codec): ByteArray {
        if (codec == Codec.VQ) {
            throw PayloadException("needs_codebook", "the vq codec encodes with its codebook: use encodeVq(z, codebook)")
        }
        checkEncodable(x)
        val out = header(MAGIC_V1, codec, 0, x.frames, x.dim, bodyBytes(codec, x.frames, x.dim))
        val v = x.values
        when (codec) {
            Codec.FP32 -> for (f in v) out.putFloat(f)
            Codec.FP16 -> {
                for (f in v) {
                    if (Math.abs(f) > Fp16.MAX_VALUE) {
                        throw PayloadException("fp16_range",
                            "payload embeddings exceed the float16 range (65504); use fp32 or int8")
                    }
                }
                for (f in v) out.putShort(Fp16.fromFloat(f).toShort())
            }
            Codec.INT8 -> {
                val scales = FloatArray(x.frames)
                for (t in 0 until x.frames) {
                    var peak = 0.0f
                    for (j in 0 until x.dim) peak = Math.max(peak, Math.abs(v[t * x.dim + j]))
                    scales[t] = peak / INT8_MAX
                    out.putFloat(scales[t])
                }
                for (t in 0 until x.frames) {
                    val safe = if (scales[t] > 0.0f) scales[t] else 1.0f
                    for (j in 0 until x.dim) {
                        val q = Math.rint((v[t * x.dim + j] / safe).toDouble())
                        out.put(Math.max(-INT8_MAX.toDouble(), Math.min(INT8_MAX.toDouble(), q)).toInt().toByte())
                    }
                }
            }
            Codec.VQ -> throw IllegalStateException("unreachable")
        }
        return out.array()
    }

    /**
     * The vq indices of (T, G*dg) embeddings, frame-major (T*G): per frame and group the nearest codeword
     * (Codebook.nearest: float64 squared distance summed in order, first minimum wins).
     */
    @JvmStatic
    fun quantize(z: Embeddings, codebook: Codebook): IntArray {
        codebook.checkFinite()
        if (z.dim != codebook.dim) {
            throw PayloadException("bad_shape", "vq input must be (frames, ${codebook.dim}) for a " +
                "${codebook.groups}x${codebook.size}x${codebook.groupDim} codebook, got (${z.frames}, ${z.dim})")
        }
        for (f in z.values) {
            if (f.isNaN() || f.isInfinite()) throw PayloadException("nonfinite", "vq input contains NaN or Inf")
        }
        val indices = IntArray(z.frames * codebook.groups)
        for (t in 0 until z.frames) {
            for (g in 0 until codebook.groups) {
                indices[t * codebook.groups + g] = codebook.nearest(g, z.values, t * z.dim + g * codebook.groupDim)
            }
        }
        return indices
    }

    /** (T, G*dg) embeddings -> one VPL2 vq message of T*G indices (8-bit when K <= 256, else 16-bit). */
    @JvmStatic
    fun encodeVq(z: Embeddings, codebook: Codebook): ByteArray =
        encodeIndices(quantize(z, codebook), z.frames, codebook.groups, codebook.size)

    /** (T*G) frame-major indices into a codebook of `codes` entries per group -> one VPL2 vq message. */
    @JvmStatic
    fun encodeIndices(indices: IntArray, frames: Int, groups: Int, codes: Int): ByteArray {
        if (indices.size != frames * groups) {
            throw PayloadException("bad_shape", "vq indices: ${indices.size} for $frames frames x $groups groups")
        }
        if (frames > MAX_FRAMES || groups > MAX_DIM) {
            throw PayloadException("too_large",
                "vq payload of ${frames}x$groups exceeds the 65535 frames/groups of one message")
        }
        if (codes < 1 || codes > Codebook.MAX_CODES) {
            throw PayloadException("bad_codebook", "a vq codebook has 1..${Codebook.MAX_CODES} codes, got $codes")
        }
        for (i in indices) {
            if (i < 0 || i >= codes) {
                throw PayloadException("index_out_of_range", "vq index $i is outside 0..${codes - 1}")
            }
        }
        val bits = Codebook.indexBits(codes)
        val out = header(MAGIC_V2, Codec.VQ, bits, frames, groups, bodyBytes(Codec.VQ, frames, groups, bits))
        for (i in indices) if (bits == 8) out.put(i.toByte()) else out.putShort(i.toShort())
        return out.array()
    }

    /**
     * The header of a message, checked in the order PROTOCOL.md §2 gives: length, magic, codec id, codec allowed
     * in this version, aux byte, body size.
     */
    @JvmStatic
    fun readHeader(message: ByteArray): PayloadHeader {
        if (message.size < HEADER_BYTES) {
            throw PayloadException("short_header",
                "payload of ${message.size} bytes is shorter than its $HEADER_BYTES-byte header")
        }
        val magicBytes = message.copyOfRange(0, 4)
        val magic = String(magicBytes, Charsets.ISO_8859_1)
        if (magic != MAGIC_V1 && magic != MAGIC_V2) {
            throw PayloadException("bad_magic",
                "payload does not start with b'VPL1' or b'VPL2' (got ${pythonBytesRepr(magicBytes)})")
        }
        val id = message[4].toInt() and 0xFF
        val codec = Codec.ofId(id) ?: throw PayloadException("unknown_codec", "payload codec id $id is unknown")
        if (codec == Codec.VQ && magic == MAGIC_V1) {
            throw PayloadException("codec_not_in_version", "payload codec id $id (vq) needs a b'VPL2' header")
        }
        val aux = message[5].toInt() and 0xFF
        if (codec == Codec.VQ) {
            if (aux != 8 && aux != 16) {
                throw PayloadException("bad_index_width", "vq payload index width $aux bits is not 8 or 16")
            }
        } else if (aux != 0) {
            throw PayloadException("nonzero_aux", "${codec.wireName} payload has aux byte $aux; it must be 0")
        }
        val buf = ByteBuffer.wrap(message, 6, 4).order(ByteOrder.LITTLE_ENDIAN)
        val frames = buf.short.toInt() and 0xFFFF
        val dim = buf.short.toInt() and 0xFFFF
        val want = bodyBytes(codec, frames, dim, if (codec == Codec.VQ) aux else 8)
        val got = message.size - HEADER_BYTES
        if (got != want) {
            val what = if (codec == Codec.VQ) "$frames frames x $dim groups of $aux-bit indices" else "${frames}x$dim"
            throw PayloadException("body_size", "${codec.wireName} payload of $what needs $want body bytes, got $got")
        }
        return PayloadHeader(magic, codec, aux, frames, dim)
    }

    /** The vq indices of a vq message, frame-major (T*G), with its header (range-checked by [codewords]). */
    @JvmStatic
    fun decodeIndices(message: ByteArray): Pair<PayloadHeader, IntArray> {
        val h = readHeader(message)
        if (h.codec != Codec.VQ) {
            throw PayloadException("unknown_codec", "expected a vq payload, got ${h.codec.wireName}")
        }
        val n = h.frames * h.dimField
        val buf = ByteBuffer.wrap(message, HEADER_BYTES, message.size - HEADER_BYTES).order(ByteOrder.LITTLE_ENDIAN)
        val indices = IntArray(n)
        for (i in 0 until n) {
            indices[i] = if (h.aux == 8) buf.get().toInt() and 0xFF else buf.short.toInt() and 0xFFFF
        }
        return Pair(h, indices)
    }

    /**
     * One message -> (T, d) float32 embeddings. A vq message needs the codebook it was coded with (its codewords
     * are the decoded embeddings); without one, or with indices out of its range, it is refused.
     */
    @JvmStatic
    @JvmOverloads
    fun decode(message: ByteArray, codebook: Codebook? = null): Embeddings {
        val h = readHeader(message)
        if (h.codec == Codec.VQ) {
            if (codebook == null) {
                throw PayloadException("needs_codebook", "a vq payload decodes only with the served model's codebook")
            }
            return codewords(decodeIndices(message).second, h.frames, h.dimField, codebook)
        }
        val n = h.frames * h.dimField
        val buf = ByteBuffer.wrap(message, HEADER_BYTES, message.size - HEADER_BYTES).order(ByteOrder.LITTLE_ENDIAN)
        val out = FloatArray(n)
        when (h.codec) {
            Codec.FP32 -> for (i in 0 until n) out[i] = buf.float
            Codec.FP16 -> for (i in 0 until n) out[i] = Fp16.toFloat(buf.short.toInt() and 0xFFFF)
            Codec.INT8 -> {
                val scales = FloatArray(h.frames)
                for (t in 0 until h.frames) scales[t] = buf.float
                for (i in 0 until n) out[i] = buf.get().toFloat() * scales[i / h.dimField]
            }
            Codec.VQ -> throw IllegalStateException("unreachable")
        }
        for (f in out) {
            if (f.isNaN() || f.isInfinite()) throw PayloadException("nonfinite", "payload decodes to NaN or Inf")
        }
        return Embeddings(h.frames, h.dimField, out)
    }

    /** (T*G) indices -> (T, G*dg): frame t is cb[0, i[t,0]], cb[1, i[t,1]], ... concatenated. */
    @JvmStatic
    fun codewords(indices: IntArray, frames: Int, groups: Int, codebook: Codebook): Embeddings {
        codebook.checkFinite()
        if (groups != codebook.groups) {
            throw PayloadException("bad_shape",
                "vq payload has $groups groups per frame, the codebook ${codebook.groups}")
        }
        for (i in indices) {
            if (i < 0 || i >= codebook.size) {
                throw PayloadException("index_out_of_range",
                    "vq index $i is outside the codebook's 0..${codebook.size - 1}")
            }
        }
        val dg = codebook.groupDim
        val out = FloatArray(frames * codebook.dim)
        for (t in 0 until frames) {
            for (g in 0 until groups) {
                val k = indices[t * groups + g]
                System.arraycopy(codebook.values, (g * codebook.size + k) * dg, out, t * codebook.dim + g * dg, dg)
            }
        }
        return Embeddings(frames, codebook.dim, out)
    }

    private fun checkEncodable(x: Embeddings) {
        if (x.frames > MAX_FRAMES || x.dim > MAX_DIM) {
            throw PayloadException("too_large",
                "payload of ${x.frames}x${x.dim} exceeds the 65535 frames/dims of one message")
        }
        for (f in x.values) {
            if (f.isNaN() || f.isInfinite()) {
                throw PayloadException("nonfinite", "payload embeddings contain NaN or Inf")
            }
        }
    }

    private fun header(magic: String, codec: Codec, aux: Int, frames: Int, dim: Int, body: Int): ByteBuffer {
        val out = ByteBuffer.allocate(HEADER_BYTES + body).order(ByteOrder.LITTLE_ENDIAN)
        out.put(magic.toByteArray(Charsets.ISO_8859_1))
        out.put(codec.id.toByte())
        out.put(aux.toByte())
        out.putShort(frames.toShort())
        out.putShort(dim.toShort())
        return out
    }

    /** Python's repr of a bytes object (b'VPL1', b'\x00\x01'), so error messages read the same on both sides. */
    @JvmStatic
    fun pythonBytesRepr(bytes: ByteArray): String {
        var hasSingle = false
        var hasDouble = false
        for (b in bytes) {
            if (b.toInt() == SINGLE_QUOTE) hasSingle = true
            if (b.toInt() == DOUBLE_QUOTE) hasDouble = true
        }
        val quote = if (hasSingle && !hasDouble) DOUBLE_QUOTE else SINGLE_QUOTE
        val s = StringBuilder("b").append(quote.toChar())
        for (b in bytes) {
            val c = b.toInt() and 0xFF
            when {
                c == BACKSLASH -> s.append("\\\\")
                c == quote -> s.append('\\').append(quote.toChar())
                c == 9 -> s.append("\\t")
                c == 10 -> s.append("\\n")
                c == 13 -> s.append("\\r")
                c in 0x20..0x7e -> s.append(c.toChar())
                else -> s.append(String.format(java.util.Locale.ROOT, "\\x%02x", c))
            }
        }
        return s.append(quote.toChar()).toString()
    }
}
