package veil.core

import java.io.File
import java.io.FileOutputStream
import org.json.JSONArray
import org.json.JSONObject

/** The phone, as the bench JSON's `host` and `device` describe it (filled from android.os.Build by the app). */
class DeviceInfo(
    val manufacturer: String,
    val model: String,
    val abi: String,
    val sdkInt: Int,
    val release: String,
    val soc: String?,
    val cores: Int,
    val totalMemBytes: Long?
)

/** The app that measured: its package, version and build type (benchmarks refuse debug builds). */
class AppInfo(val packageName: String, val versionName: String, val buildType: String, val debuggable: Boolean)

/** What was run: the export on the device, the command that started the run, and the input chunk. */
class BenchContext(
    val runId: String,
    val command: String,
    val exportDir: String,
    val manifest: ExportManifest,
    val inputDescription: String,
    val settings: BenchSettings,
    val createdAt: String,
    val wallSeconds: Double
)

/**
 * Writes the `veil bench` JSON (format veil-bench/1, the schema `toolkit/bench/report.py` validates) from the app's
 * benchmark mode, so that a phone run reads like a host run: the same artifact rows and measurement keys
 * (load_ms, first_inference_ms, p50/p90/p99_ms, rtf, peak_rss_*_bytes), plus PSS. What a phone does not measure
 * (machine ceiling, payload ΔWER, targets) is marked "not measured". `veil bench --device android --app` validates
 * the document with report.validate and merges its rows beside the host's and the native runners'.
 * A run that could not measure writes a document with status "failed" and the error instead.
 */
object BenchSchema {
    const val FORMAT = "veil-bench/1"
    const val TOOL = "veil-app"
    /** Recipes whose encoder computes in int8 (toolkit.bench.bench.INT8_RECIPES). */
    @JvmField
    val INT8_RECIPES: List<String> = listOf("int8-static", "int8-dynamic", "8da4w", "int8-weights", "palettized-4bit")

    @JvmStatic
    fun computeDtype(recipe: String): String = if (INT8_RECIPES.contains(recipe)) "int8" else "fp32"

    @JvmStatic
    fun measurement(m: BenchMeasurement): JSONObject {
        val o = JSONObject()
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
        o.put("output_shape", JSONArray(listOf(1, m.outputFrames, m.outputDim)))
        o.put("output_finite", m.outputFinite)
        o.put("runtime", toJson(m.runnerDetails))
        o.put("payload_codec", m.payloadCodec)
        o.put("payload_bytes_per_chunk", m.payloadBytes)
        o.put("payload_bytes_per_second", m.payloadBytesPerSecond)
        return o
    }

    @JvmStatic
    fun failedMeasurement(threads: Int, error: String): JSONObject {
        val o = JSONObject()
        o.put("status", "failed")
        o.put("threads", threads)
        o.put("error", error)
        return o
    }

    /** One artifact row (toolkit.bench.bench.artifact_targets' keys, plus file and tool). */
    @JvmStatic
    fun artifactRow(entry: ArtifactEntry, runtimeName: String, measurements: List<JSONObject>): JSONObject {
        val o = JSONObject()
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
        o.put("measurements", JSONArray(measurements))
        return o
    }

