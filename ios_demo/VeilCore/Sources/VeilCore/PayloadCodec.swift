// Mirrors android_demo/core/src/main/kotlin/veil/core/PayloadCodec.kt
import Foundation

/** The payload codecs; `id` is the codec byte of the header, `wireName` the name the Python side uses. */
public enum Codec: Int, CaseIterable {
    case fp32 = 0
    case fp16 = 1
    case int8 = 2
    case vq = 3

    public var id: Int { rawValue }

    public var wireName: String {
        switch self {
        case .fp32: return "fp32"
        case .fp16: return "fp16"
        case .int8: return "int8"
        case .vq: return "vq"
        }
    }

    /** The codec with this wire name; PayloadException (unknown_codec) otherwise. */
    public static func named(_ name: String) throws -> Codec {
        for c in Codec.allCases where c.wireName == name { return c }
        throw PayloadException("unknown_codec", "unknown payload codec '\(name)' (codecs: fp32, fp16, int8, vq)")
    }

    static func ofId(_ id: Int) -> Codec? { Codec(rawValue: id) }
}

/** The 10-byte header `<4sBBHH`: magic, codec id, aux byte, frames T, dim field. */
public struct PayloadHeader {
    public let magic: String
    public let codec: Codec
    public let aux: Int
    public let frames: Int
    public let dimField: Int
}

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
 * (`.rounded(.toNearestOrEven)`, as numpy's rint; Swift's plain `.rounded()` rounds half away from zero) and fp16
 * rounds to nearest even (Fp16): half-up rounding would change bytes. Non-finite embeddings are refused on both
 * sides.
 */
public enum PayloadCodec {
    public static let HEADER_BYTES = 10
    public static let MAGIC_V1 = "VPL1"
    public static let MAGIC_V2 = "VPL2"
    public static let INT8_MAX = 127
    public static let MAX_FRAMES = 0xFFFF
    public static let MAX_DIM = 0xFFFF
    private static let SINGLE_QUOTE = 0x27
    private static let DOUBLE_QUOTE = 0x22
    private static let BACKSLASH = 0x5C

    /** Bytes after the header for `frames` x `dim` embeddings (for vq, `dim` is the group count G). */
    public static func bodyBytes(_ codec: Codec, _ frames: Int, _ dim: Int, _ indexBits: Int = 8) -> Int {
        switch codec {
        case .fp32: return 4 * frames * dim
        case .fp16: return 2 * frames * dim
        case .int8: return 4 * frames + frames * dim
        case .vq: return frames * dim * (indexBits / 8)
        }
    }

    public static func messageBytes(_ codec: Codec, _ frames: Int, _ dim: Int, _ indexBits: Int = 8) -> Int {
        HEADER_BYTES + bodyBytes(codec, frames, dim, indexBits)
    }

    /** (T, d) embeddings -> one VPL1 message (fp32, fp16 or int8). For vq use `encodeVq`. */
    public static func encode(_ x: Embeddings, _ codec: Codec) throws -> [UInt8] {
        if codec == .vq {
            throw PayloadException("needs_codebook", "the vq codec encodes with its codebook: use encodeVq(z, codebook)")
        }
        try checkEncodable(x)
        var out = header(MAGIC_V1, codec, 0, x.frames, x.dim, bodyBytes(codec, x.frames, x.dim))
        let v = x.values
        switch codec {
        case .fp32:
            for f in v { out.putFloat(f) }
        case .fp16:
            for f in v {
                if abs(f) > Fp16.MAX_VALUE {
                    throw PayloadException("fp16_range",
                        "payload embeddings exceed the float16 range (65504); use fp32 or int8")
                }
            }
            for f in v { out.putShort(UInt16(truncatingIfNeeded: Fp16.fromFloat(f))) }
        case .int8:
            var scales = [Float](repeating: 0, count: x.frames)
            for t in 0..<x.frames {
                var peak: Float = 0.0
                for j in 0..<x.dim { peak = max(peak, abs(v[t * x.dim + j])) }
                scales[t] = peak / Float(INT8_MAX)
                out.putFloat(scales[t])
            }
            for t in 0..<x.frames {
                let safe: Float = scales[t] > 0.0 ? scales[t] : 1.0
                for j in 0..<x.dim {
                    let q = Double(v[t * x.dim + j] / safe).rounded(.toNearestOrEven)
                    let clipped = max(-Double(INT8_MAX), min(Double(INT8_MAX), q))
                    out.put(UInt8(bitPattern: Int8(clipped)))
                }
            }
        case .vq:
            throw IllegalStateException(message: "unreachable")
        }
        return out.bytes
    }

