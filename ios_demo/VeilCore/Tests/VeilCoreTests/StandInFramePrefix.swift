// Mirrors android_demo/core/src/test/kotlin/veil/core/JvmFramePrefix.kt
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import VeilCore

/**
 * A stand-in for Core ML in tests of the benchmark procedure (Core ML exists only on Apple platforms, and the tests
 * must not need an exported model): a real computation of the prefix's shape, a fixed random projection of each
 * 640-sample frame to `dim` values (50 x 640 x 144 multiply-adds per 2-s chunk). It measures nothing about Veil's
 * model; it lets the procedure, the statistics and the JSON be checked end to end.
 */
final class StandInFramePrefix: PrefixRunner {
    private let frameSamples: Int
    private let dim: Int
    private var weights: [Float]

    init(_ frameSamples: Int, _ dim: Int, _ seed: UInt64) {
        self.frameSamples = frameSamples
        self.dim = dim
        // SplitMix64 -> Box-Muller normals, scaled by 1/sqrt(frameSamples)
        var state = seed
        func next() -> Double {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            z = z ^ (z >> 31)
            return (Double(z >> 11) + 0.5) / 9007199254740992.0
        }
        let scale = 1.0 / Double(frameSamples).squareRoot()
        weights = [Float](repeating: 0, count: frameSamples * dim)
        for i in 0..<weights.count {
            let normal = (-2.0 * log(next())).squareRoot() * cos(2.0 * Double.pi * next())
            weights[i] = Float(normal * scale)
        }
    }

    func run(_ pcm: [Float]) throws -> Embeddings {
        let frames = pcm.count / frameSamples
        var out = [Float](repeating: 0, count: frames * dim)
        for t in 0..<frames {
            for j in 0..<dim {
                var acc: Float = 0.0
                for i in 0..<frameSamples { acc += pcm[t * frameSamples + i] * weights[i * dim + j] }
                out[t * dim + j] = acc
            }
        }
        return try Embeddings(frames, dim, out)
    }

    func details() -> [String: Any?] { ["engine": "swift-stand-in", "backends": ["none"]] }

    func close() {}

    final class Loader: PrefixLoader {
        let backend = "executorch"
        let runtimeName = "Swift stand-in (tests only)"

        func load(_ artifact: ArtifactEntry, _ file: URL, _ threads: Int) throws -> PrefixRunner {
            let frames = artifact.output.shape[1]
            return StandInFramePrefix(artifact.input.shape[1] / frames, artifact.output.shape[2],
                                      UInt64(file.path.utf8.count))
        }
    }
}
