// Mirrors android_demo/core/src/main/kotlin/veil/core/GaussianNoise.kt
import Foundation

/**
 * Standard normal samples for the noise a bottleneck export adds on the phone, by the Box–Muller transform of two
 * uniform doubles (each pair gives two samples). The app's source is `SystemRandomNumberGenerator` (the system's
 * cryptographically secure generator): the noise is the privacy mechanism, and noise from a predictable generator
 * could be subtracted again by whoever recovers its state. Tests pass a seeded generator to get reproducible noise.
 */
public final class GaussianNoise {
    private var random: any RandomNumberGenerator
    private var spare = 0.0
    private var hasSpare = false

    public init(_ random: any RandomNumberGenerator = SystemRandomNumberGenerator()) {
        self.random = random
    }

    /** A uniform double in [0, 1) from the top 53 bits of one 64-bit draw (java.util.Random.nextDouble's range). */
    private func nextDouble() -> Double { Double(random.next() >> 11) * 0x1.0p-53 }

    /** One N(0, 1) sample. */
    public func next() -> Double {
        if hasSpare {
            hasSpare = false
            return spare
        }
        let u1 = 1.0 - nextDouble()  // (0, 1]: the logarithm stays finite
        let u2 = nextDouble()
        let radius = (-2.0 * log(u1)).squareRoot()
        let angle = 2.0 * Double.pi * u2
        spare = radius * sin(angle)
        hasSpare = true
        return radius * cos(angle)
    }

    /** `z` + i.i.d. N(0, std²) on every value, rounded to float32; `std` >= 0 (0 returns `z` itself). */
    public func addTo(_ z: Embeddings, _ std: Double) throws -> Embeddings {
        try require(std >= 0.0 && !std.isInfinite, "noise standard deviation must be finite and >= 0, got \(std)")
        if std == 0.0 { return z }
        var out = [Float](repeating: 0, count: z.values.count)
        for i in 0..<out.count { out[i] = Float(Double(z.values[i]) + std * next()) }
        return try Embeddings(z.frames, z.dim, out)
    }
}
