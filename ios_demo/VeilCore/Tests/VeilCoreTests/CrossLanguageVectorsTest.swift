// Mirrors android_demo/core/src/test/kotlin/veil/core/CrossLanguageVectorsTest.kt
import Foundation
import VeilCore
import XCTest

/** A frame field as index.json writes it: a number or a string. */
enum FieldValue: Equatable, CustomStringConvertible {
    case int(Int)
    case string(String)

    var description: String {
        switch self {
        case .int(let i): return "\(i)"
        case .string(let s): return "'\(s)'"
        }
    }
}

/** A frame's fields as index.json writes them. */
func fieldsOf(_ m: Message) -> [String: FieldValue] {
    switch m {
    case let m as Message.Hello:
        return ["type": .string("HELLO"), "checkpoint_sha256": .string(m.checkpointSha256),
                "split_layer": .int(m.splitLayer), "codec": .string(m.codec.wireName), "sample_rate": .int(m.sampleRate),
                "chunk_samples": .int(m.chunkSamples), "frame_samples": .int(m.frameSamples), "dim": .int(m.dim),
                "token": .string(m.token)]
    case let m as Message.Chunk:
        return ["type": .string("CHUNK"), "seq": .int(m.seq), "valid_samples": .int(m.validSamples),
                "payload_bytes": .int(m.payload.count)]
    case let m as Message.End:
        return ["type": .string("END"), "chunks": .int(m.chunks)]
    case let m as Message.Ready:
        return ["type": .string("READY"), "session_id": .string(m.sessionIdHex),
                "max_message_bytes": .int(m.maxMessageBytes), "max_utterance_samples": .int(m.maxUtteranceSamples),
                "partial_window_frames": .int(m.partialWindowFrames), "idle_timeout_ms": .int(m.idleTimeoutMs)]
    case let m as Message.Partial:
        return ["type": .string("PARTIAL"), "seq": .int(m.seq), "chunks": .int(m.chunks), "frames": .int(m.frames),
                "flags": .int(m.flags), "text": .string(m.text)]
    case let m as Message.Final:
        return ["type": .string("FINAL"), "chunks": .int(m.chunks), "frames": .int(m.frames), "text": .string(m.text)]
    case let m as Message.Error:
        return ["type": .string("ERROR"), "code": .int(m.code), "name": .string(m.name), "message": .string(m.message)]
    default:
        return ["type": .string("?")]
    }
}

/** index.json's fields object, numbers as Ints. */
func jsonFields(_ o: JSONObject) -> [String: FieldValue] {
    var out: [String: FieldValue] = [:]
    for k in o.keys {
        switch o.opt(k) {
        case .int(let i)?: out[k] = .int(i)
        case .double(let d)?: out[k] = .int(Int(d))
        case .string(let s)?: out[k] = .string(s)
        case let v?: out[k] = .string(v.toString())
        case nil: break
        }
    }
    return out
}

/**
 * The Swift core against the vectors the Python reference wrote (testvectors/, docs/PROTOCOL.md §8): the same
 * bytes for the same inputs, the same floats bit for bit for the same bytes, and the same reason (and protocol
 * code) for every malformed payload and frame.
 */
final class CrossLanguageVectorsTest: XCTestCase {
    private func ix() throws -> JSONObject { try TestVectors.index() }

