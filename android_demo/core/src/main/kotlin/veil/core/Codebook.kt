package veil.core

/**
 * The codebooks of a grouped vector quantizer: `groups` (G) codebooks of `size` (K) codewords of `groupDim` (dg)
 * float32 values each, stored (G, K, dg) row-major: codeword k of group g starts at `(g * size + k) * groupDim`.
 * An embedding of dim G * dg is coded as G indices, one per group of dg consecutive dimensions.
 */
class Codebook(val groups: Int, val size: Int, val groupDim: Int, val values: FloatArray) {
    init {
        if (groups < 1 || groups > 0xFFFF || groupDim < 1) {
            throw PayloadException("bad_codebook",
                "a vq codebook must be (groups 1..65535, codes, dims >= 1), got ($groups, $size, $groupDim)")
        }
        if (size < 1 || size > MAX_CODES) {
            throw PayloadException("bad_codebook", "a vq codebook has 1..$MAX_CODES codes per group, got $size")
        }
        if (values.size != groups * size * groupDim) {
            throw PayloadException("bad_codebook",
                "codebook ($groups, $size, $groupDim) needs ${groups * size * groupDim} values, got ${values.size}")
        }
    }

    /** Embedding dimension this codebook codes: G * dg. */
    val dim: Int get() = groups * groupDim

    /** Index width on the wire: 8 bits when K <= 256, else 16. */
    val indexBits: Int get() = indexBits(size)

    /** A codebook with NaN or Inf codewords is refused (bad_codebook) before it codes anything. */
    fun checkFinite() {
        for (v in values) {
            if (v.isNaN() || v.isInfinite()) throw PayloadException("bad_codebook", "the vq codebook contains NaN or Inf")
        }
    }

    /**
     * The nearest codeword of group `group` to `z[offset until offset + groupDim]`: squared distance summed in
     * float64 over j in order; the first minimum wins (numpy's argmin).
     */
    fun nearest(group: Int, z: FloatArray, offset: Int): Int {
        var best = 0
        var bestDistance = Double.POSITIVE_INFINITY
        var base = group * size * groupDim
        for (k in 0 until size) {
            var distance = 0.0
            for (j in 0 until groupDim) {
                val d = z[offset + j].toDouble() - values[base + j].toDouble()
                distance += d * d
            }
            if (distance < bestDistance) {
                bestDistance = distance
                best = k
            }
            base += groupDim
        }
        return best
    }

    companion object {
        /** K <= 65536 codes per group: indices fit 16 bits. */
        const val MAX_CODES = 0x10000

        /** Index width for `codes` entries per group: 8 bits up to 256 codes, else 16. */
        @JvmStatic
        fun indexBits(codes: Int): Int = if (codes <= 256) 8 else 16
    }
}
