// Mirrors android_demo/core/src/main/kotlin/veil/core/Codebook.kt
import Foundation

/**
 * The codebooks of a grouped vector quantizer: `groups` (G) codebooks of `size` (K) codewords of `groupDim` (dg)
 * float32 values each, stored (G, K, dg) row-major: codeword k of group g starts at `(g * size + k) * groupDim`.
 * An embedding of dim G * dg is coded as G indices, one per group of dg consecutive dimensions.
 */
public final class Codebook {
    /** K <= 65536 codes per group: indices fit 16 bits. */
    public static let MAX_CODES = 0x10000

    public let groups: Int
    public let size: Int
    public let groupDim: Int
    public let values: [Float]

    public init(_ groups: Int, _ size: Int, _ groupDim: Int, _ values: [Float]) throws {
        if groups < 1 || groups > 0xFFFF || groupDim < 1 {
            throw PayloadException("bad_codebook",
                "a vq codebook must be (groups 1..65535, codes, dims >= 1), got (\(groups), \(size), \(groupDim))")
        }
        if size < 1 || size > Codebook.MAX_CODES {
            throw PayloadException("bad_codebook", "a vq codebook has 1..\(Codebook.MAX_CODES) codes per group, got \(size)")
        }
        if values.count != groups * size * groupDim {
            throw PayloadException("bad_codebook",
                "codebook (\(groups), \(size), \(groupDim)) needs \(groups * size * groupDim) values, got \(values.count)")
        }
        self.groups = groups
        self.size = size
        self.groupDim = groupDim
        self.values = values
    }

    /** Embedding dimension this codebook codes: G * dg. */
    public var dim: Int { groups * groupDim }

    /** Index width on the wire: 8 bits when K <= 256, else 16. */
    public var indexBits: Int { Codebook.indexBits(size) }

    /** A codebook with NaN or Inf codewords is refused (bad_codebook) before it codes anything. */
    public func checkFinite() throws {
        for v in values {
            if v.isNaN || v.isInfinite { throw PayloadException("bad_codebook", "the vq codebook contains NaN or Inf") }
        }
    }

    /**
     * The nearest codeword of group `group` to `z[offset ..< offset + groupDim]`: squared distance summed in
     * float64 over j in order (no fused multiply-add: Swift does not contract `+` and `*`); the first minimum wins
     * (numpy's argmin).
     */
    public func nearest(_ group: Int, _ z: [Float], _ offset: Int) -> Int {
        var best = 0
        var bestDistance = Double.infinity
        var base = group * size * groupDim
        for k in 0..<size {
            var distance = 0.0
            for j in 0..<groupDim {
                let d = Double(z[offset + j]) - Double(values[base + j])
                distance += d * d
            }
            if distance < bestDistance {
                bestDistance = distance
                best = k
            }
            base += groupDim
        }
        return best
    }

    /** Index width for `codes` entries per group: 8 bits up to 256 codes, else 16. */
    public static func indexBits(_ codes: Int) -> Int { codes <= 256 ? 8 : 16 }
}
