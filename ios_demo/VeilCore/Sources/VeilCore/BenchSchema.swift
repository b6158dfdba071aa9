// Mirrors android_demo/core/src/main/kotlin/veil/core/BenchSchema.kt
//
// The document's keys are the Kotlin writer's, in the same order; what describes the phone differs by platform:
// `device.kind` is "ios" and `via` "xctest" (the benchmark runs as the app's XCTest), and the OS is named by
// system_name / system_version where Android writes sdk_int / release.
import Foundation

/** The phone, as the bench JSON's `host` and `device` describe it (filled from utsname/ProcessInfo by the app). */
public struct DeviceInfo {
    public let manufacturer: String
    /** The hardware model identifier, e.g. "iPhone15,2". */
    public let model: String
    public let abi: String
    public let systemName: String
    public let systemVersion: String
    public let soc: String?
    public let cores: Int
    public let totalMemBytes: Int?

    public init(_ manufacturer: String, _ model: String, _ abi: String, _ systemName: String, _ systemVersion: String,
                _ soc: String?, _ cores: Int, _ totalMemBytes: Int?) {
        self.manufacturer = manufacturer
        self.model = model
        self.abi = abi
        self.systemName = systemName
        self.systemVersion = systemVersion
        self.soc = soc
        self.cores = cores
        self.totalMemBytes = totalMemBytes
    }
}

/** The app that measured: its bundle identifier, version and build type (benchmarks refuse debug builds). */
public struct AppInfo {
    public let packageName: String
    public let versionName: String
    public let buildType: String
    public let debuggable: Bool

    public init(_ packageName: String, _ versionName: String, _ buildType: String, _ debuggable: Bool) {
        self.packageName = packageName
        self.versionName = versionName
        self.buildType = buildType
        self.debuggable = debuggable
    }
}

/** What was run: the export on the device, the command that started the run, and the input chunk. */
public struct BenchContext {
    public let runId: String
    public let command: String
    public let exportDir: String
    public let manifest: ExportManifest
    public let inputDescription: String
    public let settings: BenchSettings
    public let createdAt: String
    public let wallSeconds: Double

    public init(_ runId: String, _ command: String, _ exportDir: String, _ manifest: ExportManifest,
                _ inputDescription: String, _ settings: BenchSettings, _ createdAt: String, _ wallSeconds: Double) {
        self.runId = runId
        self.command = command
        self.exportDir = exportDir
        self.manifest = manifest
        self.inputDescription = inputDescription
        self.settings = settings
        self.createdAt = createdAt
        self.wallSeconds = wallSeconds
    }
}

/**
 * Writes the `veil bench` JSON (format veil-bench/1, the schema `toolkit/bench/report.py` validates) from the app's
 * benchmark, so that a phone run reads like a host run: the same artifact rows and measurement keys (load_ms,
 * first_inference_ms, p50/p90/p99_ms, rtf, peak_rss_*_bytes), plus the platform's memory accounting in the pss_*
 * keys (phys_footprint on iOS). What a phone does not measure (machine ceiling, payload ΔWER, targets) is marked
 * "not measured". A run that could not measure writes a document with status "failed" and the error instead.
 */
public enum BenchSchema {
    public static let FORMAT = "veil-bench/1"
    public static let TOOL = "veil-app"
    /** Recipes whose encoder computes in int8 (toolkit.bench.bench.INT8_RECIPES). */
    public static let INT8_RECIPES: [String] = ["int8-static", "int8-dynamic", "8da4w", "int8-weights", "palettized-4bit"]

    public static func computeDtype(_ recipe: String) -> String { INT8_RECIPES.contains(recipe) ? "int8" : "fp32" }

