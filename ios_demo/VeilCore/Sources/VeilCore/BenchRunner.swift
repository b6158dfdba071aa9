// Mirrors android_demo/core/src/main/kotlin/veil/core/BenchRunner.kt
import Foundation

/** How one benchmark runs: CPU threads, untimed warm-up runs after the first inference, timed iterations. */
public struct BenchSettings {
    public let threads: Int
    public let warmup: Int
    public let iterations: Int

    public init(_ threads: Int, _ warmup: Int, _ iterations: Int) throws {
        try require(threads >= 1, "threads must be >= 1, got \(threads)")
        try require(warmup >= 0, "warm-up runs must be >= 0, got \(warmup)")
        try require(iterations >= 1, "iterations must be >= 1, got \(iterations)")
        self.threads = threads
        self.warmup = warmup
        self.iterations = iterations
    }
}

/**
 * The process's memory by the platform's own accounting, or nil where there is none: Android's PSS
 * (Debug.getPss), on iOS the phys_footprint that jetsam and Xcode's memory gauge use.
 */
public protocol PssProbe {
    func pssBytes() -> Int?
}

/** One benchmark measurement of one artifact at one thread count, in the units of the bench schema. */
public struct BenchMeasurement {
    public let threads: Int
    public let loadMs: Double
    public let firstInferenceMs: Double
    public let latency: LatencyStats
    public let chunkSeconds: Double
    public let baselineRssBytes: Int?
    public let peakRssLoadBytes: Int?
    public let rssAfterLoadBytes: Int?
    public let peakRssInferenceBytes: Int?
    public let peakRssMethod: String
    public let pssIdleBytes: Int?
    public let pssAfterLoadBytes: Int?
    public let pssAfterRunsBytes: Int?
    public let outputFrames: Int
    public let outputDim: Int
    public let outputFinite: Bool
    public let runnerDetails: [String: Any?]
    /** The codec the app sends this export's chunks with (PayloadEncoder: vq for a vq bottleneck). */
    public let payloadCodec: String
    /** Bytes of the message the first inference's output encodes to: what one chunk puts on the network. */
    public let payloadBytes: Int

    /** p50 latency / chunk duration. */
    public var rtf: Double { latency.p50Ms / 1e3 / chunkSeconds }

    /** Payload bytes per second of audio. */
    public var payloadBytesPerSecond: Double { Double(payloadBytes) / chunkSeconds }
}

/**
 * The benchmark procedure of the app's benchmark mode, the phone twin of `toolkit.bench.worker.measure` (and of
 * ExecuTorch's minibench ModelRunner): baseline memory, timed load, timed first inference, untimed warm-up, timed
 * runs on one fixed input chunk. Memory is reported twice: peak RSS over the baseline from the kernel (reset per
 * phase where allowed: the host's method) and the platform's own accounting through `PssProbe`. The first
 * inference's output goes through `encoder` (untimed), so the payload bytes reported are what the app sends for
 * this export: codebook indices for a vq bottleneck.
 */
public enum BenchRunner {
    /** How warm the artifact's pages were when load_ms was timed (recorded in the JSON's runtime details). */
    public static let PAGE_CACHE = "warm: the file was read for its sha256 just before the load"

    public static func measure(_ loader: PrefixLoader, _ artifact: ArtifactEntry, _ file: URL, _ input: [Float],
                               _ chunk: ChunkSpec, _ settings: BenchSettings, _ pss: PssProbe,
                               _ encoder: PayloadEncoder) throws -> BenchMeasurement {
        try require(input.count == chunk.chunkSamples,
                    "bench input has \(input.count) samples, the prefix takes \(chunk.chunkSamples)")
        // the runtime loads outside the timed load and before the memory baseline; the artifact was read moments ago
        // for its sha256 (ExportFolder.verify), so its pages are in the page cache: a warm load
        var t0 = nanoTime()
        try loader.prepareRuntime()
        let runtimeInitMs = Double(nanoTime() - t0) / 1e6
        let resettable = ProcessMemory.resetPeak()
        let baseline = ProcessMemory.rssBytes()
        let pssIdle = pss.pssBytes()

        t0 = nanoTime()
        let runner = try loader.load(artifact, file, settings.threads)
        defer { runner.close() }
        let loadMs = Double(nanoTime() - t0) / 1e6
        let loadPeak = minus(ProcessMemory.peakRssBytes(), baseline)
        let afterLoad = minus(ProcessMemory.rssBytes(), baseline)
        let pssAfterLoad = pss.pssBytes()

        _ = ProcessMemory.resetPeak()
        t0 = nanoTime()
        let first = try runner.run(input)
        let firstMs = Double(nanoTime() - t0) / 1e6
        for _ in 0..<settings.warmup { _ = try runner.run(input) }
        var latencies = [Double](repeating: 0, count: settings.iterations)
        for i in 0..<settings.iterations {
            t0 = nanoTime()
            _ = try runner.run(input)
            latencies[i] = Double(nanoTime() - t0) / 1e6
        }
        let inferencePeak = minus(ProcessMemory.peakRssBytes(), baseline)
        let pssAfterRuns = pss.pssBytes()
        var details = runner.details()
        details["runtime_init_ms"] = runtimeInitMs
        details["page_cache"] = BenchRunner.PAGE_CACHE
        var finite = true
        for v in first.values where v.isNaN || v.isInfinite { finite = false }
        let payload: [UInt8]? = try finite ? encoder.encode(first) : nil
        return BenchMeasurement(threads: settings.threads, loadMs: loadMs, firstInferenceMs: firstMs,
                                latency: try LatencyStats.of(latencies), chunkSeconds: chunk.chunkSeconds,
                                baselineRssBytes: baseline, peakRssLoadBytes: loadPeak, rssAfterLoadBytes: afterLoad,
                                peakRssInferenceBytes: inferencePeak,
                                peakRssMethod: resettable ? "VmHWM reset per phase" : "VmHWM since start (not resettable)",
                                pssIdleBytes: pssIdle, pssAfterLoadBytes: pssAfterLoad, pssAfterRunsBytes: pssAfterRuns,
                                outputFrames: first.frames, outputDim: first.dim, outputFinite: finite,
                                runnerDetails: details, payloadCodec: encoder.codec.wireName,
                                payloadBytes: payload?.count ?? 0)
    }

    private static func minus(_ a: Int?, _ b: Int?) -> Int? {
        guard let a = a, let b = b else { return nil }
        return a - b
    }

    private static func nanoTime() -> UInt64 { DispatchTime.now().uptimeNanoseconds }
}
