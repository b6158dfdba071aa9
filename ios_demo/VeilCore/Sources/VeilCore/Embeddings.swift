// Mirrors android_demo/core/src/main/kotlin/veil/core/Embeddings.kt
import Foundation

/**
 * A (frames x dim) matrix of float32 embeddings, frame-major: `values[t * dim + j]` is dimension j of frame t.
 * One prefix chunk of 2 s gives 50 frames of 40 ms.
 */
public struct Embeddings: CustomStringConvertible {
    public let frames: Int
    public let dim: Int
    public let values: [Float]

    public init(_ frames: Int, _ dim: Int, _ values: [Float]) throws {
        try require(frames >= 0 && dim >= 0, "embeddings of \(frames) x \(dim): sizes must be >= 0")
        try require(values.count == frames * dim,
                    "embeddings of \(frames) x \(dim) need \(frames * dim) values, got \(values.count)")
        self.frames = frames
        self.dim = dim
        self.values = values
    }

    public subscript(frame: Int, j: Int) -> Float { values[frame * dim + j] }

    /** The first `count` frames (the valid frames of a zero-padded last chunk). */
    public func firstFrames(_ count: Int) throws -> Embeddings {
        try require(count >= 0 && count <= frames, "cannot keep \(count) of \(frames) frames")
        return try Embeddings(count, dim, Array(values[0..<(count * dim)]))
    }

    public var description: String { "Embeddings(\(frames) x \(dim))" }
}
