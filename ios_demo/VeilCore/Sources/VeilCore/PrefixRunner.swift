// Mirrors android_demo/core/src/main/kotlin/veil/core/PrefixRunner.kt
import Foundation

/**
 * A prefix artifact loaded in its runtime (on iOS a Core ML `MLModel` compiled from the export's .mlpackage):
 * one chunk of PCM in, its embeddings out. Core ML exists only on Apple platforms; the app implements this
 * protocol over it, the core's pipeline and benchmark use only the protocol.
 */
public protocol PrefixRunner: AnyObject {
    /** One chunk of `chunkSamples` float PCM in [-1, 1] -> (framesPerChunk x dim) embeddings. */
    func run(_ pcm: [Float]) throws -> Embeddings

    /** Facts the runtime reports about the loaded artifact, for the bench JSON (e.g. compute units). */
    func details() -> [String: Any?]

    /** Release the runtime's resources (Kotlin's Closeable). */
    func close()
}

/** Loads artifacts of one backend ("coreml" on iOS) into `PrefixRunner`s. */
public protocol PrefixLoader: AnyObject {
    /** Backend name as in the manifest. */
    var backend: String { get }

    /** The runtime as bench rows name it, e.g. "Core ML (iOS 17.5, all)". */
    var runtimeName: String { get }

    /**
     * Load `file` with `threads` CPU threads where the runtime takes a thread count. Throws PrefixLoadException
     * with a message for a person when the runtime cannot be used (model does not compile, wrong signature...).
     */
    func load(_ artifact: ArtifactEntry, _ file: URL, _ threads: Int) throws -> PrefixRunner

    /**
     * Load the runtime itself before a timed `load`, so that `load` is the artifact's load alone. Idempotent; throws
     * PrefixLoadException like `load`. Core ML has nothing to load first: the default does nothing.
     */
    func prepareRuntime() throws
}

extension PrefixLoader {
    public func prepareRuntime() throws {}
}

/** The runtime could not load or run the artifact; `reason` says which way (compile_failed, signature...). */
public final class PrefixLoadException: VeilException {}
