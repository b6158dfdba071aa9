// Mirrors android_demo/core/src/test/kotlin/veil/core/PayloadCodecTest.kt
import Foundation
import VeilCore
import XCTest

/**
 * Byte identity with toolkit/payload.py on messages it produced (numpy 2.4.6): the rounding traps (half-to-even
 * int8, fp16 subnormals, -0.0) are in these inputs. The shared cross-language vectors are checked in
 * CrossLanguageVectorsTest.
 */
final class PayloadCodecTest: XCTestCase {
    // toolkit.payload.encode(np.array([[127, 2.5, -3.5, 0.5], [0.1, -127, 1.5, 33.3]], np.float32), codec)
    private let ties = try! Embeddings(2, 4, [127, 2.5, -3.5, 0.5, 0.1, -127, 1.5, 33.3])
    private let tiesWant: [(Codec, String)] = [
        (.fp32, "56504c310000020004000000fe4200002040000060c00000003fcdcccc3d0000fec20000c03f33330542"),
        (.fp16, "56504c31010002000400f057004100c30038662ef0d7003e2a50"),
        (.int8, "56504c310200020004000000803f0000803f7f02fc0000810221"),
    ]

    // rng = np.random.default_rng(0); (rng.standard_normal((3, 5)) * [[0.01], [3], [0]]).astype(np.float32)
    private let mixed = try! Embeddings(3, 5, [0.001257302239537239, -0.0013210485922172666,
        0.006404226645827293, 0.0010490011190995574, -0.0053566936403512955, 1.0847852230072021,
        3.9120001792907715, 2.841242790222168, -2.111205816268921, -3.796264410018921, -0.0, 0.0, -0.0,
        -0.0, -0.0])
    private let mixedWant: [(Codec, String)] = [
        (.fp32, "56504c3100000300050010cca43a0927adba8cdad13ba37e893a3487afbb3eda8a3f365e7a40ecd63540ff1d07c0" +
            "fff572c00000008000000000000000800000008000000080"),
        (.fp16, "56504c31010003000500261569958f1e4c147c9d573cd343af4139c098c300800000008000800080"),
        (.int8, "56504c310200030005008f815338e456fc3c0000000019e67f1596237f5cbb850000000000"),
    ]
    private let mixedInt8Decoded: [Float] = [0.0012606745585799217, -0.0013111014850437641,
        0.006404226645827293, 0.0010589666198939085, -0.005345259793102741, 1.0781103372573853,
        3.9120001792907715, 2.833889961242676, -2.125417470932007, -3.788787603378296, 0, 0, 0, 0, 0]

    private func want(_ table: [(Codec, String)], _ codec: Codec) -> String { table.first { $0.0 == codec }!.1 }

    func testEncodesByteForByteWhatToolkitPayloadEncodes() throws {
        for (codec, hex) in tiesWant { XCTAssertEqual(hex, Hex.encode(try PayloadCodec.encode(ties, codec)), codec.wireName) }
        for (codec, hex) in mixedWant { XCTAssertEqual(hex, Hex.encode(try PayloadCodec.encode(mixed, codec)), codec.wireName) }
    }

    func testInt8RoundsHalfToEvenLikeNumpyRint() throws {
        // 2.5 -> 2 and -3.5 -> -4 (half-up rounding would give 3 and -3)
        let body = Array(try PayloadCodec.encode(ties, .int8)[(10 + 8)..<(10 + 12)])
        XCTAssertEqual([127, 2, UInt8(bitPattern: -4), 0], body)
    }

    func testDecodesToTheFloatsToolkitPayloadDecodes() throws {
        let fp32 = try PayloadCodec.decode(Hex.decode(want(mixedWant, .fp32)))
        XCTAssertTrue(TestVectors.sameBits(mixed.values, fp32.values))
        let int8 = try PayloadCodec.decode(Hex.decode(want(mixedWant, .int8)))
        XCTAssertEqual(mixedInt8Decoded, int8.values)
        let fp16 = try PayloadCodec.decode(Hex.decode(want(mixedWant, .fp16)))
        XCTAssertEqual(3, fp16.frames)
        XCTAssertEqual(5, fp16.dim)
        XCTAssertEqual(3.912109375, fp16[1, 1])
        XCTAssertEqual(0.0012569427490234375, fp16[0, 0])
    }