    /** The whole document of a finished run. */
    @JvmStatic
    fun document(ctx: BenchContext, device: DeviceInfo, app: AppInfo, artifacts: List<JSONObject>): JSONObject {
        val m = ctx.manifest
        val doc = JSONObject()
        doc.put("format", FORMAT)
        doc.put("status", "ok")
        doc.put("run_id", ctx.runId)
        doc.put("created_at", ctx.createdAt)
        doc.put("command", ctx.command)
        doc.put("host", host(device))
        doc.put("wall_seconds", ctx.wallSeconds)
        doc.put("export_dirs", JSONArray(listOf(ctx.exportDir)))
        doc.put("checkpoint", JSONObject().put("sha256", m.checkpointSha256)
            .put("path", m.raw.optJSONObject("checkpoint")?.optString("path", "") ?: ""))
        doc.put("split_layer", m.splitLayer)
        doc.put("chunk", JSONObject().put("samples", m.chunk.chunkSamples).put("seconds", m.chunk.chunkSeconds)
            .put("input", ctx.inputDescription))
        doc.put("prefix", JSONObject().put("embedding_dim", m.embeddingDim)
            .put("frames_per_chunk", m.chunk.framesPerChunk))
        doc.put("settings", JSONObject()
            .put("threads", JSONArray(listOf(ctx.settings.threads)))
            .put("runs", ctx.settings.iterations)
            .put("warmup", ctx.settings.warmup)
            .put("quick", false)
            .put("rounds", 1)
            .put("process", "the app's benchmark activity, one artifact after the other in one process")
            .put("latency", "wall time of one runner call on one chunk (System.nanoTime)")
            .put("rtf", "p50 latency / chunk duration")
            .put("memory", "peak RSS over the baseline before load (VmHWM); PSS from Debug.getPss (idle, after " +
                "load, after the timed runs)"))
        doc.put("artifacts", JSONArray(artifacts))
        doc.put("ceiling", JSONObject().put("status", "skipped").put("reason", "not measured on the phone"))
        doc.put("payload", JSONObject().put("status", "not measured"))
        val notMeasured = JSONObject().put("status", "not measured")
        doc.put("targets", JSONObject().put("speed", notMeasured).put("size", JSONObject(notMeasured.toString()))
            .put("payload", JSONObject(notMeasured.toString())))
        doc.put("device", deviceSection(device, app))
        return doc
    }

    /** The document of a run that measured nothing: status failed and the reason (e.g. a debug build). */
    @JvmStatic
    fun failure(runId: String, command: String, createdAt: String, error: String, device: DeviceInfo,
                app: AppInfo): JSONObject {
        val doc = JSONObject()
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
    @JvmStatic
    fun write(file: File, doc: JSONObject) {
        val dir = file.absoluteFile.parentFile
        if (!dir.isDirectory && !dir.mkdirs()) throw java.io.IOException("$dir: cannot create the folder")
        val tmp = File(dir, ".${file.name}.tmp")
        FileOutputStream(tmp).use { out ->
            out.write((doc.toString(1) + "\n").toByteArray(Charsets.UTF_8))
            out.fd.sync()
        }
        if (!tmp.renameTo(file)) throw java.io.IOException("$file: cannot move ${tmp.name} into place")
    }

    private fun host(d: DeviceInfo): JSONObject = JSONObject()
        .put("hostname", "${d.manufacturer} ${d.model}")
        .put("platform", "Android ${d.release} (API ${d.sdkInt}) ${d.abi}")
        .put("cpu", d.soc ?: d.abi)
        .put("cores", d.cores)

    private fun deviceSection(d: DeviceInfo, app: AppInfo): JSONObject = JSONObject()
        .put("kind", "android")
        .put("via", "app")
        .put("manufacturer", d.manufacturer)
        .put("model", d.model)
        .put("abi", d.abi)
        .put("sdk_int", d.sdkInt)
        .put("release", d.release)
        .put("soc", d.soc ?: JSONObject.NULL)
        .put("total_mem_bytes", orNull(d.totalMemBytes))
        .put("app", JSONObject().put("package", app.packageName).put("version", app.versionName)
            .put("build_type", app.buildType).put("debuggable", app.debuggable))

    private fun delta(a: Long?, b: Long?): Long? = if (a == null || b == null) null else a - b

    private fun orNull(v: Any?): Any = v ?: JSONObject.NULL

    /** Plain values, lists, arrays of strings and nested maps -> JSON. */
    @JvmStatic
    fun toJson(map: Map<String, Any?>): JSONObject {
        val o = JSONObject()
        for ((k, v) in map) o.put(k, jsonValue(v))
        return o
    }

    private fun jsonValue(v: Any?): Any = when (v) {
        null -> JSONObject.NULL
        is Map<*, *> -> {
            val o = JSONObject()
            for ((k, x) in v) o.put(k.toString(), jsonValue(x))
            o
        }
        is List<*> -> JSONArray(v.map { jsonValue(it) })
        is Array<*> -> JSONArray(v.map { jsonValue(it) })
        is Double -> if (v.isNaN() || v.isInfinite()) JSONObject.NULL else v
        is Float -> if (v.isNaN() || v.isInfinite()) JSONObject.NULL else v.toDouble()
        else -> v
    }
}