    /**
     * The vq indices of (T, G*dg) embeddings, frame-major (T*G): per frame and group the nearest codeword
     * (Codebook.nearest: float64 squared distance summed in order, first minimum wins).
     */
    public static func quantize(_ z: Embeddings, _ codebook: Codebook) throws -> [Int] {
        try codebook.checkFinite()
        if z.dim != codebook.dim {
            throw PayloadException("bad_shape", "vq input must be (frames, \(codebook.dim)) for a " +
                "\(codebook.groups)x\(codebook.size)x\(codebook.groupDim) codebook, got (\(z.frames), \(z.dim))")
        }
        for f in z.values {
            if f.isNaN || f.isInfinite { throw PayloadException("nonfinite", "vq input contains NaN or Inf") }
        }
        var indices = [Int](repeating: 0, count: z.frames * codebook.groups)
        for t in 0..<z.frames {
            for g in 0..<codebook.groups {
                indices[t * codebook.groups + g] = codebook.nearest(g, z.values, t * z.dim + g * codebook.groupDim)
            }
        }
        return indices
    }

    /** (T, G*dg) embeddings -> one VPL2 vq message of T*G indices (8-bit when K <= 256, else 16-bit). */
    public static func encodeVq(_ z: Embeddings, _ codebook: Codebook) throws -> [UInt8] {
        try encodeIndices(try quantize(z, codebook), z.frames, codebook.groups, codebook.size)
    }

    /** (T*G) frame-major indices into a codebook of `codes` entries per group -> one VPL2 vq message. */
    public static func encodeIndices(_ indices: [Int], _ frames: Int, _ groups: Int, _ codes: Int) throws -> [UInt8] {
        if indices.count != frames * groups {
            throw PayloadException("bad_shape", "vq indices: \(indices.count) for \(frames) frames x \(groups) groups")
        }
        if frames > MAX_FRAMES || groups > MAX_DIM {
            throw PayloadException("too_large",
                "vq payload of \(frames)x\(groups) exceeds the 65535 frames/groups of one message")
        }
        if codes < 1 || codes > Codebook.MAX_CODES {
            throw PayloadException("bad_codebook", "a vq codebook has 1..\(Codebook.MAX_CODES) codes, got \(codes)")
        }
        for i in indices {
            if i < 0 || i >= codes {
                throw PayloadException("index_out_of_range", "vq index \(i) is outside 0..\(codes - 1)")
            }
        }
        let bits = Codebook.indexBits(codes)
        var out = header(MAGIC_V2, .vq, bits, frames, groups, bodyBytes(.vq, frames, groups, bits))
        for i in indices {
            if bits == 8 { out.put(UInt8(truncatingIfNeeded: i)) } else { out.putShort(UInt16(truncatingIfNeeded: i)) }
        }
        return out.bytes
    }

    /**
     * The header of a message, checked in the order PROTOCOL.md §2 gives: length, magic, codec id, codec allowed
     * in this version, aux byte, body size.
     */
    public static func readHeader(_ message: [UInt8]) throws -> PayloadHeader {
        if message.count < HEADER_BYTES {
            throw PayloadException("short_header",
                "payload of \(message.count) bytes is shorter than its \(HEADER_BYTES)-byte header")
        }
        let magicBytes = Array(message[0..<4])
        let magic = String(decoding: magicBytes, as: UTF8.self)
        if magicBytes != Array(MAGIC_V1.utf8) && magicBytes != Array(MAGIC_V2.utf8) {
            throw PayloadException("bad_magic",
                "payload does not start with b'VPL1' or b'VPL2' (got \(pythonBytesRepr(magicBytes)))")
        }
        let id = Int(message[4])
        guard let codec = Codec.ofId(id) else {
            throw PayloadException("unknown_codec", "payload codec id \(id) is unknown")
        }
        if codec == .vq && magic == MAGIC_V1 {
            throw PayloadException("codec_not_in_version", "payload codec id \(id) (vq) needs a b'VPL2' header")
        }
        let aux = Int(message[5])
        if codec == .vq {
            if aux != 8 && aux != 16 {
                throw PayloadException("bad_index_width", "vq payload index width \(aux) bits is not 8 or 16")
            }
        } else if aux != 0 {
            throw PayloadException("nonzero_aux", "\(codec.wireName) payload has aux byte \(aux); it must be 0")
        }
        var buf = ByteReader(message, 6)
        let frames = Int(buf.getShort())
        let dim = Int(buf.getShort())
        let want = bodyBytes(codec, frames, dim, codec == .vq ? aux : 8)
        let got = message.count - HEADER_BYTES
        if got != want {
            let what = codec == .vq ? "\(frames) frames x \(dim) groups of \(aux)-bit indices" : "\(frames)x\(dim)"
            throw PayloadException("body_size", "\(codec.wireName) payload of \(what) needs \(want) body bytes, got \(got)")
        }
        return PayloadHeader(magic: magic, codec: codec, aux: aux, frames: frames, dimField: dim)
    }

    /** The vq indices of a vq message, frame-major (T*G), with its header (range-checked by `codewords`). */
    public static func decodeIndices(_ message: [UInt8]) throws -> (PayloadHeader, [Int]) {
        let h = try readHeader(message)
        if h.codec != .vq {
            throw PayloadException("unknown_codec", "expected a vq payload, got \(h.codec.wireName)")
        }
        let n = h.frames * h.dimField
        var buf = ByteReader(message, HEADER_BYTES)
        var indices = [Int](repeating: 0, count: n)
        for i in 0..<n {
            indices[i] = h.aux == 8 ? Int(buf.get()) : Int(buf.getShort())
        }
        return (h, indices)
    }

