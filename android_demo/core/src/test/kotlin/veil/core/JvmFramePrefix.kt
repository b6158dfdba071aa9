package veil.core

import java.io.File
import java.util.Random

/**
 * A stand-in for the JNI runtimes in JVM tests of the benchmark procedure (ExecuTorch's and LiteRT's Android
 * libraries cannot load on a desktop JVM): a real computation of the prefix's shape, a fixed random projection
 * of each 640-sample frame to `dim` values (50 x 640 x 144 multiply-adds per 2-s chunk). It measures nothing about
 * Veil's model; it lets the procedure, the statistics and the JSON be checked end to end.
 */
class JvmFramePrefix(private val frameSamples: Int, private val dim: Int, seed: Long) : PrefixRunner {
    private val weights = FloatArray(frameSamples * dim)

    init {
        val random = Random(seed)
        for (i in weights.indices) weights[i] = (random.nextGaussian() / Math.sqrt(frameSamples.toDouble())).toFloat()
    }

    override fun run(pcm: FloatArray): Embeddings {
        val frames = pcm.size / frameSamples
        val out = FloatArray(frames * dim)
        for (t in 0 until frames) {
            for (j in 0 until dim) {
                var acc = 0.0f
                for (i in 0 until frameSamples) acc += pcm[t * frameSamples + i] * weights[i * dim + j]
                out[t * dim + j] = acc
            }
        }
        return Embeddings(frames, dim, out)
    }

    override fun details(): Map<String, Any?> = mapOf("engine" to "jvm-stand-in", "backends" to listOf("none"))

    override fun close() {}

    class Loader : PrefixLoader {
        override val backend: String = "executorch"
        override val runtimeName: String = "JVM stand-in (tests only)"

        override fun load(artifact: ArtifactEntry, file: File, threads: Int): PrefixRunner {
            val frames = artifact.output.shape[1]
            return JvmFramePrefix(artifact.input.shape[1] / frames, artifact.output.shape[2], file.length())
        }
    }
}
