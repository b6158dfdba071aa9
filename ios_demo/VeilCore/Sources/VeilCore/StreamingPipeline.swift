// Mirrors android_demo/core/src/main/kotlin/veil/core/StreamingPipeline.kt
import Foundation

/**
 * The microphone as the pipeline needs it: 16 kHz mono 16-bit PCM written into a ring. The iOS app implements it
 * over AVAudioEngine; tests over a file's samples.
 */
public protocol Microphone: AnyObject {
    /**
     * Open the microphone and record into `ring`. Throws when it cannot open (releasing what it opened); a failure
     * later (a lost route, an interruption it cannot recover from) goes to `onError`, once.
     */
    func start(_ ring: PcmRingBuffer, _ onError: @escaping @Sendable (String) -> Void) throws

    /** Stop recording and release the engine and the audio session. Idempotent, safe from any thread. */
    func stop()
}

/** What a streaming session reports to the screen, in order. */
public enum SessionEvent {
    case status(String)
    case modelLoaded(runtime: String, loadMs: Double, details: [String: Any?])
    case ready(sessionId: String)
    /** One chunk through the prefix: its latency, real-time factor, payload size and how far behind live it ran. */
    case chunkDone(seq: Int, prefixMs: Double, rtf: Double, payloadBytes: Int, behindMs: Double)
    case partial(text: String, seq: Int, roundTripMs: Double)
    case finished(text: String, roundTripMs: Double)
    case failed(reason: String, message: String)
    /** The session ended without a transcript because the system took the microphone or the screen went away. */
    case interrupted(message: String)
}

/**
 * One utterance, start to stop: microphone -> ring buffer -> 2-s chunks -> prefix -> payload encoder -> `veil serve`
 * over a WebSocket -> partial and final text, with the microphone and the socket released on every path by a
 * `SessionLifecycle`. What is sent is decided by `PayloadEncoder` from the export's manifest: codebook indices for a
 * vq bottleneck (any other `codec` is refused before the microphone's audio reaches the network), noise added on the
 * phone for a noise bottleneck.
 *
 * `start` checks the server address, opens the microphone and returns; the pipeline thread then verifies and loads
 * the model while audio accumulates in the ring, connects, and works through the backlog. At `stop` the microphone
 * is released and the zero-padded tail goes with its true sample count and only its valid frames, then END.
 * Everything that can fail ends the session with one `.failed`; nothing here throws to the caller.
 */
public final class StreamingPipeline: @unchecked Sendable {
    private let export: ExportFolder
    private let artifact: ArtifactEntry
    private let loader: PrefixLoader
    private let threads: Int
    private let codec: Codec
    private let server: String
    private let token: String?
    /** A new, unconnected WebSocket transport (URLSessionTransport in the app). */
    private let transports: () -> Transport
    private let microphone: Microphone
    private let events: @Sendable (SessionEvent) -> Void
    private let ring: PcmRingBuffer
    private let lock = NSLock()
    private var client: ProtocolClient?
    private var pipeline: Thread?
    private let finishedThread = DispatchSemaphore(value: 0)
    public private(set) var lifecycle: SessionLifecycle!

    public init(_ export: ExportFolder, _ artifact: ArtifactEntry, _ loader: PrefixLoader, _ threads: Int,
                _ codec: Codec, _ server: String, _ token: String?, _ transports: @escaping () -> Transport,
                _ microphone: Microphone, _ events: @escaping @Sendable (SessionEvent) -> Void) throws {
        self.export = export
        self.artifact = artifact
        self.loader = loader
        self.threads = threads
        self.codec = codec
        self.server = server
        self.token = token
        self.transports = transports
        self.microphone = microphone
        self.events = events
        ring = try PcmRingBuffer()
        lifecycle = SessionLifecycle(Releaser(self))
    }

    /** Check the server address, open the microphone and start the pipeline thread. */
    public func start() {
        let url: String
        do {
            url = try ProtocolClient.websocketUrl(server)
        } catch {
            fail("bad_server", "\(error)")
            return
        }
        if !lifecycle.on(.start) { return }
        do {
            try microphone.start(ring) { [weak self] message in self?.fail("microphone", message) }
        } catch let e as VeilException {
            fail(e.reason, e.message)
            return
        } catch {
            fail("microphone", "\(type(of: error)): \(error.localizedDescription)")
            return
        }
        let t = Thread { [weak self] in
            self?.run(url)
            self?.finishedThread.signal()
        }
        t.name = "veil-pipeline"
        lock.lock()
        pipeline = t
        lock.unlock()
        t.start()
    }

    /** Stop listening; the chunks still in the ring are processed, then END and FINAL. */
    public func stop() {
        lifecycle.on(.stop)
    }

    /** End the session without a transcript: the system took the microphone, or the screen went away. */
    public func interrupt(_ why: String) {
        if lifecycle.on(.interrupt) { events(.interrupted(message: why)) }
        lock.lock()
        let t = pipeline
        lock.unlock()
        t?.cancel()
    }

    /** Wait up to `millis` for the pipeline thread to finish (tests). */
    public func join(_ millis: Int) {
        lock.lock()
        let started = pipeline != nil
        lock.unlock()
        if started && finishedThread.wait(timeout: .now() + .milliseconds(millis)) == .success {
            finishedThread.signal()  // later joins return at once
        }
    }