    public static func measurement(_ m: BenchMeasurement) -> JSONObject {
        let o = JSONObject()
        o.put("status", "ok")
        o.put("threads", m.threads)
        o.put("load_ms", m.loadMs)
        o.put("first_inference_ms", m.firstInferenceMs)
        o.put("runs", m.latency.runs)
        o.put("p50_ms", m.latency.p50Ms)
        o.put("p90_ms", m.latency.p90Ms)
        o.put("p99_ms", m.latency.p99Ms)
        o.put("mean_ms", m.latency.meanMs)
        o.put("min_ms", m.latency.minMs)
        o.put("max_ms", m.latency.maxMs)
        o.put("std_ms", m.latency.stdMs)
        o.put("latency_statistic", "p50")
        o.put("rtf", m.rtf)
        o.put("peak_rss_load_bytes", orNull(m.peakRssLoadBytes))
        o.put("peak_rss_inference_bytes", orNull(m.peakRssInferenceBytes))
        o.put("rss_after_load_bytes", orNull(m.rssAfterLoadBytes))
        o.put("baseline_rss_bytes", orNull(m.baselineRssBytes))
        o.put("peak_rss_method", m.peakRssMethod)
        o.put("pss_idle_bytes", orNull(m.pssIdleBytes))
        o.put("pss_after_load_bytes", orNull(m.pssAfterLoadBytes))
        o.put("pss_after_runs_bytes", orNull(m.pssAfterRunsBytes))
        o.put("pss_load_delta_bytes", orNull(delta(m.pssAfterLoadBytes, m.pssIdleBytes)))
        o.put("output_shape", JSONArray([.int(1), .int(m.outputFrames), .int(m.outputDim)]))
        o.put("output_finite", m.outputFinite)
        o.put("runtime", toJson(m.runnerDetails))
        o.put("payload_codec", m.payloadCodec)
        o.put("payload_bytes_per_chunk", m.payloadBytes)
        o.put("payload_bytes_per_second", m.payloadBytesPerSecond)
        return o
    }

    public static func failedMeasurement(_ threads: Int, _ error: String) -> JSONObject {
        let o = JSONObject()
        o.put("status", "failed")
        o.put("threads", threads)
        o.put("error", error)
        return o
    }

    /** One artifact row (toolkit.bench.bench.artifact_targets' keys, plus file and tool). */
    public static func artifactRow(_ entry: ArtifactEntry, _ runtimeName: String, _ measurements: [JSONObject]) -> JSONObject {
        let o = JSONObject()
        o.put("name", entry.displayName)
        o.put("role", "artifact")
        o.put("backend", entry.backend)
        o.put("recipe", entry.recipe)
        o.put("runtime", runtimeName)
        o.put("dtype", computeDtype(entry.recipe))
        o.put("file", entry.file)
        o.put("sha256", entry.sha256)
        o.put("size_bytes", entry.sizeBytes)
        o.put("tool", TOOL)
        o.put("measurements", JSONArray(measurements.map { JSONValue.object($0) }))
        return o
    }

    /** The whole document of a finished run. */
    public static func document(_ ctx: BenchContext, _ device: DeviceInfo, _ app: AppInfo,
                                _ artifacts: [JSONObject]) -> JSONObject {
        let m = ctx.manifest
        let doc = JSONObject()
        doc.put("format", FORMAT)
        doc.put("status", "ok")
        doc.put("run_id", ctx.runId)
        doc.put("created_at", ctx.createdAt)
        doc.put("command", ctx.command)
        doc.put("host", host(device))
        doc.put("wall_seconds", ctx.wallSeconds)
        doc.put("export_dirs", JSONArray([.string(ctx.exportDir)]))
        doc.put("checkpoint", JSONObject().put("sha256", m.checkpointSha256)
            .put("path", m.raw.optJSONObject("checkpoint")?.optString("path", "") ?? ""))
        doc.put("split_layer", m.splitLayer)
        doc.put("chunk", JSONObject().put("samples", m.chunk.chunkSamples).put("seconds", m.chunk.chunkSeconds)
            .put("input", ctx.inputDescription))
        doc.put("prefix", JSONObject().put("embedding_dim", m.embeddingDim)
            .put("frames_per_chunk", m.chunk.framesPerChunk))
        doc.put("settings", JSONObject()
            .put("threads", JSONArray([.int(ctx.settings.threads)]))
            .put("runs", ctx.settings.iterations)
            .put("warmup", ctx.settings.warmup)
            .put("quick", false)
            .put("rounds", 1)
            .put("process", "the app's XCTest benchmark, one compute-unit setting after the other in one process")
            .put("latency", "wall time of one Core ML prediction on one chunk (DispatchTime); Core ML picks its own " +
                "threads, the threads field is 1")
            .put("rtf", "p50 latency / chunk duration")
            .put("memory", "peak RSS over the baseline before load (Mach resident_size_max, not resettable); " +
                "phys_footprint (idle, after load, after the timed runs) in the pss_* keys"))
        doc.put("artifacts", JSONArray(artifacts.map { JSONValue.object($0) }))
        doc.put("ceiling", JSONObject().put("status", "skipped").put("reason", "not measured on the phone"))
        doc.put("payload", JSONObject().put("status", "not measured"))
        let notMeasured = JSONObject().put("status", "not measured")
        doc.put("targets", JSONObject().put("speed", notMeasured).put("size", notMeasured.copy())
            .put("payload", notMeasured.copy()))
        doc.put("device", deviceSection(device, app))
        return doc
    }

