// One utterance, start to stop: VeilCore's StreamingPipeline over AVAudioEngine and URLSession (Android: the same
// pipeline, android_demo/core StreamingPipeline.kt, over AudioRecord and OkHttp).
import Foundation
import VeilCore

/** A loaded prefix, warmed up by one prediction (the first Core ML prediction is far slower than the next ones). */
struct PreparedPrefix {
    let key: String
    let runner: PrefixRunner
    let runtime: String
    let compileMs: Double
    let loadMs: Double
    let warmupMs: Double

    /** Verify, compile (cached), load with `choice`, and run one chunk of silence. Blocking: off the main thread. */
    static func prepare(_ dir: URL, _ choice: ComputeUnitsChoice) throws -> PreparedPrefix {
        let (export, artifact, package) = try ExportStore.open(dir)
        let loader = CoreMLPrefixLoader(choice)
        var t0 = DispatchTime.now().uptimeNanoseconds
        let runner = try loader.load(artifact, package, 1)
        let loadMs = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6 - loader.compileMs
        t0 = DispatchTime.now().uptimeNanoseconds
        _ = try runner.run([Float](repeating: 0, count: export.manifest.chunk.chunkSamples))
        let warmupMs = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6
        return PreparedPrefix(key: PreparedPrefix.key(dir, choice), runner: runner, runtime: loader.runtimeName,
                              compileMs: loader.compileMs, loadMs: loadMs, warmupMs: warmupMs)
    }

    static func key(_ dir: URL, _ choice: ComputeUnitsChoice) -> String { "\(dir.path)#\(choice.rawValue)" }
}

/**
 * Every preparation goes through here, one at a time (a serial queue): pressing Start while the start-up preparation
 * is still running waits for it and takes its result instead of compiling and loading the same model a second time.
 */
final class Preparer: @unchecked Sendable {
    private let queue = DispatchQueue(label: "veil-prepare")
    private let lock = NSLock()
    private var latest: PreparedPrefix?

    /** The prepared prefix for `dir` and `choice`: the one already made, or a new one (replacing the old). */
    func prepared(_ dir: URL, _ choice: ComputeUnitsChoice) throws -> PreparedPrefix {
        try queue.sync {
            let key = PreparedPrefix.key(dir, choice)
            lock.lock()
            let have = latest
            lock.unlock()
            if let have = have, have.key == key { return have }
            let p = try PreparedPrefix.prepare(dir, choice)
            lock.lock()
            latest = p
            lock.unlock()
            have?.runner.close()
            return p
        }
    }
}

/**
 * The session's PrefixLoader: the prefix the Preparer holds (verified, compiled, loaded and warmed up once), handed
 * to the pipeline without closing it when the session ends: the next session reuses it.
 */
final class PreparedLoader: PrefixLoader {
    let backend = "coreml"
    private let dir: URL
    private let choice: ComputeUnitsChoice
    private let preparer: Preparer
    private(set) var runtimeName = "Core ML"

    init(_ dir: URL, _ choice: ComputeUnitsChoice, _ preparer: Preparer) {
        self.dir = dir
        self.choice = choice
        self.preparer = preparer
    }

    func load(_ artifact: ArtifactEntry, _ file: URL, _ threads: Int) throws -> PrefixRunner {
        let p = try preparer.prepared(dir, choice)
        runtimeName = p.runtime
        return Borrowed(p.runner)
    }

    /** A runner the session uses but does not own. */
    private final class Borrowed: PrefixRunner {
        private let inner: PrefixRunner

        init(_ inner: PrefixRunner) {
            self.inner = inner
        }

        func run(_ pcm: [Float]) throws -> Embeddings { try inner.run(pcm) }

        func details() -> [String: Any?] { inner.details() }

        func close() {}
    }
}

/** A session for the export in `dir`: the pipeline over this phone's microphone and URLSession. */
func makeSession(_ dir: URL, _ choice: ComputeUnitsChoice, _ preparer: Preparer, _ codec: Codec, _ server: String,
                 _ token: String?, _ events: @escaping @Sendable (SessionEvent) -> Void) throws -> StreamingPipeline {
    let export = try ExportFolder.open(dir)
    let artifact = try export.manifest.artifact("coreml")
    return try StreamingPipeline(export, artifact, PreparedLoader(dir, choice, preparer), 1, codec, server, token,
                                 { URLSessionTransport() }, AudioCapture(), events)
}
