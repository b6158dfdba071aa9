package veil.demo

import android.app.Activity
import android.os.Bundle
import android.os.Debug
import android.os.Handler
import android.os.HandlerThread
import android.os.SystemClock
import android.util.Log
import android.view.WindowManager
import android.widget.TextView
import java.io.File
import java.io.IOException
import java.nio.ByteBuffer
import java.nio.ByteOrder
import java.text.SimpleDateFormat
import java.util.Date
import java.util.Locale
import java.util.TimeZone
import org.json.JSONObject
import veil.core.BenchContext
import veil.core.BenchRunner
import veil.core.BenchSchema
import veil.core.BenchSettings
import veil.core.ChunkSpec
import veil.core.PayloadEncoder
import veil.core.PssProbe
import veil.core.VeilException

/**
 * Benchmark mode (after ExecuTorch's minibench BenchmarkActivity and LiteRT's benchmark APK): started from the shell,
 *
 * ```
 * adb shell am start -W -S -n veil.demo/.BenchmarkActivity --es export k6-d16-n0.5-k6 --es backend executorch \
 *     --es recipe int8-static --ei threads 2 --ei warmup 5 --ei iterations 50 \
 *     [--es input /sdcard/Android/data/veil.demo/files/veil-bench/input.f32] [--es run_id ID] \
 *     [--es npu_libs /sdcard/Android/data/veil.demo/files/npu-libs]
 * ```
 * (only the shell can: the activity requires android.permission.DUMP, which adb's shell holds and no app can get)
 * it installs the export (checked against manifest.json), then on a background HandlerThread measures the artifact in
 * the real runtime as the app uses it (BenchRunner: the runtime's native library loaded first and timed apart as `runtime_init_ms`, then a warm
 * load, first inference, warm-up, timed runs, peak RSS and PSS),
 * and writes the `veil bench` JSON (veil-bench/1, BenchSchema) to files/veil-bench/ID.json and a copy to the external
 * files dir, which `veil bench --device android --app` reads back with adb (run-as works only for debuggable
 * packages, and a benchmark must not be one). A debuggable build is refused: it runs many times slower.
 * The input is the host bench's chunk (`input`, raw float32 LE) or, without one, a fixed 2-s test signal.
 * An ahead-of-time NPU .tflite (`--es recipe npu-qualcomm:SM8650`) runs on LiteRT's NPU accelerator with the
 * dispatch library and vendor runtime pushed to `npu_libs` (see [installNpuLibs]).
 */