    func testTheChunkerCutsTheCorpusSnippetIntoTheSameWindowsAndValidCounts() throws {
        let c = try ix().getJSONObject("chunker")
        let pcm = try TestVectors.f32(try c.getJSONObject("pcm").getString("file"))
        XCTAssertEqual(try c.getInt("samples"), pcm.count)
        let chunks = try Chunker.chunkUtterance(pcm, try c.getInt("chunk_samples"))
        let want = try TestVectors.f32(try c.getJSONObject("chunks").getString("file"))
        XCTAssertEqual(try c.getInt("chunk_count"), chunks.count)
        var got = [Float](repeating: 0, count: chunks.count * (try c.getInt("chunk_samples")))
        for ch in chunks {
            let start = ch.index * ch.samples.count
            got.replaceSubrange(start..<(start + ch.samples.count), with: ch.samples)
        }
        XCTAssertTrue(TestVectors.sameBits(want, got))
        let valid = try c.getJSONArray("valid_samples")
        XCTAssertEqual(try (0..<valid.length).map { try valid.getInt($0) }, chunks.map { $0.validSamples })
        XCTAssertEqual(try c.getInt("valid_frames"), try Chunker.framesFor(Int64(pcm.count), try c.getInt("frame_samples")))
    }

    func testFp16EdgeValuesRoundEncodeAndDecodeBitForBit() throws {
        let fp16 = try ix().getJSONObject("payload").getJSONObject("fp16")
        let values = try fp16.getJSONArray("values")
        for i in 0..<values.length {
            let v = try values.getJSONObject(i)
            let what = try v.getString("what")
            let input = TestVectors.floatOf(try v.getString("input_f32_bits"))
            XCTAssertEqual(TestVectors.bitsOf(try v.getString("fp16_bits")), Fp16.fromFloat(input), what)
            let decoded = Fp16.toFloat(TestVectors.bitsOf(try v.getString("fp16_bits")))
            XCTAssertEqual(TestVectors.bitsOf(try v.getString("decoded_f32_bits")), Int(decoded.bitPattern), what)
        }
        try checkCodecCase(fp16, .fp16)
    }

    /** Swift only (the Kotlin tests do not read encode_errors yet): inputs an fp16 encoder must refuse. */
    func testFp16EncodeErrorsAreRefusedWithTheListedReason() throws {
        let errors = try ix().getJSONObject("payload").getJSONObject("fp16").getJSONArray("encode_errors")
        XCTAssertGreaterThan(errors.length, 0)
        for i in 0..<errors.length {
            let c = try errors.getJSONObject(i)
            let bits = try c.getJSONArray("input_f32_bits")
            let input = try (0..<bits.length).map { TestVectors.floatOf(try bits.getString($0)) }
            let x = try Embeddings(1, input.count, input)
            let what = try c.getString("what")
            XCTAssertEqual(try c.getString("reason"),
                           assertThrows(PayloadException.self, what) { try PayloadCodec.encode(x, .fp16) }?.reason, what)
        }
    }

    func testInt8WithExactHalvesEncodesAndDecodesBitForBit() throws {
        let int8 = try ix().getJSONObject("payload").getJSONObject("int8")
        try checkCodecCase(int8, .int8)
        let message = try TestVectors.bytes(try int8.getString("message"))
        let frames = try int8.getJSONObject("input").getJSONArray("shape").getInt(0)
        let dim = try int8.getJSONObject("input").getJSONArray("shape").getInt(1)
        let scales = try int8.getJSONArray("scales_f32_bits")
        let q = try int8.getJSONArray("q")
        var at = 10
        for t in 0..<frames {
            var bits = 0
            for k in 0..<4 { bits |= Int(message[at + k]) << (8 * k) }
            XCTAssertEqual(TestVectors.bitsOf(try scales.getString(t)), bits)
            at += 4
        }
        for t in 0..<frames {
            for j in 0..<dim {
                XCTAssertEqual(try q.getJSONArray(t).getInt(j), Int(Int8(bitPattern: message[at])))
                at += 1
            }
        }
    }

    private func checkCodecCase(_ c: JSONObject, _ codec: Codec) throws {
        let input = try TestVectors.embeddings(try c.getJSONObject("input"))
        let message = try TestVectors.bytes(try c.getString("message"))
        XCTAssertEqual(message, try PayloadCodec.encode(input, codec), "\(codec.wireName) bytes")
        let decoded = try PayloadCodec.decode(message)
        XCTAssertTrue(TestVectors.sameBits(try TestVectors.embeddings(try c.getJSONObject("decoded")).values, decoded.values),
                      "\(codec.wireName) decoded floats")
    }

