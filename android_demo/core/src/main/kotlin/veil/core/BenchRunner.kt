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
    val runnerDetails: Map<String, Any?>,
    /** The codec the app sends this export's chunks with (PayloadEncoder: vq for a vq bottleneck). */
    val payloadCodec: String,
    /** Bytes of the message the first inference's output encodes to: what one chunk puts on the network. */
    val payloadBytes: Int
) {
    /** p50 latency / chunk duration. */
    val rtf: Double get() = latency.p50Ms / 1e3 / chunkSeconds

    /** Payload bytes per second of audio. */
    val payloadBytesPerSecond: Double get() = payloadBytes / chunkSeconds
}

/**
 * The benchmark procedure of the app's benchmark mode, the phone twin of `toolkit.bench.worker.measure` (and of
 * ExecuTorch's minibench ModelRunner): baseline memory, timed load, timed first inference, untimed warm-up, timed
 * runs on one fixed input chunk. The runtime's native library is loaded before the timed load (its time is
 * `runtime_init_ms`), and the load is warm: the file is in the page cache from its sha256 check. Memory is reported twice: peak RSS over the baseline from the kernel
 * (VmHWM, reset per phase where allowed: the host's method) and PSS (Android's accounting, what minibench reports).
 * The first inference's output goes through `encoder` (untimed), so the payload bytes reported are what the app
 * sends for this export: codebook indices for a vq bottleneck.
 */
object BenchRunner {
    @JvmStatic
    fun measure(loader: PrefixLoader, artifact: ArtifactEntry, file: File, input: FloatArray, chunk: ChunkSpec,
                settings: BenchSettings, pss: PssProbe, encoder: PayloadEncoder): BenchMeasurement {
        require(input.size == chunk.chunkSamples) {
            "bench input has ${input.size} samples, the prefix takes ${chunk.chunkSamples}"
        }
        // the runtime's JNI library loads outside the timed load and before the memory baseline; the artifact was
        // read moments ago for its sha256 (ExportFolder.verify), so its pages are in the page cache: a warm load
        var t0 = System.nanoTime()
        loader.prepareRuntime()
        val runtimeInitMs = (System.nanoTime() - t0) / 1e6
        System.gc()
        val resettable = ProcessMemory.resetPeak()
        val baseline = ProcessMemory.rssBytes()
        val pssIdle = pss.pssBytes()

        t0 = System.nanoTime()
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
            val payload = if (finite) encoder.encode(first) else null
            return BenchMeasurement(settings.threads, loadMs, firstMs, LatencyStats.of(latencies), chunk.chunkSeconds,
                baseline, loadPeak, afterLoad, inferencePeak,
                if (resettable) "VmHWM reset per phase" else "VmHWM since start (not resettable)",
                pssIdle, pssAfterLoad, pssAfterRuns, first.frames, first.dim, finite, runner.details() +
                    mapOf("runtime_init_ms" to runtimeInitMs, "page_cache" to PAGE_CACHE),
                encoder.codec.wireName, payload?.size ?: 0)
        } finally {
            runner.close()
        }
    }

    /** How warm the artifact's pages were when load_ms was timed (recorded in the JSON's runtime details). */
    const val PAGE_CACHE = "warm: the file was read for its sha256 just before the load"

    private fun minus(a: Long?, b: Long?): Long? = if (a == null || b == null) null else a - b
}
