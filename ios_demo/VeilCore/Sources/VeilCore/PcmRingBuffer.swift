// Mirrors android_demo/core/src/main/kotlin/veil/core/PcmRingBuffer.kt
//
// Kotlin's ReentrantLock with its Condition is an NSCondition here (a mutex with one condition).
import Foundation

/**
 * A bounded single-producer / single-consumer ring of 16-bit PCM that decouples capture from inference: the audio
 * thread writes what the microphone delivers and never waits; the inference thread reads at its own pace (for
 * instance after the model finished loading). Holding `capacity` samples (default 60 s at 16 kHz, 1.9 MB), it loses
 * nothing unless the reader falls that far behind; then the oldest samples are overwritten and counted in
 * `droppedSamples`, never silently.
 */
public final class PcmRingBuffer {
    public let capacity: Int
    private var ring: [Int16]
    private let condition = NSCondition()
    private var readPos = 0
    private var writePos = 0
    private var closed = false
    private var dropped = 0

    public init(_ capacity: Int = 60 * Chunker.SAMPLE_RATE) throws {
        try require(capacity > 0, "ring capacity must be positive, got \(capacity)")
        self.capacity = capacity
        self.ring = [Int16](repeating: 0, count: capacity)
    }

    /** Samples overwritten before they were read (the reader fell more than `capacity` behind). */
    public var droppedSamples: Int {
        condition.lock()
        defer { condition.unlock() }
        return dropped
    }

    /** Samples written so far. */
    public var writtenSamples: Int {
        condition.lock()
        defer { condition.unlock() }
        return writePos
    }

    /** Samples waiting to be read. */
    public var available: Int {
        condition.lock()
        defer { condition.unlock() }
        return writePos - readPos
    }

    /** Append `length` samples; never blocks. */
    public func write(_ pcm: [Int16], _ offset: Int = 0, _ length: Int? = nil) throws {
        let length = length ?? (pcm.count - offset)
        try require(offset >= 0 && length >= 0 && offset + length <= pcm.count, "write(\(offset), \(length)) out of range")
        condition.lock()
        defer { condition.unlock() }
        try check(!closed, "ring buffer is closed")
        for i in 0..<length { ring[(writePos + i) % capacity] = pcm[offset + i] }
        writePos += length
        let behind = writePos - readPos
        if behind > capacity {
            dropped += behind - capacity
            readPos = writePos - capacity
        }
        condition.broadcast()
    }

    /**
     * Read up to `max` samples into `out`, waiting at most `timeoutMs` for the first one. Returns the count read:
     * 0 on timeout, -1 once the buffer is closed and drained.
     */
    public func read(_ out: inout [Int16], _ max: Int, _ timeoutMs: Int) throws -> Int {
        try require(max >= 0 && max <= out.count, "read of \(max) samples into \(out.count)")
        condition.lock()
        defer { condition.unlock() }
        let deadline = Date(timeIntervalSinceNow: Double(timeoutMs) / 1e3)
        while writePos == readPos {
            if closed { return -1 }
            if Date() >= deadline { return 0 }
            _ = condition.wait(until: deadline)
        }
        let n = min(max, writePos - readPos)
        for i in 0..<n { out[i] = ring[(readPos + i) % capacity] }
        readPos += n
        return n
    }

    /** No more writes: readers drain what is left, then get -1. */
    public func close() {
        condition.lock()
        defer { condition.unlock() }
        closed = true
        condition.broadcast()
    }
}
