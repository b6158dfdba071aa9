package veil.demo

import android.system.Os
import com.google.ai.edge.litert.Accelerator
import com.google.ai.edge.litert.CompiledModel
import com.google.ai.edge.litert.Environment
import com.google.ai.edge.litert.LiteRtException
import com.google.ai.edge.litert.TensorBuffer
import java.io.File
import java.nio.FloatBuffer
import org.pytorch.executorch.EValue
import org.pytorch.executorch.ExecutorchRuntimeException
import org.pytorch.executorch.Module
import org.pytorch.executorch.Tensor
import veil.core.ArtifactEntry
import veil.core.Embeddings
import veil.core.PrefixLoadException
import veil.core.PrefixLoader
import veil.core.PrefixRunner

/**
 * The loader for a manifest artifact: ExecuTorch (XNNPACK), LiteRT on the CPU, or LiteRT on the NPU for a .tflite
 * compiled ahead of time for one (its manifest entry has an `npu` section, `veil export --recipe
 * litert=npu-qualcomm:SOC`). `npuLibraryDir` is an app-private folder holding LiteRT's dispatch library and the
 * vendor's NPU runtime (libLiteRtDispatch_Qualcomm.so, libQnnHtp.so, libQnnSystem.so, libQnnHtpV75Stub.so, the skel);
 * an NPU artifact without one is a PrefixLoadException, never a silent CPU run.
 */
fun loaderFor(artifact: ArtifactEntry, npuLibraryDir: File? = null): PrefixLoader = when (artifact.backend) {
    "executorch" -> ExecuTorchLoader()
    "litert" -> {
        val npu = artifact.raw.optJSONObject("npu")
        if (npu == null) LiteRtLoader() else LiteRtLoader(NpuTarget(npu.optString("soc", "?"), npuLibraryDir))
    }
    else -> throw PrefixLoadException("unknown_backend",
        "no Android runtime for backend '${artifact.backend}' (executorch, litert)")
}

/** The SoC an NPU artifact was compiled for, and the folder of the NPU libraries (null: none given). */
class NpuTarget(val soc: String, val libraryDir: File?)

/**
 * A native library that does not load (missing ABI, NDK STL mismatch, 16 KB pages...) surfaces as one of these:
 * UnsatisfiedLinkError when the library is first loaded, ExceptionInInitializerError from the class's static
 * initializer that loads it, NoClassDefFoundError when that class is touched again. All become a
 * PrefixLoadException("native_library") with the runtime's name: an error on screen, never a crash.
 */
private inline fun <T> nativeCall(runtime: String, block: () -> T): T {
    try {
        return block()
    } catch (e: UnsatisfiedLinkError) {
        throw PrefixLoadException("native_library", "$runtime: native library failed to load (${e.message})")
    } catch (e: ExceptionInInitializerError) {
        throw PrefixLoadException("native_library", "$runtime: native library failed to load (${e.cause ?: e})")
    } catch (e: NoClassDefFoundError) {
        throw PrefixLoadException("native_library", "$runtime: runtime classes unusable after a failed native load (${e.message})")
    }
}

/**
 * ExecuTorch's Android API (org.pytorch:executorch-android): `Module.load` memory-maps the .pte (LOAD_MODE_MMAP)
 * with `threads` XNNPACK threads, `loadMethod("forward")` prepares the method up front (so the first chunk is not
 * charged with it), and the method's backends must include XnnpackBackend: a .pte that silently runs on portable
 * kernels would be many times slower, so it is refused at load.
 */
class ExecuTorchLoader : PrefixLoader {
    override val backend: String = "executorch"
    override val runtimeName: String = "ExecuTorch Android ${BuildConfig.EXECUTORCH_VERSION} (XNNPACK)"

    /** Module's companion loads libexecutorch.so (NativeLoader) when the class initializes: do that untimed. */
    override fun prepareRuntime() = nativeCall(runtimeName) {
        Class.forName(Module::class.java.name, true, Module::class.java.classLoader)
        Unit
    }

    override fun load(artifact: ArtifactEntry, file: File, threads: Int): PrefixRunner = nativeCall(runtimeName) {
        val module = try {
            Module.load(file.absolutePath, Module.LOAD_MODE_MMAP, threads)
        } catch (e: ExecutorchRuntimeException) {
            throw PrefixLoadException("load_failed", "${file.name}: ExecuTorch could not load it (${e.message})")
        }
        try {
            module.loadMethod(METHOD)
            val backends = module.getMethodMetadata(METHOD).backends.toList()
            if (XNNPACK !in backends) {
                throw PrefixLoadException("not_delegated", "${file.name}: method '$METHOD' is not delegated to " +
                    "$XNNPACK (its backends: ${backends.ifEmpty { listOf("none") }.joinToString()}); export it with " +
                    "an XNNPACK recipe")
            }
            ExecuTorchPrefix(module, artifact, threads, backends)
        } catch (e: ExecutorchRuntimeException) {
            module.destroy()
            throw PrefixLoadException("load_failed", "${file.name}: loading '$METHOD' failed (${e.message})")
        } catch (e: PrefixLoadException) {
            module.destroy()
            throw e
        }
    }

    companion object {
        const val METHOD = "forward"
        const val XNNPACK = "XnnpackBackend"
    }
}

