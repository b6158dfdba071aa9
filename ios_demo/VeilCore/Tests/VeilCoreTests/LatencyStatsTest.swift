// Mirrors android_demo/core/src/test/kotlin/veil/core/LatencyStatsTest.kt
import Foundation
import VeilCore
import XCTest

final class LatencyStatsTest: XCTestCase {
    func testPercentilesMeanAndStdAreNumpyS() throws {
        // np.percentile(lat, [50, 90, 99]), lat.mean(), lat.std() for these latencies
        let s = try LatencyStats.of([3.2, 1.1, 7.5, 2.2, 2.2, 9.9, 0.4, 5.0, 4.4, 6.1, 8.8])
        XCTAssertEqual(11, s.runs)
        XCTAssertEqual(4.4, s.p50Ms, accuracy: 1e-12)
        XCTAssertEqual(8.8, s.p90Ms, accuracy: 1e-12)
        XCTAssertEqual(9.790000000000001, s.p99Ms, accuracy: 1e-12)
        XCTAssertEqual(4.618181818181818, s.meanMs, accuracy: 1e-12)
        XCTAssertEqual(3.0144555310636663, s.stdMs, accuracy: 1e-12)
        XCTAssertEqual(0.4, s.minMs)
        XCTAssertEqual(9.9, s.maxMs)
        let one = try LatencyStats.of([2.5])
        XCTAssertEqual(2.5, one.p99Ms)
        XCTAssertEqual(0.0, one.stdMs)
    }
}
