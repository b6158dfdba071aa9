package veil.core

import java.io.Closeable
import java.io.File

/**
 * A prefix artifact loaded in its runtime (ExecuTorch `Module`, LiteRT `CompiledModel`): one chunk of PCM in,
 * its embeddings out. The runtimes themselves are JNI libraries that exist only on Android; the app implements
 * this interface over them, the core's pipeline and benchmark use only the interface.
 */
interface PrefixRunner : Closeable {
    /** One chunk of `chunkSamples` float PCM in [-1, 1] -> (framesPerChunk x dim) embeddings. */
    fun run(pcm: FloatArray): Embeddings

    /** Facts the runtime reports about the loaded artifact, for the bench JSON (e.g. delegate backends). */
    fun details(): Map<String, Any?>
}

/** Loads artifacts of one backend ("executorch" or "litert") into [PrefixRunner]s. */
interface PrefixLoader {
    /** Backend name as in the manifest. */
    val backend: String

    /** The runtime as bench rows name it, e.g. "ExecuTorch Android 1.5.1 (XNNPACK)". */
    val runtimeName: String

    /**
     * Load the runtime's classes and native library (what the first touch of ExecuTorch's `Module` or LiteRT's
     * `CompiledModel` does), so that a timed [load] is the artifact's load alone. Idempotent; throws
     * [PrefixLoadException] like [load]. Runtimes with nothing to load first keep this default.
     */
    fun prepareRuntime() {}

    /**
     * Load `file` (memory-mapped where the runtime can) with `threads` CPU threads. Throws [PrefixLoadException]
     * with a message for a person when the runtime cannot be used (native library missing, wrong delegate...).
     */
    fun load(artifact: ArtifactEntry, file: File, threads: Int): PrefixRunner
}

/** The runtime could not load or run the artifact; `reason` says which way (native_library, not_delegated...). */
class PrefixLoadException(reason: String, message: String) : VeilException(reason, message)
