package veil.core

import java.io.File

/** How one benchmark runs: CPU threads, untimed warm-up runs after the first inference, timed iterations. */
class BenchSettings(val threads: Int, val warmup: Int, val iterations: Int) {
    init {
        require(threads >= 1) { "threads must be >= 1, got $threads" }
        require(warmup >= 0) { "warm-up runs must be >= 0, got $warmup" }
        require(iterations >= 1) { "iterations must be >= 1, got $iterations" }
    }
}

/** Proportional set size of this process in bytes (Android: Debug.getPss), or null where there is none. */
interface PssProbe {
    fun pssBytes(): Long?
}

/** One benchmark measurement of one artifact at one thread count, in the units of the bench schema. */
class BenchMeasurement(
    val threads: Int,
    val loadMs: Double,
    val firstInferenceMs: Double,
    val latency: LatencyStats,
    val chunkSeconds: Double,
    val baselineRssBytes: Long?,
    val peakRssLoadBytes: Long?,
    val rssAfterLoadBytes: Long?,
    val peakRssInferenceBytes: Long?,
    val peakRssMethod: String,
    val pssIdleBytes: Long?,
    val pssAfterLoadBytes: Long?,
    val pssAfterRunsBytes: Long?,
    val outputFrames: Int,
    val outputDim: Int,
    val outputFinite: Boolean,
    val runnerDetails: Map<String, Any?>
) {
    /** p50 latency / chunk duration. */
    val rtf: Double get() = latency.p50Ms / 1e3 / chunkSeconds
}

/**
 * The benchmark procedure of the app's benchmark mode, the phone twin of `toolkit.bench.worker.measure` (and of
 * ExecuTorch's minibench ModelRunner): baseline memory, timed load, timed first inference, untimed warm-up, timed
 * runs on one fixed input chunk. Memory is reported twice: peak RSS over the baseline from the kernel
 * (VmHWM, reset per phase where allowed: the host's method) and PSS (Android's accounting, what minibench reports).
 */
object BenchRunner {
    @JvmStatic
    fun measure(loader: PrefixLoader, artifact: ArtifactEntry, file: File, input: FloatArray, chunk: ChunkSpec,
                settings: BenchSettings, pss: PssProbe): BenchMeasurement {
        require(input.size == chunk.chunkSamples) {
            "bench input has ${input.size} samples, the prefix takes ${chunk.chunkSamples}"
        }
        System.gc()
        val resettable = ProcessMemory.resetPeak()
        val baseline = ProcessMemory.rssBytes()
        val pssIdle = pss.pssBytes()

        var t0 = System.nanoTime()
        val runner = loader.load(artifact, file, settings.threads)
        try {
            val loadMs = (System.nanoTime() - t0) / 1e6
            val loadPeak = minus(ProcessMemory.peakRssBytes(), baseline)
            val afterLoad = minus(ProcessMemory.rssBytes(), baseline)
            val pssAfterLoad = pss.pssBytes()

            ProcessMemory.resetPeak()
            t0 = System.nanoTime()
            val first = runner.run(input)
            val firstMs = (System.nanoTime() - t0) / 1e6
            for (i in 0 until settings.warmup) runner.run(input)
            val latencies = DoubleArray(settings.iterations)
            for (i in 0 until settings.iterations) {
                t0 = System.nanoTime()
                runner.run(input)
                latencies[i] = (System.nanoTime() - t0) / 1e6
            }
            val inferencePeak = minus(ProcessMemory.peakRssBytes(), baseline)
            val pssAfterRuns = pss.pssBytes()
            var finite = true
            for (v in first.values) if (v.isNaN() || v.isInfinite()) finite = false
            return BenchMeasurement(settings.threads, loadMs, firstMs, LatencyStats.of(latencies), chunk.chunkSeconds,
                baseline, loadPeak, afterLoad, inferencePeak,
                if (resettable) "VmHWM reset per phase" else "VmHWM since start (not resettable)",
                pssIdle, pssAfterLoad, pssAfterRuns, first.frames, first.dim, finite, runner.details())
        } finally {
            runner.close()
        }
    }

    private fun minus(a: Long?, b: Long?): Long? = if (a == null || b == null) null else a - b
}
