package veil.core

import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test

class Fp16Test {
    private fun hex(bits: Int): String = String.format(java.util.Locale.ROOT, "%04x", bits)

    @Test
    fun `matches numpy astype float16 on normals, subnormals and overflow`() {
        // np.array([1.0, 0.1, -2.5, 65504, 1e-5, 70000], np.float32).astype(np.float16).view(np.uint16)
        val values = floatArrayOf(1.0f, 0.1f, -2.5f, 65504.0f, 1e-5f, 70000.0f)
        val want = listOf("3c00", "2e66", "c100", "7bff", "00a8", "7c00")
        assertEquals(want, values.map { hex(Fp16.fromFloat(it)) })
    }

    @Test
    fun `every half survives a round trip through float32`() {
        for (bits in 0 until 0x10000) {
            val f = Fp16.toFloat(bits)
            if (f.isNaN()) {
                assertTrue(Fp16.toFloat(Fp16.fromFloat(f)).isNaN(), "NaN ${hex(bits)} stays NaN")
            } else {
                assertEquals(bits, Fp16.fromFloat(f), "half ${hex(bits)} = $f")
            }
        }
    }

    @Test
    fun `halfway between two halves rounds to the even one`() {
        // between consecutive positive finite halves h and h+1 the midpoint is exact in float32
        for (bits in 0 until 0x7bff) {
            val lo = Fp16.toFloat(bits).toDouble()
            val hi = Fp16.toFloat(bits + 1).toDouble()
            val mid = ((lo + hi) / 2).toFloat()
            val even = if (bits % 2 == 0) bits else bits + 1
            assertEquals(even, Fp16.fromFloat(mid), "midpoint of ${hex(bits)} and ${hex(bits + 1)}")
            assertEquals(bits, Fp16.fromFloat(Math.nextDown(mid)), "just below the midpoint of ${hex(bits)}")
            assertEquals(bits + 1, Fp16.fromFloat(Math.nextUp(mid)), "just above the midpoint of ${hex(bits)}")
            assertEquals(even or 0x8000, Fp16.fromFloat(-mid), "negative midpoint of ${hex(bits)}")
        }
    }

    @Test
    fun `beyond the half range is infinity and tiny values are signed zero`() {
        assertEquals(0x7bff, Fp16.fromFloat(Math.nextDown(65520.0f)))
        assertEquals(0x7c00, Fp16.fromFloat(65520.0f))
        assertEquals(0xfc00, Fp16.fromFloat(Float.NEGATIVE_INFINITY))
        assertEquals(0x0000, Fp16.fromFloat(Math.scalb(1.0f, -25)))  // half the smallest subnormal: ties to 0
        assertEquals(0x0001, Fp16.fromFloat(Math.nextUp(Math.scalb(1.0f, -25))))
        assertEquals(0x8000, Fp16.fromFloat(-1e-30f))
        assertEquals(0x0400, Fp16.fromFloat(Math.scalb(1.0f, -14)))  // smallest normal
        assertTrue(Fp16.toFloat(Fp16.fromFloat(Float.NaN)).isNaN())
    }
}