    /** The document of a run that measured nothing: status failed and the reason (e.g. a debug build). */
    public static func failure(_ runId: String, _ command: String, _ createdAt: String, _ error: String,
                               _ device: DeviceInfo, _ app: AppInfo) -> JSONObject {
        let doc = JSONObject()
        doc.put("format", FORMAT)
        doc.put("status", "failed")
        doc.put("run_id", runId)
        doc.put("created_at", createdAt)
        doc.put("command", command)
        doc.put("error", error)
        doc.put("host", host(device))
        doc.put("device", deviceSection(device, app))
        return doc
    }

    /** Write `doc` to `file` through a temporary file and a rename: a reader never sees half a document. */
    public static func write(_ file: URL, _ doc: JSONObject) throws {
        let dir = file.deletingLastPathComponent()
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try Data((doc.toString(1) + "\n").utf8).write(to: file, options: .atomic)
    }

    private static func host(_ d: DeviceInfo) -> JSONObject {
        JSONObject()
            .put("hostname", "\(d.manufacturer) \(d.model)")
            .put("platform", "\(d.systemName) \(d.systemVersion) \(d.abi)")
            .put("cpu", d.soc ?? d.abi)
            .put("cores", d.cores)
    }

    private static func deviceSection(_ d: DeviceInfo, _ app: AppInfo) -> JSONObject {
        JSONObject()
            .put("kind", "ios")
            .put("via", "xctest")
            .put("manufacturer", d.manufacturer)
            .put("model", d.model)
            .put("abi", d.abi)
            .put("system_name", d.systemName)
            .put("system_version", d.systemVersion)
            .put("soc", d.soc.map { JSONValue.string($0) } ?? .null)
            .put("total_mem_bytes", orNull(d.totalMemBytes))
            .put("app", JSONObject().put("package", app.packageName).put("version", app.versionName)
                .put("build_type", app.buildType).put("debuggable", app.debuggable))
    }

    private static func delta(_ a: Int?, _ b: Int?) -> Int? {
        guard let a = a, let b = b else { return nil }
        return a - b
    }

    private static func orNull(_ v: Int?) -> JSONValue { v.map { JSONValue.int($0) } ?? .null }

    /** Plain values, lists, arrays of strings and nested maps -> JSON. */
    public static func toJson(_ map: [String: Any?]) -> JSONObject {
        let o = JSONObject()
        for k in map.keys.sorted() { o.put(k, jsonValue(map[k] ?? nil)) }
        return o
    }

    private static func jsonValue(_ v: Any?) -> JSONValue {
        guard let v = v else { return .null }
        switch v {
        case let b as Bool: return .bool(b)
        case let i as Int: return .int(i)
        case let d as Double: return d.isNaN || d.isInfinite ? .null : .double(d)
        case let f as Float: return f.isNaN || f.isInfinite ? .null : .double(Double(f))
        case let s as String: return .string(s)
        case let m as [String: Any?]: return .object(toJson(m))
        case let m as [String: Any]: return .object(toJson(m.mapValues { Optional($0) }))
        case let l as [Any?]: return .array(JSONArray(l.map { jsonValue($0) }))
        case let l as [Any]: return .array(JSONArray(l.map { jsonValue($0) }))
        case let x as JSONValue: return x
        default: return .string(String(describing: v))
        }
    }
}
