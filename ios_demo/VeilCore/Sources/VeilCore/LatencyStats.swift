// Mirrors android_demo/core/src/main/kotlin/veil/core/LatencyStats.kt
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/**
 * Summary of per-run latencies in milliseconds, computed as `toolkit.bench.runner.latency_summary` does with numpy:
 * percentiles by linear interpolation between order statistics (numpy's default method), population std.
 */
public struct LatencyStats {
    public let runs: Int
    public let p50Ms: Double
    public let p90Ms: Double
    public let p99Ms: Double
    public let meanMs: Double
    public let minMs: Double
    public let maxMs: Double
    public let stdMs: Double

    public static func of(_ latenciesMs: [Double]) throws -> LatencyStats {
        try require(!latenciesMs.isEmpty, "no latencies to summarize")
        let sorted = latenciesMs.sorted()
        var sum = 0.0
        for v in latenciesMs { sum += v }
        let mean = sum / Double(latenciesMs.count)
        var squares = 0.0
        for v in latenciesMs { squares += (v - mean) * (v - mean) }
        return LatencyStats(runs: latenciesMs.count, p50Ms: try percentile(sorted, 50.0),
                            p90Ms: try percentile(sorted, 90.0), p99Ms: try percentile(sorted, 99.0), meanMs: mean,
                            minMs: sorted[0], maxMs: sorted[sorted.count - 1],
                            stdMs: (squares / Double(latenciesMs.count)).squareRoot())
    }

    /** numpy.percentile(a, q) of ascending `sorted` (method "linear", numpy's lerp). */
    public static func percentile(_ sorted: [Double], _ q: Double) throws -> Double {
        try require(!sorted.isEmpty, "percentile of nothing")
        let h = Double(sorted.count - 1) * (q / 100.0)
        let lo = Int(floor(h))
        let hi = min(lo + 1, sorted.count - 1)
        let t = h - Double(lo)
        let a = sorted[lo]
        let b = sorted[hi]
        let diff = b - a
        return t >= 0.5 ? b - diff * (1.0 - t) : a + diff * t
    }
}
