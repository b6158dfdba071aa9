// Mirrors android_demo/core/src/test/kotlin/veil/core/Fp16Test.kt
import Foundation
import VeilCore
import XCTest

final class Fp16Test: XCTestCase {
    private func hex(_ bits: Int) -> String { String(format: "%04x", UInt32(bits)) }

    func testMatchesNumpyAstypeFloat16OnNormalsSubnormalsAndOverflow() {
        // np.array([1.0, 0.1, -2.5, 65504, 1e-5, 70000], np.float32).astype(np.float16).view(np.uint16)
        let values: [Float] = [1.0, 0.1, -2.5, 65504.0, 1e-5, 70000.0]
        let want = ["3c00", "2e66", "c100", "7bff", "00a8", "7c00"]
        XCTAssertEqual(want, values.map { hex(Fp16.fromFloat($0)) })
    }

    func testEveryHalfSurvivesARoundTripThroughFloat32() {
        for bits in 0..<0x10000 {
            let f = Fp16.toFloat(bits)
            if f.isNaN {
                if !Fp16.toFloat(Fp16.fromFloat(f)).isNaN { XCTFail("NaN \(hex(bits)) stays NaN") }
            } else if Fp16.fromFloat(f) != bits {
                XCTFail("half \(hex(bits)) = \(f)")
            }
        }
    }

    func testHalfwayBetweenTwoHalvesRoundsToTheEvenOne() {
        // between consecutive positive finite halves h and h+1 the midpoint is exact in float32
        for bits in 0..<0x7bff {
            let lo = Double(Fp16.toFloat(bits))
            let hi = Double(Fp16.toFloat(bits + 1))
            let mid = Float((lo + hi) / 2)
            let even = bits % 2 == 0 ? bits : bits + 1
            if Fp16.fromFloat(mid) != even { XCTFail("midpoint of \(hex(bits)) and \(hex(bits + 1))") }
            if Fp16.fromFloat(mid.nextDown) != bits { XCTFail("just below the midpoint of \(hex(bits))") }
            if Fp16.fromFloat(mid.nextUp) != bits + 1 { XCTFail("just above the midpoint of \(hex(bits))") }
            if Fp16.fromFloat(-mid) != even | 0x8000 { XCTFail("negative midpoint of \(hex(bits))") }
        }
    }

    func testBeyondTheHalfRangeIsInfinityAndTinyValuesAreSignedZero() {
        let twoToThe25th = Float(sign: .plus, exponent: -25, significand: 1)
        XCTAssertEqual(0x7bff, Fp16.fromFloat(Float(65520.0).nextDown))
        XCTAssertEqual(0x7c00, Fp16.fromFloat(65520.0))
        XCTAssertEqual(0xfc00, Fp16.fromFloat(-Float.infinity))
        XCTAssertEqual(0x0000, Fp16.fromFloat(twoToThe25th))  // half the smallest subnormal: ties to 0
        XCTAssertEqual(0x0001, Fp16.fromFloat(twoToThe25th.nextUp))
        XCTAssertEqual(0x8000, Fp16.fromFloat(-1e-30))
        XCTAssertEqual(0x0400, Fp16.fromFloat(Float(sign: .plus, exponent: -14, significand: 1)))  // smallest normal
        XCTAssertTrue(Fp16.toFloat(Fp16.fromFloat(Float.nan)).isNaN)
    }
}
