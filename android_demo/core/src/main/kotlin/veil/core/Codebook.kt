package veil.core

/**
 * The codebooks of a grouped vector quantizer: `groups` (G) codebooks of `size` (K) codewords of `groupDim` (dg)
 * float32 values each, stored (G, K, dg) row-major: codeword k of group g starts at `(g * size + k) * groupDim`.
 * An embedding of dim G * dg is coded as G indices, one per group of dg consecutive dimensions.
 */
class Codebook(val groups: Int, val size: Int, val groupDim: Int, val values: FloatArray) {
    init {
        require(groups in 1..0xFFFF) { "codebook groups must be 1..65535, got $groups" }
        require(size in 1..0x10000) { "codebook size must be 1..65536, got $size" }
        require(groupDim >= 1) { "codebook group dim must be >= 1, got $groupDim" }
        require(values.size == groups * size * groupDim) {
            "codebook ($groups, $size, $groupDim) needs ${groups * size * groupDim} values, got ${values.size}"
        }
    }

    /** Embedding dimension this codebook codes: G * dg. */
    val dim: Int get() = groups * groupDim

    /** Index width on the wire: 8 bits when K <= 256, else 16. */
    val indexBits: Int get() = if (size <= 256) 8 else 16

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
}
