// One utterance, start to stop (Android: StreamingSession.kt).
import Foundation
import VeilCore

/** What a streaming session reports to the screen, in order. */
enum SessionEvent {
    case status(String)
    case modelReady(runtime: String, loadMs: Double, warmupMs: Double)
    case ready(sessionId: String)
    /** One chunk through the prefix: its latency, real-time factor, payload size and how far behind live it ran. */
    case chunkDone(seq: Int, prefixMs: Double, rtf: Double, payloadBytes: Int, behindMs: Double)
    case partial(text: String, seq: Int, roundTripMs: Double)
    case finished(text: String, roundTripMs: Double)
    case failed(reason: String, message: String)
}

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
        return PreparedPrefix(key: key(dir, choice), runner: runner, runtime: loader.runtimeName,
                              compileMs: loader.compileMs, loadMs: loadMs, warmupMs: warmupMs)
    }

    static func key(_ dir: URL, _ choice: ComputeUnitsChoice) -> String { "\(dir.path)#\(choice.rawValue)" }
}

/**
 * One utterance: microphone -> ring buffer -> 2-s chunks -> Core ML prefix -> payload encoder -> `veil serve` over a
 * WebSocket -> partial and final text. What is sent is decided by `PayloadEncoder` from the export's manifest:
 * codebook indices for a vq bottleneck (any other `codec` is refused before audio reaches the network), noise added
 * on the phone for a noise bottleneck.
 *
 * Capture starts first and never waits; the pipeline thread then prepares the prefix (unless the app already did at
 * start-up: verified, compiled, loaded, one warm-up prediction) while audio accumulates in the ring, connects, and
 * works through the backlog. Each full chunk is sent as soon as it is encoded (PARTIALs come back asynchronously);
 * at Stop the zero-padded tail goes with its true sample count and only its valid frames, then END. Everything
 * that can fail (the export, Core ML, the network, a refusal by the server) ends the session with `.failed`.
 */
final class StreamingSession {
    private let exportDir: URL
    private let choice: ComputeUnitsChoice
    private var prepared: PreparedPrefix?
    private let codec: Codec
    private let server: String
    private let token: String?
    private let events: (SessionEvent) -> Void
    private let ring: PcmRingBuffer
    private var capture: AudioCapture?
    private let lock = NSLock()
    private var failedFlag = false
    private var client: ProtocolClient?

    init(_ exportDir: URL, _ choice: ComputeUnitsChoice, _ prepared: PreparedPrefix?, _ codec: Codec, _ server: String,
         _ token: String?, _ events: @escaping (SessionEvent) -> Void) throws {
        self.exportDir = exportDir
        self.choice = choice
        self.prepared = prepared
        self.codec = codec
        self.server = server
        self.token = token
        self.events = events
        ring = try PcmRingBuffer()
    }

    private var failed: Bool {
        lock.lock()
        defer { lock.unlock() }
        return failedFlag
    }

    func start() throws {
        let capture = AudioCapture(ring) { [weak self] message in self?.fail("microphone", message) }
        self.capture = capture
        try capture.start()
        let pipeline = Thread { [weak self] in self?.run() }
        pipeline.name = "veil-pipeline"
        pipeline.start()
    }

    /** Stop listening; the chunks still in the ring are processed, then END and FINAL. */
    func stop() { capture?.stop() }

    /** Stop without a final transcript (the screen went away). */
    func cancel() {
        lock.lock()
        failedFlag = true
        let c = client
        lock.unlock()
        capture?.stop()
        c?.cancel()
    }

    private func fail(_ reason: String, _ message: String) {
        lock.lock()
        let already = failedFlag
        failedFlag = true
        lock.unlock()
        if !already { events(.failed(reason: reason, message: message)) }
    }

    private func run() {
        do {
            var p = prepared
            if p == nil || p?.key != PreparedPrefix.key(exportDir, choice) {
                events(.status("verifying, compiling and loading the prefix (\(choice.rawValue)) ..."))
                p = try PreparedPrefix.prepare(exportDir, choice)
            }
            guard let prefix = p else { return }
            events(.modelReady(runtime: prefix.runtime, loadMs: prefix.loadMs, warmupMs: prefix.warmupMs))
            let export = try ExportFolder.open(exportDir)
            let encoder = try PayloadEncoder.forExport(export, codec)
            let c = try ProtocolClient(URLSessionTransport(), server, encoder.hello(), token, Replies(self))
            lock.lock()
            client = c
            lock.unlock()
            try c.start()
            try stream(prefix.runner, c, encoder, export.manifest.chunk)
        } catch let e as VeilException {
            fail(e.reason, e.message)
            client?.cancel()
        } catch {
            fail("internal", "\(type(of: error)): \(error.localizedDescription)")
            client?.cancel()
        }
    }

    private func stream(_ prefix: PrefixRunner, _ client: ProtocolClient, _ encoder: PayloadEncoder,
                        _ chunk: ChunkSpec) throws {
        let chunker = try Chunker(chunk.chunkSamples)
        let trimmer = FrameTrimmer(chunk.frameSamples)
        var block = [Int16](repeating: 0, count: chunk.sampleRate / 10)
        let blockSize = block.count
        while !failed {
            let n = try ring.read(&block, blockSize, 100)
            if n < 0 { break }
            for c in try chunker.pushPcm16(block, 0, n) {
                try send(prefix, client, encoder, trimmer, c, ring.available, chunk)
            }
        }
        if failed { return }
        if let last = try chunker.finish() { try send(prefix, client, encoder, trimmer, last, 0, chunk) }
        if ring.droppedSamples > 0 {
            events(.status("the prefix fell \(ring.droppedSamples) samples behind the microphone; they were dropped"))
        }
        let seconds = Double(chunker.totalSamples) / Double(chunk.sampleRate)
        events(.status(String(format: "sent %.1f s of audio; waiting for the final ...", seconds)))
        try client.end()
    }

    private func send(_ prefix: PrefixRunner, _ client: ProtocolClient, _ encoder: PayloadEncoder,
                      _ trimmer: FrameTrimmer, _ c: Chunk, _ backlog: Int, _ chunk: ChunkSpec) throws {
        let t0 = DispatchTime.now().uptimeNanoseconds
        let embeddings = try trimmer.validFrames(c, try prefix.run(c.samples))
        let prefixMs = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6
        let payload = try encoder.encode(embeddings)
        try client.sendChunk(c.index, c.validSamples, payload)
        events(.chunkDone(seq: c.index, prefixMs: prefixMs, rtf: prefixMs / 1e3 / chunk.chunkSeconds,
                          payloadBytes: payload.count, behindMs: Double(backlog) * 1e3 / Double(chunk.sampleRate)))
    }

    /** The server's replies, forwarded as events. */
    private final class Replies: SessionListener {
        private weak var session: StreamingSession?

        init(_ session: StreamingSession) {
            self.session = session
        }

        func onReady(_ ready: Message.Ready) { session?.events(.ready(sessionId: ready.sessionIdHex)) }

        func onPartial(_ partial: Message.Partial, _ roundTripMs: Double) {
            session?.events(.partial(text: partial.text, seq: partial.seq, roundTripMs: roundTripMs))
        }

        func onFinal(_ message: Message.Final, _ roundTripMs: Double) {
            session?.events(.finished(text: message.text, roundTripMs: roundTripMs))
        }

        func onFailed(_ error: SessionError) { session?.fail(error.name, "\(error.code) \(error.name): \(error.message)") }
    }
}
