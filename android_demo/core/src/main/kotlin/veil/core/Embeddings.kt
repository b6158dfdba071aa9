package veil.core

/**
 * A (frames x dim) matrix of float32 embeddings, frame-major: `values[t * dim + j]` is dimension j of frame t.
 * One prefix chunk of 2 s gives 50 frames of 40 ms.
 */
class Embeddings(val frames: Int, val dim: Int, val values: FloatArray) {
    init {
        require(frames >= 0 && dim >= 0) { "embeddings of $frames x $dim: sizes must be >= 0" }
        require(values.size == frames * dim) {
            "embeddings of $frames x $dim need ${frames * dim} values, got ${values.size}"
        }
    }

    operator fun get(frame: Int, j: Int): Float = values[frame * dim + j]

    /** The first `count` frames (the valid frames of a zero-padded last chunk). */
    fun firstFrames(count: Int): Embeddings {
        require(count in 0..frames) { "cannot keep $count of $frames frames" }
        return Embeddings(count, dim, values.copyOfRange(0, count * dim))
    }

    override fun toString(): String = "Embeddings($frames x $dim)"
}
