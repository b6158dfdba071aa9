package veil.core

import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Test

class LatencyStatsTest {
    @Test
    fun `percentiles, mean and std are numpy's`() {
        // np.percentile(lat, [50, 90, 99]), lat.mean(), lat.std() for these latencies
        val s = LatencyStats.of(doubleArrayOf(3.2, 1.1, 7.5, 2.2, 2.2, 9.9, 0.4, 5.0, 4.4, 6.1, 8.8))
        assertEquals(11, s.runs)
        assertEquals(4.4, s.p50Ms, 1e-12)
        assertEquals(8.8, s.p90Ms, 1e-12)
        assertEquals(9.790000000000001, s.p99Ms, 1e-12)
        assertEquals(4.618181818181818, s.meanMs, 1e-12)
        assertEquals(3.0144555310636663, s.stdMs, 1e-12)
        assertEquals(0.4, s.minMs)
        assertEquals(9.9, s.maxMs)
        val one = LatencyStats.of(doubleArrayOf(2.5))
        assertEquals(2.5, one.p99Ms)
        assertEquals(0.0, one.stdMs)
    }
}
