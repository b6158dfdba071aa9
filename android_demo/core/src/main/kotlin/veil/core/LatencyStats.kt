package veil.core

/**
 * Summary of per-run latencies in milliseconds, computed as `toolkit.bench.runner.latency_summary` does with numpy:
 * percentiles by linear interpolation between order statistics (numpy's default method), population std.
 */
class LatencyStats(
    val runs: Int,
    val p50Ms: Double,
    val p90Ms: Double,
    val p99Ms: Double,
    val meanMs: Double,
    val minMs: Double,
    val maxMs: Double,
    val stdMs: Double
) {
    companion object {
        @JvmStatic
        fun of(latenciesMs: DoubleArray): LatencyStats {
            require(latenciesMs.isNotEmpty()) { "no latencies to summarize" }
            val sorted = latenciesMs.copyOf()
            java.util.Arrays.sort(sorted)
            var sum = 0.0
            for (v in latenciesMs) sum += v
            val mean = sum / latenciesMs.size
            var squares = 0.0
            for (v in latenciesMs) squares += (v - mean) * (v - mean)
            return LatencyStats(latenciesMs.size, percentile(sorted, 50.0), percentile(sorted, 90.0),
                percentile(sorted, 99.0), mean, sorted[0], sorted[sorted.size - 1],
                Math.sqrt(squares / latenciesMs.size))
        }

        /** numpy.percentile(a, q) of ascending `sorted` (method "linear", numpy's lerp). */
        @JvmStatic
        fun percentile(sorted: DoubleArray, q: Double): Double {
            require(sorted.isNotEmpty()) { "percentile of nothing" }
            val h = (sorted.size - 1) * (q / 100.0)
            val lo = Math.floor(h).toInt()
            val hi = Math.min(lo + 1, sorted.size - 1)
            val t = h - lo
            val a = sorted[lo]
            val b = sorted[hi]
            val diff = b - a
            return if (t >= 0.5) b - diff * (1.0 - t) else a + diff * t
        }
    }
}
