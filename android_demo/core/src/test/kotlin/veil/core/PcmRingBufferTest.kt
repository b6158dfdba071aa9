package veil.core

import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Test

class PcmRingBufferTest {
    @Test
    fun `a slow reader loses nothing while it is within capacity`() {
        val ring = PcmRingBuffer(16000 * 10)
        val total = 16000 * 8
        // the "microphone" writes 8 s in 20 ms reads while the reader has not started (the model is loading)
        val writer = Thread(Runnable {
            val block = ShortArray(320)
            var next = 0
            while (next < total) {
                for (i in block.indices) block[i] = ((next + i) % 32749).toShort()
                ring.write(block)
                next += block.size
            }
            ring.close()
        })
        writer.start()
        writer.join()
        val out = ShortArray(1000)
        var expected = 0
        while (true) {
            val n = ring.read(out, out.size, 1000)
            if (n < 0) break
            for (i in 0 until n) {
                assertEquals((expected % 32749).toShort(), out[i])
                expected += 1
            }
        }
        assertEquals(total, expected)
        assertEquals(0L, ring.droppedSamples)
    }

    @Test
    fun `a reader too far behind loses the oldest samples and the count says so`() {
        val ring = PcmRingBuffer(100)
        ring.write(ShortArray(150) { it.toShort() })
        assertEquals(50L, ring.droppedSamples)
        val out = ShortArray(200)
        assertEquals(100, ring.read(out, 200, 0))
        assertEquals(50.toShort(), out[0])
        assertEquals(149.toShort(), out[99])
    }

    @Test
    fun `a concurrent reader gets every sample in order`() {
        val ring = PcmRingBuffer(4096)
        val total = 200000
        val received = IntArray(1)
        var ordered = true
        val reader = Thread(Runnable {
            val out = ShortArray(777)
            while (true) {
                val n = ring.read(out, out.size, 5000)
                if (n < 0) break
                for (i in 0 until n) {
                    if (out[i] != (received[0] % 30000).toShort()) ordered = false
                    received[0] += 1
                }
            }
        })
        reader.start()
        val block = ShortArray(100)
        var next = 0
        while (next < total) {
            for (i in block.indices) block[i] = ((next + i) % 30000).toShort()
            ring.write(block)
            next += block.size
            if (ring.available > 3000) Thread.sleep(1)
        }
        ring.close()
        reader.join(10000)
        assertEquals(0L, ring.droppedSamples)
        assertEquals(total, received[0])
        assertEquals(true, ordered)
        assertEquals(-1, ring.read(ShortArray(1), 1, 0))
    }
}
