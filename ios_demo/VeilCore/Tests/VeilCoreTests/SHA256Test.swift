// Swift only: the SHA-256 that stands in for java.security.MessageDigest (SHA256.swift), against FIPS 180-4's
// examples and Python's hashlib.
import Foundation
import VeilCore
import XCTest

final class SHA256Test: XCTestCase {
    func testTheDigestsOfTheStandardsExamplesAndOfAMillionAs() {
        XCTAssertEqual("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", SHA256.hex([UInt8]()))
        XCTAssertEqual("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", SHA256.hex(Array("abc".utf8)))
        XCTAssertEqual("248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
                       SHA256.hex(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)))
        XCTAssertEqual("cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0",
                       SHA256.hex([UInt8](repeating: 0x61, count: 1_000_000)))
    }

    func testFeedingInPiecesGivesTheSameDigestAsAllAtOnce() {
        let data = (0..<10_000).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
        var hasher = SHA256()
        var i = 0
        var step = 1
        while i < data.count {
            let n = min(step, data.count - i)
            hasher.update(data[i..<(i + n)])
            i += n
            step = step * 2 + 1
        }
        XCTAssertEqual(SHA256.hex(data), VeilProtocol.bytesToHex(hasher.finish()))
    }
}