    private func codebook(_ spec: JSONObject) throws -> Codebook {
        let shape = try spec.getJSONArray("shape")
        return try Codebook(try shape.getInt(0), try shape.getInt(1), try shape.getInt(2),
                            try TestVectors.f32(try spec.getString("file")))
    }

    func testVqPicksTheSameCodewordsTiesIncludedIn8And16BitMessages() throws {
        let cases = try ix().getJSONObject("payload").getJSONObject("vq").getJSONArray("cases")
        for i in 0..<cases.length {
            let c = try cases.getJSONObject(i)
            let name = try c.getString("name")
            let cb = try codebook(try c.getJSONObject("codebook"))
            XCTAssertEqual(try c.getInt("index_bits"), cb.indexBits)
            let z = try TestVectors.embeddings(try c.getJSONObject("z"))
            var want: [Int] = []
            let rows = try c.getJSONArray("indices")
            for t in 0..<rows.length {
                let row = try rows.getJSONArray(t)
                for g in 0..<row.length { want.append(try row.getInt(g)) }
            }
            XCTAssertEqual(want, try PayloadCodec.quantize(z, cb), name)
            let message = try TestVectors.bytes(try c.getString("message"))
            XCTAssertEqual(message, try PayloadCodec.encodeVq(z, cb), name)
            let words = try PayloadCodec.decode(message, cb)
            XCTAssertTrue(TestVectors.sameBits(try TestVectors.embeddings(try c.getJSONObject("codewords")).values, words.values))
        }
    }

    func testEveryMalformedPayloadIsRefusedWithTheListedReason() throws {
        let errors = try ix().getJSONObject("payload").getJSONObject("errors")
        let cb = try codebook(try errors.getJSONObject("codebook"))
        let cases = try errors.getJSONArray("cases")
        XCTAssertGreaterThanOrEqual(cases.length, 10)
        for i in 0..<cases.length {
            let c = try cases.getJSONObject(i)
            let name = try c.getString("name")
            let message = try TestVectors.bytes(try c.getString("message"))
            let e = assertThrows(PayloadException.self, name) { try PayloadCodec.decode(message, cb) }
            XCTAssertEqual(try c.getString("reason"), e?.reason, name)
        }
    }

    /** The message the fields describe (CHUNK: with the payload of the frame it came from). */
    private func messageOf(_ f: JSONObject, _ frame: [UInt8]) throws -> Message {
        switch try f.getString("type") {
        case "HELLO":
            return Message.Hello(try f.getString("checkpoint_sha256"), try f.getInt("split_layer"),
                                 try Codec.named(try f.getString("codec")), try f.getLong("sample_rate"),
                                 try f.getLong("chunk_samples"), try f.getLong("frame_samples"), try f.getInt("dim"),
                                 try f.getString("token"))
        case "CHUNK":
            return Message.Chunk(try f.getLong("seq"), try f.getLong("valid_samples"), Array(frame[20..<frame.count]))
        case "END":
            return Message.End(try f.getLong("chunks"))
        case "READY":
            return Message.Ready(try VeilProtocol.hexToBytes(try f.getString("session_id"), 16, "session id"),
                                 try f.getLong("max_message_bytes"), try f.getLong("max_utterance_samples"),
                                 try f.getLong("partial_window_frames"), try f.getLong("idle_timeout_ms"))
        case "PARTIAL":
            return Message.Partial(try f.getLong("seq"), try f.getLong("chunks"), try f.getLong("frames"),
                                   try f.getInt("flags"), try f.getString("text"))
        case "FINAL":
            return Message.Final(try f.getLong("chunks"), try f.getLong("frames"), try f.getString("text"))
        default:
            return Message.Error(try f.getInt("code"), try f.getString("message"))
        }
    }