    /**
     * One message -> (T, d) float32 embeddings. A vq message needs the codebook it was coded with (its codewords
     * are the decoded embeddings); without one, or with indices out of its range, it is refused.
     */
    public static func decode(_ message: [UInt8], _ codebook: Codebook? = nil) throws -> Embeddings {
        let h = try readHeader(message)
        if h.codec == .vq {
            guard let codebook = codebook else {
                throw PayloadException("needs_codebook", "a vq payload decodes only with the served model's codebook")
            }
            return try codewords(try decodeIndices(message).1, h.frames, h.dimField, codebook)
        }
        let n = h.frames * h.dimField
        var buf = ByteReader(message, HEADER_BYTES)
        var out = [Float](repeating: 0, count: n)
        switch h.codec {
        case .fp32:
            for i in 0..<n { out[i] = buf.getFloat() }
        case .fp16:
            for i in 0..<n { out[i] = Fp16.toFloat(Int(buf.getShort())) }
        case .int8:
            var scales = [Float](repeating: 0, count: h.frames)
            for t in 0..<h.frames { scales[t] = buf.getFloat() }
            for i in 0..<n { out[i] = Float(Int8(bitPattern: buf.get())) * scales[i / h.dimField] }
        case .vq:
            throw IllegalStateException(message: "unreachable")
        }
        for f in out {
            if f.isNaN || f.isInfinite { throw PayloadException("nonfinite", "payload decodes to NaN or Inf") }
        }
        return try Embeddings(h.frames, h.dimField, out)
    }

    /** (T*G) indices -> (T, G*dg): frame t is cb[0, i[t,0]], cb[1, i[t,1]], ... concatenated. */
    public static func codewords(_ indices: [Int], _ frames: Int, _ groups: Int, _ codebook: Codebook) throws -> Embeddings {
        try codebook.checkFinite()
        if groups != codebook.groups {
            throw PayloadException("bad_shape",
                "vq payload has \(groups) groups per frame, the codebook \(codebook.groups)")
        }
        for i in indices {
            if i < 0 || i >= codebook.size {
                throw PayloadException("index_out_of_range",
                    "vq index \(i) is outside the codebook's 0..\(codebook.size - 1)")
            }
        }
        let dg = codebook.groupDim
        var out = [Float](repeating: 0, count: frames * codebook.dim)
        for t in 0..<frames {
            for g in 0..<groups {
                let k = indices[t * groups + g]
                let from = (g * codebook.size + k) * dg
                let to = t * codebook.dim + g * dg
                out.replaceSubrange(to..<(to + dg), with: codebook.values[from..<(from + dg)])
            }
        }
        return try Embeddings(frames, codebook.dim, out)
    }

    private static func checkEncodable(_ x: Embeddings) throws {
        if x.frames > MAX_FRAMES || x.dim > MAX_DIM {
            throw PayloadException("too_large",
                "payload of \(x.frames)x\(x.dim) exceeds the 65535 frames/dims of one message")
        }
        for f in x.values {
            if f.isNaN || f.isInfinite {
                throw PayloadException("nonfinite", "payload embeddings contain NaN or Inf")
            }
        }
    }

    private static func header(_ magic: String, _ codec: Codec, _ aux: Int, _ frames: Int, _ dim: Int,
                               _ body: Int) -> ByteWriter {
        var out = ByteWriter(capacity: HEADER_BYTES + body)
        out.put(Array(magic.utf8))
        out.put(UInt8(codec.id))
        out.put(UInt8(truncatingIfNeeded: aux))
        out.putShort(UInt16(truncatingIfNeeded: frames))
        out.putShort(UInt16(truncatingIfNeeded: dim))
        return out
    }

    /** Python's repr of a bytes object (b'VPL1', b'\x00\x01'), so error messages read the same on both sides. */
    public static func pythonBytesRepr(_ bytes: [UInt8]) -> String {
        var hasSingle = false
        var hasDouble = false
        for b in bytes {
            if Int(b) == SINGLE_QUOTE { hasSingle = true }
            if Int(b) == DOUBLE_QUOTE { hasDouble = true }
        }
        let quote = (hasSingle && !hasDouble) ? DOUBLE_QUOTE : SINGLE_QUOTE
        let quoteChar = String(Character(UnicodeScalar(UInt8(quote))))
        var s = "b" + quoteChar
        for b in bytes {
            let c = Int(b)
            if c == BACKSLASH {
                s += "\\\\"
            } else if c == quote {
                s += "\\" + quoteChar
            } else if c == 9 {
                s += "\\t"
            } else if c == 10 {
                s += "\\n"
            } else if c == 13 {
                s += "\\r"
            } else if c >= 0x20 && c <= 0x7e {
                s += String(Character(UnicodeScalar(b)))
            } else {
                s += String(format: "\\x%02x", UInt32(c))
            }
        }
        return s + quoteChar
    }
}
