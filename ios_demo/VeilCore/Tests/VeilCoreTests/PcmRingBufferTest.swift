// Mirrors android_demo/core/src/test/kotlin/veil/core/PcmRingBufferTest.kt
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import VeilCore
import XCTest

final class PcmRingBufferTest: XCTestCase {
    func testASlowReaderLosesNothingWhileItIsWithinCapacity() throws {
        let ring = try PcmRingBuffer(16000 * 10)
        let total = 16000 * 8
        let written = DispatchSemaphore(value: 0)
        // the "microphone" writes 8 s in 20 ms reads while the reader has not started (the model is loading)
        let writer = Thread {
            var block = [Int16](repeating: 0, count: 320)
            var next = 0
            while next < total {
                for i in 0..<block.count { block[i] = Int16((next + i) % 32749) }
                try? ring.write(block)
                next += block.count
            }
            ring.close()
            written.signal()
        }
        writer.start()
        XCTAssertEqual(.success, written.wait(timeout: .now() + 30))
        var out = [Int16](repeating: 0, count: 1000)
        var expected = 0
        var mismatches = 0
        while true {
            let n = try ring.read(&out, 1000, 1000)
            if n < 0 { break }
            for i in 0..<n {
                if out[i] != Int16(expected % 32749) { mismatches += 1 }
                expected += 1
            }
        }
        XCTAssertEqual(0, mismatches)
        XCTAssertEqual(total, expected)
        XCTAssertEqual(0, ring.droppedSamples)
    }

    func testAReaderTooFarBehindLosesTheOldestSamplesAndTheCountSaysSo() throws {
        let ring = try PcmRingBuffer(100)
        try ring.write((0..<150).map { Int16($0) })
        XCTAssertEqual(50, ring.droppedSamples)
        var out = [Int16](repeating: 0, count: 200)
        let n = try ring.read(&out, 200, 0)
        XCTAssertEqual(100, n)
        XCTAssertEqual(50, out[0])
        XCTAssertEqual(149, out[99])
    }

    /** What the reader thread saw (written by it before it signals, read after the wait). */
    private final class ReaderResult {
        var received = 0
        var ordered = true
    }

    func testAConcurrentReaderGetsEverySampleInOrder() throws {
        let ring = try PcmRingBuffer(4096)
        let total = 200000
        let result = ReaderResult()
        let done = DispatchSemaphore(value: 0)
        let reader = Thread {
            var out = [Int16](repeating: 0, count: 777)
            var count = 0
            var inOrder = true
            while true {
                guard let n = try? ring.read(&out, 777, 5000), n >= 0 else { break }
                for i in 0..<n {
                    if out[i] != Int16(count % 30000) { inOrder = false }
                    count += 1
                }
            }
            result.received = count
            result.ordered = inOrder
            done.signal()
        }
        reader.start()
        var block = [Int16](repeating: 0, count: 100)
        var next = 0
        while next < total {
            for i in 0..<block.count { block[i] = Int16((next + i) % 30000) }
            try ring.write(block)
            next += block.count
            if ring.available > 3000 { usleep(1000) }
        }
        ring.close()
        XCTAssertEqual(.success, done.wait(timeout: .now() + 10))
        XCTAssertEqual(0, ring.droppedSamples)
        XCTAssertEqual(total, result.received)
        XCTAssertTrue(result.ordered)
        var one = [Int16](repeating: 0, count: 1)
        let end = try ring.read(&one, 1, 0)
        XCTAssertEqual(-1, end)
    }
}
