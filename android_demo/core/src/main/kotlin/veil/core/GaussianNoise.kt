package veil.core

import java.security.SecureRandom
import java.util.Random

/**
 * Standard normal samples for the noise a bottleneck export adds on the phone, by the Box–Muller transform of two
 * uniform doubles (each pair gives two samples). The app's source is [SecureRandom]: the noise is the privacy
 * mechanism, and noise from a predictable generator could be subtracted again by whoever recovers its state.
 * Tests pass a seeded [java.util.Random] to get reproducible noise.
 */
class GaussianNoise @JvmOverloads constructor(private val random: Random = SecureRandom()) {
    private var spare = 0.0
    private var hasSpare = false

    /** One N(0, 1) sample. */
    fun next(): Double {
        if (hasSpare) {
            hasSpare = false
            return spare
        }
        val u1 = 1.0 - random.nextDouble()  // (0, 1]: the logarithm stays finite
        val u2 = random.nextDouble()
        val radius = Math.sqrt(-2.0 * Math.log(u1))
        val angle = 2.0 * Math.PI * u2
        spare = radius * Math.sin(angle)
        hasSpare = true
        return radius * Math.cos(angle)
    }

    /** `z` + i.i.d. N(0, std²) on every value, rounded to float32; `std` >= 0 (0 returns `z` itself). */
    fun addTo(z: Embeddings, std: Double): Embeddings {
        require(std >= 0.0 && !std.isInfinite()) { "noise standard deviation must be finite and >= 0, got $std" }
        if (std == 0.0) return z
        val out = FloatArray(z.values.size)
        for (i in out.indices) out[i] = (z.values[i] + std * next()).toFloat()
        return Embeddings(z.frames, z.dim, out)
    }
}