    func testMessageSizesFollowTheHeaderAndBodyLayout() throws {
        XCTAssertEqual(10 + 4 * 50 * 144, PayloadCodec.messageBytes(.fp32, 50, 144))
        XCTAssertEqual(10 + 50 * 4 + 50 * 144, PayloadCodec.messageBytes(.int8, 50, 144))
        XCTAssertEqual(10 + 50 * 8 * 2, PayloadCodec.messageBytes(.vq, 50, 8, 16))
        let empty = try PayloadCodec.encode(try Embeddings(0, 144, []), .int8)
        XCTAssertEqual(10, empty.count)
        XCTAssertEqual(0, try PayloadCodec.decode(empty).frames)
    }

    func testRefusesWhatCannotTravel() throws {
        let nan = try Embeddings(1, 2, [1, Float.nan])
        XCTAssertEqual("nonfinite", assertThrows(PayloadException.self) { try PayloadCodec.encode(nan, .int8) }?.reason)
        let big = try Embeddings(1, 1, [65505])
        XCTAssertEqual("fp16_range", assertThrows(PayloadException.self) { try PayloadCodec.encode(big, .fp16) }?.reason)
        let tall = try Embeddings(0x10000, 0, [])
        XCTAssertEqual("too_large", assertThrows(PayloadException.self) { try PayloadCodec.encode(tall, .fp32) }?.reason)
        XCTAssertEqual("needs_codebook", assertThrows(PayloadException.self) { try PayloadCodec.encode(self.ties, .vq) }?.reason)
    }

    func testMalformedMessagesAreTypedErrors() throws {
        let good = try PayloadCodec.encode(ties, .int8)
        func reasonOf(_ message: [UInt8]) -> String? {
            assertThrows(PayloadException.self) { try PayloadCodec.decode(message) }?.reason
        }
        XCTAssertEqual("short_header", reasonOf(Array(good[0..<9])))
        XCTAssertEqual("body_size", reasonOf(Array(good[0..<(good.count - 1)])))
        XCTAssertEqual("body_size", reasonOf(good + [0]))
        var badMagic = good
        badMagic[3] = 0
        let e = assertThrows(PayloadException.self) { try PayloadCodec.decode(badMagic) }
        XCTAssertEqual("bad_magic", e?.reason)
        XCTAssertTrue(e?.message.hasSuffix("(got b'VPL\\x00')") ?? false, e?.message ?? "")
        var badCodec = good
        badCodec[4] = 9
        XCTAssertEqual("unknown_codec", reasonOf(badCodec))
        var vqInV1 = good
        vqInV1[4] = 3
        XCTAssertEqual("codec_not_in_version", reasonOf(vqInV1))
        var aux = good
        aux[5] = 1
        XCTAssertEqual("nonzero_aux", reasonOf(aux))
        // an fp32 message whose body is a NaN
        var nan = try PayloadCodec.encode(try Embeddings(1, 1, [1]), .fp32)
        nan[10] = 0; nan[11] = 0; nan[12] = 0xc0; nan[13] = 0x7f
        XCTAssertEqual("nonfinite", reasonOf(nan))
    }

    func testPythonBytesReprQuotesAndEscapesLikePython() {
        XCTAssertEqual("b'VPL1'", PayloadCodec.pythonBytesRepr(Array("VPL1".utf8)))
        XCTAssertEqual("b\"it's\"", PayloadCodec.pythonBytesRepr(Array("it's".utf8)))
        XCTAssertEqual("b'\\x00\\xff\\n\\\\'", PayloadCodec.pythonBytesRepr([0, 0xff, 10, 92]))
    }
}
