package veil.core

import java.io.File
import java.nio.ByteBuffer
import java.nio.ByteOrder
import org.json.JSONObject

/**
 * The cross-language test vectors the Python side writes (`veil protocol vectors --out testvectors`, see
 * testvectors/README.md): exact bytes (.bin), raw little-endian float32 (.f32), and index.json describing both.
 */
object TestVectors {
    val dir: File = File(TestFiles.repo, "testvectors")

    val index: JSONObject by lazy {
        val f = File(dir, "index.json")
        check(f.isFile) { "$f not found: the test vectors come with the repository (testvectors/)" }
        JSONObject(String(f.readBytes(), Charsets.UTF_8))
    }

    fun bytes(path: String): ByteArray = File(dir, path).readBytes()

    fun f32(path: String): FloatArray {
        val b = ByteBuffer.wrap(bytes(path)).order(ByteOrder.LITTLE_ENDIAN)
        val out = FloatArray(b.remaining() / 4)
        for (i in out.indices) out[i] = b.float
        return out
    }

    /** An .f32 file described by {"file", "shape": [T, d]} as embeddings. */
    fun embeddings(spec: JSONObject): Embeddings {
        val shape = spec.getJSONArray("shape")
        return Embeddings(shape.getInt(0), shape.getInt(1), f32(spec.getString("file")))
    }

    fun bitsOf(hex: String): Int = java.lang.Long.parseLong(hex, 16).toInt()

    fun floatOf(hex: String): Float = java.lang.Float.intBitsToFloat(bitsOf(hex))

    /** Bit-for-bit equality of float arrays (NaN payloads and -0.0 included). */
    fun sameBits(a: FloatArray, b: FloatArray): Boolean {
        if (a.size != b.size) return false
        for (i in a.indices) {
            if (java.lang.Float.floatToRawIntBits(a[i]) != java.lang.Float.floatToRawIntBits(b[i])) return false
        }
        return true
    }
}