class BenchmarkActivity : Activity() {
    private lateinit var thread: HandlerThread
    private lateinit var text: TextView

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        window.addFlags(WindowManager.LayoutParams.FLAG_KEEP_SCREEN_ON)
        text = TextView(this)
        text.setPadding(32, 32, 32, 32)
        setContentView(text)
        val runId = intent.getStringExtra("run_id") ?: SimpleDateFormat("yyyyMMdd-HHmmss", Locale.ROOT).format(Date())
        show("Veil benchmark $runId ...")
        thread = HandlerThread("veil-bench")
        thread.start()
        Handler(thread.looper).post { runBenchmark(runId) }
    }

    override fun onDestroy() {
        thread.quitSafely()
        super.onDestroy()
    }

    private fun show(line: String) {
        Log.i(TAG, line)
        runOnUiThread { text.append(line + "\n") }
    }

    /** The command line that started this run, rebuilt from the extras it reads (recorded in the JSON). */
    private fun command(): String {
        val parts = mutableListOf("am start -n $packageName/.BenchmarkActivity")
        for (key in STRING_EXTRAS) intent.getStringExtra(key)?.let { parts.add("--es $key $it") }
        for (key in INT_EXTRAS) {
            val v = intent.getIntExtra(key, Int.MIN_VALUE)
            if (v != Int.MIN_VALUE) parts.add("--ei $key $v")
        }
        return parts.joinToString(" ")
    }

    private fun runBenchmark(runId: String) {
        val started = SystemClock.elapsedRealtime()
        val createdAt = iso8601(Date())
        val device = DeviceFacts.device(this)
        val app = DeviceFacts.app(this)
        val doc: JSONObject = try {
            if (app.debuggable) {
                throw VeilException("debug_build", "refusing to benchmark a debuggable (${app.buildType}) build: it " +
                    "runs many times slower; install the release build (./gradlew assembleRelease)")
            }
            val name = intent.getStringExtra("export") ?: throw VeilException("usage", "missing --es export NAME")
            val backend = intent.getStringExtra("backend") ?: "executorch"
            val settings = BenchSettings(intent.getIntExtra("threads", 1), intent.getIntExtra("warmup", 5),
                intent.getIntExtra("iterations", 50))
            show("installing export $name ...")
            val export = ExportStore(this).open(name)
            val artifact = export.manifest.artifact(backend, intent.getStringExtra("recipe"))
            val file = export.verify(artifact)
            val (input, inputDescription) = input(export.manifest.chunk)
            val loader = loaderFor(artifact, installNpuLibs())
            show("${artifact.displayName}: ${loader.runtimeName}, ${settings.threads} thread(s), ${settings.warmup} " +
                "warm-up, ${settings.iterations} timed runs ...")
            val pss = object : PssProbe {
                override fun pssBytes(): Long? = Debug.getPss() * 1024L
            }
            // the payload the app would send for this export (vq indices for a vq bottleneck, the default codec else)
            val encoder = PayloadEncoder.forExport(export, PayloadEncoder.codecsFor(export.manifest).first())
            val m = BenchRunner.measure(loader, artifact, file, input, export.manifest.chunk, settings, pss, encoder)
            show(String.format(Locale.ROOT, "load %.1f ms, first %.1f ms, p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, RTF %.4f, " +
                "payload %s %d B/chunk", m.loadMs, m.firstInferenceMs, m.latency.p50Ms, m.latency.p90Ms, m.latency.p99Ms,
                m.rtf, m.payloadCodec, m.payloadBytes))
            val row = BenchSchema.artifactRow(artifact, loader.runtimeName, listOf(BenchSchema.measurement(m)))
            val ctx = BenchContext(runId, command(), export.dir.path, export.manifest, inputDescription, settings,
                createdAt, (SystemClock.elapsedRealtime() - started) / 1e3)
            BenchSchema.document(ctx, device, app, listOf(row))
        } catch (e: VeilException) {
            show("failed: ${e.message}")
            BenchSchema.failure(runId, command(), createdAt, e.message ?: e.reason, device, app)
        } catch (e: Exception) {
            show("failed: ${e.javaClass.simpleName}: ${e.message}")
            BenchSchema.failure(runId, command(), createdAt, "${e.javaClass.simpleName}: ${e.message}", device, app)
        }
        // a result that cannot be written (disk full, external storage gone) is said on screen and in logcat, where
        // the host's poll reports it, instead of killing the process on this thread
        val internal = File(File(filesDir, RESULTS), "$runId.json")
        val written = ArrayList<String>()
        for (target in listOfNotNull(internal, getExternalFilesDir(RESULTS)?.let { File(it, "$runId.json") })) {
            try {
                BenchSchema.write(target, doc)
                written.add(target.path)
            } catch (e: IOException) {
                show("failed: could not write $target: ${e.message}")
            } catch (e: RuntimeException) {
                show("failed: could not write $target: ${e.javaClass.simpleName}: ${e.message}")
            }
        }
        if (written.isNotEmpty()) show("wrote ${written.joinToString(" and ")}")
        runOnUiThread { finish() }
    }

    /**
     * The NPU libraries pushed by the host (`npu_libs` extra: a folder in the external files dir, where adb writes),
     * copied into the app's private files dir: the dynamic loader and the DSP load nothing from external storage.
     * Without the extra, what an earlier run installed (or nothing: an NPU artifact then fails to load, saying why).
     * Only the shell may start this activity (the manifest guards it with android.permission.DUMP), so no other app
     * can make veil.demo load libraries of its choosing; the copies are read-only.
     */
    private fun installNpuLibs(): File {
        val installed = File(filesDir, NPU_LIBS)
        val pushed = intent.getStringExtra("npu_libs") ?: return installed
        val libs = File(pushed).listFiles()?.filter { it.isFile }.orEmpty()
        if (libs.isEmpty()) throw VeilException("npu_libs", "$pushed: no NPU libraries there (veil bench --npu-libs DIR)")
        installed.deleteRecursively()
        check(installed.mkdirs()) { "$installed: cannot create" }
        for (lib in libs) {
            // read-only before anything loads it (Android 14+ refuses writable dynamically loaded code)
            val copy = lib.copyTo(File(installed, lib.name))
            if (!copy.setReadOnly()) throw VeilException("npu_libs", "$copy: cannot make it read-only")
        }
        return installed
    }

    /** The chunk to time: the host's (raw float32 LE, `input` extra) or a fixed 2-s test signal. */
    private fun input(chunk: ChunkSpec): Pair<FloatArray, String> {
        val path = intent.getStringExtra("input")
        if (path != null) {
            val bytes = File(path).readBytes()
            if (bytes.size != 4 * chunk.chunkSamples) {
                throw VeilException("bad_input", "$path: ${bytes.size} bytes; the prefix takes ${chunk.chunkSamples} " +
                    "float32 samples (${4 * chunk.chunkSamples} bytes)")
            }
            val b = ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN)
            return Pair(FloatArray(chunk.chunkSamples) { b.float }, "the host bench's chunk ($path)")
        }
        // a 200 Hz -> 4 kHz chirp at -12 dBFS: speech-band energy (latency does not depend on values; static graph)
        val x = FloatArray(chunk.chunkSamples)
        val seconds = chunk.chunkSeconds
        for (i in x.indices) {
            val t = i.toDouble() / chunk.sampleRate
            val phase = 2 * Math.PI * (200.0 * t + (3800.0 / (2 * seconds)) * t * t)
            x[i] = (0.25 * Math.sin(phase)).toFloat()
        }
        return Pair(x, "a 2-s 200-4000 Hz chirp at -12 dBFS (no --es input given)")
    }

    private fun iso8601(date: Date): String {
        val f = SimpleDateFormat("yyyy-MM-dd'T'HH:mm:ss'+00:00'", Locale.ROOT)
        f.timeZone = TimeZone.getTimeZone("UTC")
        return f.format(date)
    }

    companion object {
        const val TAG = "VeilBench"
        const val RESULTS = "veil-bench"
        const val NPU_LIBS = "npu-libs"
        val STRING_EXTRAS = listOf("export", "backend", "recipe", "input", "run_id", "npu_libs")
        val INT_EXTRAS = listOf("threads", "warmup", "iterations")
    }
}