    private func fail(_ reason: String, _ message: String) {
        if lifecycle.on(.fail) { events(.failed(reason: reason, message: message)) }
    }

    private func run(_ url: String) {
        var prefix: PrefixRunner?
        defer { prefix?.close() }
        do {
            events(.status("checking \(artifact.file) against manifest.json ..."))
            let file = try export.verify(artifact)
            let encoder = try PayloadEncoder.forExport(export, codec)
            events(.status("loading \(artifact.displayName) ..."))
            try loader.prepareRuntime()
            let t0 = StreamingPipeline.nanoTime()
            let loaded = try loader.load(artifact, file, threads)
            prefix = loaded
            events(.modelLoaded(runtime: loader.runtimeName, loadMs: Double(StreamingPipeline.nanoTime() - t0) / 1e6,
                                details: loaded.details()))
            if lifecycle.state().terminal { return }
            // the token travels in the HELLO, never in a header (URLSession reserves Authorization)
            let c = try ProtocolClient(transports(), url, encoder.hello(token ?? ""), nil, Replies(self))
            lock.lock()
            client = c
            lock.unlock()
            lifecycle.on(.connected)
            if lifecycle.state().terminal { return }  // the socket was released at once; never opened
            try c.start()
            try stream(loaded, c, encoder)
        } catch let e as VeilException {
            fail(e.reason, e.message)
        } catch {
            fail("internal", "\(type(of: error)): \(error.localizedDescription)")
        }
    }

    private func stream(_ prefix: PrefixRunner, _ client: ProtocolClient, _ encoder: PayloadEncoder) throws {
        let chunk = export.manifest.chunk
        let chunker = try Chunker(chunk.chunkSamples)
        let trimmer = FrameTrimmer(chunk.frameSamples)
        var block = [Int16](repeating: 0, count: chunk.sampleRate / 10)
        let blockSize = block.count
        while !lifecycle.state().terminal {
            let n = try ring.read(&block, blockSize, 100)
            if n < 0 { break }
            for c in try chunker.pushPcm16(block, 0, n) {
                try send(prefix, client, encoder, trimmer, c, ring.available)
            }
        }
        if lifecycle.state().terminal { return }
        if let last = try chunker.finish() { try send(prefix, client, encoder, trimmer, last, 0) }
        if ring.droppedSamples > 0 {
            events(.status("the prefix fell \(ring.droppedSamples) samples behind the microphone; they were dropped"))
        }
        let seconds = Double(chunker.totalSamples) / Double(chunk.sampleRate)
        events(.status(String(format: "sent %.1f s of audio; waiting for the final ...", seconds)))
        try client.end()
    }

    private func send(_ prefix: PrefixRunner, _ client: ProtocolClient, _ encoder: PayloadEncoder,
                      _ trimmer: FrameTrimmer, _ c: Chunk, _ backlog: Int) throws {
        let t0 = StreamingPipeline.nanoTime()
        let embeddings = try trimmer.validFrames(c, try prefix.run(c.samples))
        let prefixMs = Double(StreamingPipeline.nanoTime() - t0) / 1e6
        let payload = try encoder.encode(embeddings)
        try client.sendChunk(c.index, c.validSamples, payload)
        let spec = export.manifest.chunk
        events(.chunkDone(seq: c.index, prefixMs: prefixMs, rtf: prefixMs / 1e3 / spec.chunkSeconds,
                          payloadBytes: payload.count, behindMs: Double(backlog) * 1e3 / Double(spec.sampleRate)))
    }

    private static func nanoTime() -> UInt64 { DispatchTime.now().uptimeNanoseconds }

    /** Gives back what the lifecycle releases. */
    private final class Releaser: SessionReleaser {
        private unowned let pipeline: StreamingPipeline

        init(_ pipeline: StreamingPipeline) {
            self.pipeline = pipeline
        }

        func release(_ resource: SessionResource) {
            switch resource {
            case .microphone:
                pipeline.microphone.stop()
                pipeline.ring.close()  // the reader sees the end of the audio whatever the microphone did
            case .socket:
                pipeline.lock.lock()
                let c = pipeline.client
                pipeline.lock.unlock()
                c?.cancel()
            }
        }
    }

    /** The server's replies, forwarded as events. */
    private final class Replies: SessionListener {
        private weak var pipeline: StreamingPipeline?

        init(_ pipeline: StreamingPipeline) {
            self.pipeline = pipeline
        }

        func onReady(_ ready: Message.Ready) {
            pipeline?.lifecycle.on(.ready)
            pipeline?.events(.ready(sessionId: ready.sessionIdHex))
        }

        func onPartial(_ partial: Message.Partial, _ roundTripMs: Double) {
            pipeline?.events(.partial(text: partial.text, seq: partial.seq, roundTripMs: roundTripMs))
        }

        func onFinal(_ message: Message.Final, _ roundTripMs: Double) {
            pipeline?.lifecycle.on(.final)  // the client closes the socket (1000) when this returns
            pipeline?.events(.finished(text: message.text, roundTripMs: roundTripMs))
        }

        func onFailed(_ error: SessionError) {
            pipeline?.fail(error.name, "server: \(error.code) \(error.name): \(error.message)")
        }
    }
}