private class ExecuTorchPrefix(
    private val module: Module,
    artifact: ArtifactEntry,
    private val threads: Int,
    private val backends: List<String>
) : PrefixRunner {
    private val samples = artifact.input.shape[1]
    private val frames = artifact.output.shape[1]
    private val dim = artifact.output.shape[2]
    // one direct input buffer wrapped once: each chunk is copied in, no per-call allocation
    private val inputBuffer: FloatBuffer = Tensor.allocateFloatBuffer(samples)
    private val input: EValue = EValue.from(Tensor.fromBlob(inputBuffer, longArrayOf(1, samples.toLong())))

    override fun run(pcm: FloatArray): Embeddings {
        inputBuffer.rewind()
        inputBuffer.put(pcm)
        val out = module.forward(input)[0].toTensor()
        val shape = out.shape()
        check(shape.size == 3 && shape[1].toInt() == frames && shape[2].toInt() == dim) {
            "prefix output ${shape.contentToString()} is not [1, $frames, $dim] as manifest.json says"
        }
        return Embeddings(frames, dim, out.dataAsFloatArray)
    }

    override fun details(): Map<String, Any?> = mapOf("engine" to "executorch", "method" to ExecuTorchLoader.METHOD,
        "backends" to backends, "load_mode" to "mmap", "threads" to threads)

    override fun close() = module.destroy()
}

/**
 * LiteRT's CompiledModel API (com.google.ai.edge.litert): compiled for the CPU accelerator (XNNPACK) with `threads`
 * threads, input/output TensorBuffers created once and reused for every chunk. LiteRT maps the .tflite file.
 *
 * With an [NpuTarget] (an ahead-of-time NPU artifact): the NPU accelerator, with the CPU for the ops the compiler
 * left to it, in an Environment whose dispatch library folder is the target's (LiteRT's Kotlin API:
 * `Environment.Option.DispatchLibraryDir`). The same folder is the DSP's library path (ADSP_LIBRARY_PATH), where
 * Qualcomm's runtime looks for the HTP skel. The NPU's own work cannot be timed apart from the CPU's here: the runner
 * reports what LiteRT compiled for, and the compiler's placement (ops on the NPU, fallback ops) is in the manifest.
 */
class LiteRtLoader(private val npu: NpuTarget? = null) : PrefixLoader {
    override val backend: String = "litert"
    override val runtimeName: String = "LiteRT ${BuildConfig.LITERT_VERSION} CompiledModel " +
        if (npu == null) "(CPU)" else "(NPU, compiled for ${npu.soc})"

    /** CompiledModel's companion loads liblitert_jni.so (System.loadLibrary) when the class initializes. */
    override fun prepareRuntime() = nativeCall(runtimeName) {
        Class.forName(CompiledModel::class.java.name, true, CompiledModel::class.java.classLoader)
        Unit
    }

    override fun load(artifact: ArtifactEntry, file: File, threads: Int): PrefixRunner = nativeCall(runtimeName) {
        val options = if (npu == null) CompiledModel.Options(Accelerator.CPU)
            else CompiledModel.Options(Accelerator.NPU, Accelerator.CPU)
        options.cpuOptions = CompiledModel.CpuOptions(numThreads = threads)
        val env = npu?.let { environment(it, file) }
        val model = try {
            CompiledModel.create(file.absolutePath, options, env)
        } catch (e: LiteRtException) {
            env?.close()
            throw PrefixLoadException("load_failed", "${file.name}: LiteRT could not compile it for " +
                "${if (npu == null) "the CPU" else "the NPU (${npu.soc})"} (${e.message})")
        }
        try {
            LiteRtPrefix(model, model.createInputBuffers(), model.createOutputBuffers(), artifact, threads,
                if (npu == null) "CPU" else "NPU", npu?.soc, env)
        } catch (e: LiteRtException) {
            model.close()
            env?.close()
            throw PrefixLoadException("load_failed", "${file.name}: LiteRT buffers (${e.message})")
        }
    }

    private fun environment(npu: NpuTarget, file: File): Environment {
        val dir = npu.libraryDir
        if (dir == null || !dir.isDirectory || dir.listFiles().isNullOrEmpty()) {
            throw PrefixLoadException("npu_libs", "${file.name} is compiled for the ${npu.soc} NPU: it needs LiteRT's " +
                "dispatch library and the vendor's NPU runtime (veil bench --device android --app --npu-libs DIR, or " +
                "--es npu_libs DIR)")
        }
        Os.setenv("ADSP_LIBRARY_PATH", dir.absolutePath, true)
        return Environment.create(mapOf(Environment.Option.DispatchLibraryDir to dir.absolutePath))
    }
}

private class LiteRtPrefix(
    private val model: CompiledModel,
    private val inputs: List<TensorBuffer>,
    private val outputs: List<TensorBuffer>,
    artifact: ArtifactEntry,
    private val threads: Int,
    private val accelerator: String,
    private val soc: String?,
    private val env: Environment?
) : PrefixRunner {
    private val frames = artifact.output.shape[1]
    private val dim = artifact.output.shape[2]

    override fun run(pcm: FloatArray): Embeddings {
        inputs[0].writeFloat(pcm)
        model.run(inputs, outputs)
        val y = outputs[0].readFloat()
        check(y.size == frames * dim) { "prefix output of ${y.size} floats is not $frames x $dim as manifest.json says" }
        return Embeddings(frames, dim, y)
    }

    override fun details(): Map<String, Any?> = mapOf("engine" to "litert", "api" to "CompiledModel",
        "accelerator" to accelerator, "soc" to soc, "threads" to threads)

    override fun close() {
        for (b in inputs) b.close()
        for (b in outputs) b.close()
        model.close()
        env?.close()
    }
}