    func testOneFrameOfEveryTypeEncodesFromItsFieldsAndDecodesToThem() throws {
        let cases = try ix().getJSONObject("frames").getJSONArray("cases")
        XCTAssertEqual(7, cases.length)
        for i in 0..<cases.length {
            let c = try cases.getJSONObject(i)
            let name = try c.getString("name")
            let frame = try TestVectors.bytes(try c.getString("frame"))
            let fields = try c.getJSONObject("fields")
            XCTAssertEqual(jsonFields(fields), fieldsOf(try VeilProtocol.decode(frame)), name)
            XCTAssertEqual(frame, try VeilProtocol.encode(try messageOf(fields, frame)), name)
        }
    }

    func testEveryMalformedFrameIsRefusedWithTheListedCodeAndReason() throws {
        let errors = try ix().getJSONObject("frames").getJSONArray("errors")
        for i in 0..<errors.length {
            let c = try errors.getJSONObject(i)
            let name = try c.getString("name")
            let frame = try TestVectors.bytes(try c.getString("frame"))
            let e = assertThrows(ProtocolException.self, name) { try VeilProtocol.decode(frame) }
            XCTAssertEqual(try c.getInt("code"), e?.code, name)
            XCTAssertEqual(try c.getString("error"), e?.error.name, name)
            XCTAssertEqual(try c.getString("reason"), e?.reason, name)
        }
        let concatenated = try ix().getJSONObject("frames").getJSONObject("concatenated")
        let frames = try VeilProtocol.split(try TestVectors.bytes(try concatenated.getString("frames")))
        XCTAssertEqual([MessageType.HELLO, MessageType.END], try frames.map { try VeilProtocol.decode($0).type })
        let cut = try concatenated.getJSONObject("cut")
        let cutBytes = try TestVectors.bytes(try cut.getString("frames"))
        let e = assertThrows(ProtocolException.self, "cut") { try VeilProtocol.split(cutBytes) }
        XCTAssertEqual(try cut.getString("reason"), e?.reason)
        XCTAssertEqual(try cut.getInt("code"), e?.code)
    }

    func testARealSessionSClientFramesAreWhatTheSwiftCoreEncodesFromThePrefixOutputs() throws {
        let sessions = try ix().getJSONArray("sessions")
        let manifest = try ExportManifest.parse(try TestFiles.resourceText("export-manifest.json"))
        for s in 0..<sessions.length {
            let session = try sessions.getJSONObject(s)
            let codec = try Codec.named(try session.getString("codec"))
            let client = try session.getJSONArray("client")
            for i in 0..<client.length {
                let step = try client.getJSONObject(i)
                let frame = try TestVectors.bytes(try step.getString("frame"))
                let f = try step.getJSONObject("fields")
                let mine: Message
                switch try f.getString("type") {
                case "HELLO":
                    mine = Message.Hello.forExport(manifest, codec, try f.getString("token"))
                case "CHUNK":
                    let emb = try TestVectors.embeddings(try step.getJSONObject("prefix_output"))
                    let payload = try PayloadCodec.encode(emb, codec)
                    let decoded = try TestVectors.embeddings(try step.getJSONObject("decoded"))
                    XCTAssertTrue(TestVectors.sameBits(decoded.values, try PayloadCodec.decode(payload).values))
                    mine = Message.Chunk(try f.getLong("seq"), try f.getLong("valid_samples"), payload)
                default:
                    mine = Message.End(try f.getLong("chunks"))
                }
                let stepName = try step.getString("frame")
                XCTAssertEqual(frame, try VeilProtocol.encode(mine), "\(codec.wireName) \(stepName)")
            }
            let server = try session.getJSONArray("server")
            for i in 0..<server.length {
                let step = try server.getJSONObject(i)
                XCTAssertEqual(jsonFields(try step.getJSONObject("fields")),
                               fieldsOf(try VeilProtocol.decode(try TestVectors.bytes(try step.getString("frame")))))
            }
        }
    }
}
