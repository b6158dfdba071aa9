// Mirrors android_demo/core/src/test/kotlin/veil/core/ChunkerTest.kt
import Foundation
import VeilCore
import XCTest

final class ChunkerTest: XCTestCase {
    private func ramp(_ n: Int) -> [Float] { (0..<n).map { Float($0 + 1) } }

    func testAnUtteranceBecomes2SWindowsWithAZeroPaddedTailAndItsTrueLength() throws {
        let chunks = try Chunker.chunkUtterance(ramp(70000))
        XCTAssertEqual([32000, 32000, 6000], chunks.map { $0.validSamples })
        XCTAssertEqual([false, false, true], chunks.map { $0.isLast })
        let tail = chunks[2].samples
        XCTAssertEqual(32000, tail.count)
        XCTAssertEqual(64001, tail[0])
        XCTAssertEqual(70000, tail[5999])
        XCTAssertTrue(tail[6000..<32000].allSatisfy { $0 == 0 })
        XCTAssertEqual(0.375, chunks[2].validSeconds(16000))
    }

    func testLikeChunkPcmAnExactMultipleHasNoExtraWindowAndSilenceStillGivesOne() throws {
        let exact = try Chunker.chunkUtterance(ramp(64000))
        XCTAssertEqual([32000, 32000], exact.map { $0.validSamples })
        XCTAssertTrue(exact[1].isLast)
        let empty = try Chunker.chunkUtterance([])
        XCTAssertEqual(1, empty.count)
        XCTAssertEqual(0, empty[0].validSamples)
        XCTAssertEqual(32000, empty[0].samples.count)
    }

    func testStreamingPushesOfAnySizeGiveTheSameWindows() throws {
        let pcm = ramp(100001)
        let chunker = try Chunker()
        var got: [Chunk] = []
        var i = 0
        var step = 1
        while i < pcm.count {
            let n = min(step, pcm.count - i)
            got.append(contentsOf: try chunker.push(pcm, i, n))
            i += n
            step = step * 3 + 7
        }
        got.append(try XCTUnwrap(try chunker.finish()))
        let whole = try Chunker.chunkUtterance(pcm)
        XCTAssertEqual(whole.count, got.count)
        for k in 0..<whole.count {
            XCTAssertEqual(k, got[k].index)
            XCTAssertEqual(whole[k].samples, got[k].samples)
            XCTAssertEqual(whole[k].validSamples, got[k].validSamples)
        }
        XCTAssertEqual(100001, chunker.totalSamples)
    }

    func test16BitPCMIsScaledBy1Over32768AsLibsndfileReadsIt() throws {
        let chunker = try Chunker(4)
        let out = try chunker.pushPcm16([-32768, 16384, 1, 32767])
        XCTAssertEqual(1, out.count)
        XCTAssertEqual([-1.0, 0.5, 1 / 32768, 32767 / 32768] as [Float], out[0].samples)
        XCTAssertNil(try chunker.finish())
    }

    func testFramesAreTrimmedToCeilOfSamplesOverFrameSamples() throws {
        XCTAssertEqual(10, try Chunker.framesFor(6000, 640))
        XCTAssertEqual(0, try Chunker.framesFor(0, 640))
        XCTAssertEqual(1, try Chunker.framesFor(1, 640))
        let trimmer = FrameTrimmer(640)
        let chunks = try Chunker.chunkUtterance(ramp(70000))
        let kept = try chunks.map { try trimmer.validFrames($0, try Embeddings(50, 2, [Float](repeating: 0, count: 100))).frames }
        XCTAssertEqual([50, 50, 10], kept)  // ceil(70000 / 640) = 110
        XCTAssertFalse(chunks[0].isLast)
    }
}
