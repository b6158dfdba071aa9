// Mirrors android_demo/core/src/test/kotlin/veil/core/VqCodecTest.kt
import Foundation
import VeilCore
import XCTest

final class VqCodecTest: XCTestCase {
    /** G = 2 groups of K = 3 codewords of dg = 2 dims. */
    private let codebook = try! Codebook(2, 3, 2, [
        0, 0, 1, 1, -1, 2,      // group 0
        5, 5, 0, 0, 5, 5,       // group 1: codewords 0 and 2 are equal (first wins)
    ])

    func testNearestCodewordPerGroupFirstMinimumWins() throws {
        let z = try Embeddings(2, 4, [0.9, 1.2, 4, 6, -0.4, 0.9, 0.1, -0.1])
        // frame 0: group 0 -> codeword 1 (0.05), group 1 -> codeword 0 (2.0, tied with codeword 2);
        // frame 1: group 0 -> codeword 0 (0.97 against 1.97 and 1.57), group 1 -> codeword 1 (0.02)
        XCTAssertEqual([1, 0, 0, 1], try PayloadCodec.quantize(z, codebook))
    }

    func testVqMessagesAreVPL2With8BitIndicesWhenKFitsAByte() throws {
        let z = try Embeddings(2, 4, [0.9, 1.2, 4, 6, -0.4, 0.9, 0.1, -0.1])
        let m = try PayloadCodec.encodeVq(z, codebook)
        XCTAssertEqual("56504c32" + "03" + "08" + "0200" + "0200" + "01000001", Hex.encode(m))
        let (header, indices) = try PayloadCodec.decodeIndices(m)
        XCTAssertEqual(Codec.vq, header.codec)
        XCTAssertEqual([1, 0, 0, 1], indices)
        let decoded = try PayloadCodec.decode(m, codebook)
        XCTAssertEqual([1, 1, 5, 5, 0, 0, 0, 0], decoded.values)
    }

    func testMoreThan256CodewordsTake16BitIndices() throws {
        let k = 300
        let values = (0..<k).map { Float($0) }
        let big = try Codebook(1, k, 1, values)
        let m = try PayloadCodec.encodeVq(try Embeddings(2, 1, [299.2, 3.4]), big)
        XCTAssertEqual("56504c32" + "03" + "10" + "0200" + "0100" + "2b01" + "0300", Hex.encode(m))
        XCTAssertEqual([299, 3], try PayloadCodec.decode(m, big).values)
    }

    func testVqDecodingRefusesWhatDoesNotFitTheCodebook() throws {
        let m = try PayloadCodec.encodeVq(try Embeddings(1, 4, [0, 0, 0, 0]), codebook)
        XCTAssertEqual("needs_codebook", assertThrows(PayloadException.self) { try PayloadCodec.decode(m) }?.reason)
        var outOfRange = m
        outOfRange[10] = 3
        XCTAssertEqual("index_out_of_range",
                       assertThrows(PayloadException.self) { try PayloadCodec.decode(outOfRange, self.codebook) }?.reason)
        var badWidth = m
        badWidth[5] = 12
        XCTAssertEqual("bad_index_width",
                       assertThrows(PayloadException.self) { try PayloadCodec.decode(badWidth, self.codebook) }?.reason)
        let other = try Codebook(1, 3, 4, [Float](repeating: 0, count: 12))
        XCTAssertEqual("bad_shape", assertThrows(PayloadException.self) { try PayloadCodec.decode(m, other) }?.reason)
    }

    func testVPL2AlsoCarriesTheFloatCodecs() throws {
        let v1 = try PayloadCodec.encode(try Embeddings(1, 2, [1.5, -2]), .fp16)
        var v2 = v1
        v2[3] = 0x32  // "VPL2"
        XCTAssertEqual(try PayloadCodec.decode(v1).values, try PayloadCodec.decode(v2).values)
    }
}
