package veil.core

import java.io.File
import java.util.concurrent.TimeUnit
import org.json.JSONObject
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test

/**
 * The benchmark procedure on a JVM stand-in runtime, written as the bench JSON, then checked by the Python side's
 * own validator (toolkit.bench.report.validate) and read by toolkit.bench.android_app: the two languages agree on
 * the schema.
 */
class BenchSchemaTest {
    private val manifest = ExportManifest.parse(TestFiles.resourceText("export-manifest.json"))
    private val device = DeviceInfo("Google", "Pixel 8", "arm64-v8a", 34, "14", "Tensor G3", 9, 8L shl 30)
    private val app = AppInfo("veil.demo", "0.1.0", "release", false)

    private fun document(): JSONObject {
        val artifact = manifest.artifact("executorch")
        val input = FloatArray(manifest.chunk.chunkSamples) { Math.sin(it * 0.01).toFloat() * 0.1f }
        val pss = object : PssProbe {
            override fun pssBytes(): Long? = ProcessMemory.rssBytes()
        }
        val weights = File(TestFiles.tempDir("bench"), artifact.file)
        weights.writeBytes(ByteArray(4096) { it.toByte() })  // the stand-in seeds its projection from the file size
        val m = BenchRunner.measure(JvmFramePrefix.Loader(), artifact, weights, input, manifest.chunk,
            BenchSettings(1, 2, 12), pss, PayloadEncoder(manifest, null, Codec.INT8))
        val row = BenchSchema.artifactRow(artifact, "JVM stand-in (tests only)",
            listOf(BenchSchema.measurement(m), BenchSchema.failedMeasurement(2, "thread pool refused")))
        val ctx = BenchContext("run-1", "am start -n veil.demo/.BenchmarkActivity", "/sdcard/x", manifest,
            "a 2-s sine test chunk", BenchSettings(1, 2, 12), "2026-11-26T12:00:00+00:00", 1.5)
        return BenchSchema.document(ctx, device, app, listOf(row))
    }

    @Test
    fun `a measurement has the host schema's keys and sane values`() {
        val doc = document()
        val m = doc.getJSONArray("artifacts").getJSONObject(0).getJSONArray("measurements").getJSONObject(0)
        for (key in listOf("status", "threads", "load_ms", "first_inference_ms", "runs", "p50_ms", "p90_ms", "p99_ms",
                "rtf", "peak_rss_load_bytes", "peak_rss_inference_bytes")) {
            assertTrue(m.has(key), key)
        }
        assertEquals(12, m.getInt("runs"))
        assertTrue(m.getDouble("p50_ms") <= m.getDouble("p90_ms") && m.getDouble("p90_ms") <= m.getDouble("p99_ms"))
        assertEquals(m.getDouble("p50_ms") / 1e3 / 2.0, m.getDouble("rtf"), 1e-12)
        assertEquals("[1,50,144]", m.getJSONArray("output_shape").toString())
        assertTrue(m.getBoolean("output_finite"))
        assertEquals("int8", m.getString("payload_codec"))
        assertEquals(10 + 50 * 4 + 50 * 144, m.getInt("payload_bytes_per_chunk"))
        assertEquals((10 + 50 * 4 + 50 * 144) / 2.0, m.getDouble("payload_bytes_per_second"))
        assertEquals("int8", doc.getJSONArray("artifacts").getJSONObject(0).getString("dtype"))
        // the native library is loaded before the timed load, and the load is recorded as warm
        val runtime = m.getJSONObject("runtime")
        assertTrue(runtime.getDouble("runtime_init_ms") >= 0.0)
        assertEquals(BenchRunner.PAGE_CACHE, runtime.getString("page_cache"))
    }

    @Test
    fun `the python validator accepts the document and the app reader takes its rows`() {
        val out = File(TestFiles.repo, "android_demo/core/build/bench-schema-sample.json")
        BenchSchema.write(out, document())
        val python = File(TestFiles.repo, ".venv/bin/python")
        assertTrue(python.canExecute(), "$python: run `make setup` (the tests use the Python side)")
        val script = "import json, sys\n" +
            "from toolkit.bench import report, android_app\n" +
            "doc = json.load(open(sys.argv[1]))\n" +
            "report.validate(doc)\n" +
            "rows = android_app.rows_from_app(doc)\n" +
            "print(len(rows), rows[0]['tool'], rows[0]['measurements'][0]['status'], rows[0]['measurements'][1]['status'])\n"
        val proc = ProcessBuilder(python.path, "-c", script, out.path).directory(TestFiles.repo)
            .redirectErrorStream(true)
        proc.environment()["PYTHONPATH"] = TestFiles.repo.path
        val p = proc.start()
        val text = String(p.inputStream.readBytes(), Charsets.UTF_8)
        assertTrue(p.waitFor(120, TimeUnit.SECONDS))
        assertEquals(0, p.exitValue(), text)
        assertEquals("1 veil-app ok failed", text.trim().lines().last())
    }

    @Test
    fun `a failed run is a document with the error`() {
        val doc = BenchSchema.failure("r", "am start", "2026-11-26T12:00:00+00:00",
            "refusing to benchmark a debug build", device, AppInfo("veil.demo", "0.1.0", "debug", true))
        assertEquals("failed", doc.getString("status"))
        assertEquals("debug", doc.getJSONObject("device").getJSONObject("app").getString("build_type"))
    }
}
