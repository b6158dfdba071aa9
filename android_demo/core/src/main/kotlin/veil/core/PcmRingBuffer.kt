package veil.core

import java.util.concurrent.TimeUnit
import java.util.concurrent.locks.ReentrantLock

/**
 * A bounded single-producer / single-consumer ring of 16-bit PCM that decouples capture from inference: the audio
 * thread writes what the microphone delivers and never waits; the inference thread reads at its own pace (for
 * instance after the model finished loading). Holding `capacity` samples (default 60 s at 16 kHz, 1.9 MB), it loses
 * nothing unless the reader falls that far behind; then the oldest samples are overwritten and counted in
 * [droppedSamples], never silently.
 */
class PcmRingBuffer @JvmOverloads constructor(val capacity: Int = 60 * Chunker.SAMPLE_RATE) {
    private val ring = ShortArray(capacity)
    private val lock = ReentrantLock()
    private val readable = lock.newCondition()
    private var readPos = 0L
    private var writePos = 0L
    private var closed = false
    private var dropped = 0L

    init {
        require(capacity > 0) { "ring capacity must be positive, got $capacity" }
    }

    /** Samples overwritten before they were read (the reader fell more than `capacity` behind). */
    val droppedSamples: Long
        get() {
            lock.lock()
            try { return dropped } finally { lock.unlock() }
        }

    /** Samples written so far. */
    val writtenSamples: Long
        get() {
            lock.lock()
            try { return writePos } finally { lock.unlock() }
        }

    /** Samples waiting to be read. */
    val available: Int
        get() {
            lock.lock()
            try { return (writePos - readPos).toInt() } finally { lock.unlock() }
        }

    /** Append `length` samples; never blocks. */
    @JvmOverloads
    fun write(pcm: ShortArray, offset: Int = 0, length: Int = pcm.size - offset) {
        require(offset >= 0 && length >= 0 && offset + length <= pcm.size) { "write($offset, $length) out of range" }
        lock.lock()
        try {
            check(!closed) { "ring buffer is closed" }
            for (i in 0 until length) ring[((writePos + i) % capacity).toInt()] = pcm[offset + i]
            writePos += length
            val behind = writePos - readPos
            if (behind > capacity) {
                dropped += behind - capacity
                readPos = writePos - capacity
            }
            readable.signalAll()
        } finally {
            lock.unlock()
        }
    }

    /**
     * Read up to `max` samples into `out`, waiting at most `timeoutMs` for the first one. Returns the count read:
     * 0 on timeout, -1 once the buffer is closed and drained.
     */
    fun read(out: ShortArray, max: Int, timeoutMs: Long): Int {
        require(max in 0..out.size) { "read of $max samples into ${out.size}" }
        lock.lock()
        try {
            var waitNs = TimeUnit.MILLISECONDS.toNanos(timeoutMs)
            while (writePos == readPos) {
                if (closed) return -1
                if (waitNs <= 0L) return 0
                waitNs = readable.awaitNanos(waitNs)
            }
            val n = Math.min(max.toLong(), writePos - readPos).toInt()
            for (i in 0 until n) out[i] = ring[((readPos + i) % capacity).toInt()]
            readPos += n
            return n
        } finally {
            lock.unlock()
        }
    }

    /** No more writes: readers drain what is left, then get -1. */
    fun close() {
        lock.lock()
        try {
            closed = true
            readable.signalAll()
        } finally {
            lock.unlock()
        }
    }
}
