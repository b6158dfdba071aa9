// What the screen shows and what the user picked (Android: MainViewModel.kt).
import AVFAudio
import Foundation
import VeilCore

/**
 * Owns the streaming session and the prepared prefix; turns session events into published state on the main
 * actor. At start-up (and whenever the export or the compute units change) the prefix is prepared off the main
 * thread: verified against manifest.json, compiled once per artifact, loaded, and run once on silence, because the
 * first Core ML load and prediction are far slower than the warm ones.
 */
@MainActor
final class SessionModel: ObservableObject {
    @Published var exports: [URL] = []
    @Published var exportIndex = 0
    @Published var computeUnits = ComputeUnitsChoice.all
    @Published var codec = Codec.int8
    /** What the selected export may send, the default first: only vq for a vq bottleneck. */
    @Published private(set) var codecs = PayloadEncoder.CONTINUOUS_CODECS
    @Published var server = UserDefaults.standard.string(forKey: "server") ?? "ws://192.168.1.10:8000"
    @Published var token = ""
    @Published private(set) var running = false
    @Published private(set) var status = ""
    @Published private(set) var modelLine = ""
    @Published private(set) var error: String?
    @Published private(set) var transcript = ""
    @Published private(set) var isFinal = false
    @Published private(set) var chunkLines: [String] = []

    private var session: StreamingPipeline?
    /** Prepares one prefix at a time; a Start during the start-up preparation waits for it (no second compile). */
    private let preparer = Preparer()
    private let work = DispatchQueue(label: "veil-start")

    var selectedExport: URL? { exports.indices.contains(exportIndex) ? exports[exportIndex] : nil }

    func refreshExports() {
        exports = ExportStore.folders()
        if !exports.indices.contains(exportIndex) { exportIndex = 0 }
        showCodecs()
        if selectedExport == nil {
            status = "no export: copy an `export-prefix --target ios` folder into the app's Documents/exports/ (Finder or Files)"
        }
    }

    /** The codec picker follows the selected export (only vq for a vq bottleneck), keeping the pick if allowed. */
    func showCodecs() {
        codecs = selectedExport.map { ExportStore.codecs($0) } ?? PayloadEncoder.CONTINUOUS_CODECS
        if !codecs.contains(codec) { codec = codecs[0] }
    }

    /** Prepare the prefix for the selected export and compute units, off the main thread. */
    func prepare() {
        showCodecs()
        guard let dir = selectedExport, !running else { return }
        let choice = computeUnits
        let preparer = self.preparer
        status = "preparing \(dir.lastPathComponent) (\(choice.rawValue)): verify, compile, load, warm up ..."
        work.async {
            let outcome = Result { try preparer.prepared(dir, choice) }
            Task { @MainActor [weak self] in
                guard let self = self else { return }
                switch outcome {
                case .success(let p):
                    self.modelLine = String(format: "%@: compile %.0f ms, load %.0f ms, warm-up %.0f ms", p.runtime,
                                            p.compileMs, p.loadMs, p.warmupMs)
                    self.status = "ready"
                case .failure(let e):
                    self.error = (e as? VeilException)?.message ?? e.localizedDescription
                    self.status = ""
                }
            }
        }
    }

    func start() {
        guard session == nil, !running, let dir = selectedExport else { return }
        UserDefaults.standard.set(server, forKey: "server")
        running = true
        error = nil
        transcript = ""
        isFinal = false
        chunkLines = []
        status = "asking for the microphone ..."
        let (choice, codec, server, token) = (computeUnits, self.codec, self.server, self.token)
        let preparer = self.preparer
        Task { @MainActor [weak self] in
            // the async form: no completion handler that AVFAudio would call off the main actor
            let granted = await AVAudioApplication.requestRecordPermission()
            guard let self = self else { return }
            guard granted else {
                self.fail("microphone access was denied (Settings > Privacy > Microphone)")
                return
            }
            // events come from the pipeline thread, URLSession's queue and the audio queue: a @Sendable closure
            // that hops to the main actor, never a main-actor closure called from those threads
            let events: @Sendable (SessionEvent) -> Void = { [weak self] event in
                Task { @MainActor in self?.onEvent(event) }
            }
            do {
                let s = try makeSession(dir, choice, preparer, codec, server, token.isEmpty ? nil : token, events)
                self.session = s
                s.start()
                if self.running { self.status = "listening ..." }
            } catch {
                self.fail((error as? VeilException)?.message ?? error.localizedDescription)
            }
        }
    }

    func stop() {
        session?.stop()
        status = "finishing ..."
    }

    /** The scene left the foreground: end the session as interrupted (the microphone and the socket are released). */
    func interrupt(_ why: String) {
        session?.interrupt(why)
    }

    private func fail(_ message: String) {
        error = message
        running = false
        session?.interrupt("the session failed")
        session = nil
    }

    private func onEvent(_ event: SessionEvent) {
        switch event {
        case .status(let text):
            status = text
        case .modelLoaded(let runtime, _, _):
            modelLine = "\(runtime): prepared; listening"
        case .ready(let sessionId):
            status = "streaming (session \(sessionId.prefix(8)))"
        case .chunkDone(let seq, let prefixMs, let rtf, let payloadBytes, let behindMs):
            chunkLines.append(String(format: "chunk %ld: prefix %.1f ms (RTF %.3f), %ld B, %.0f ms behind live",
                                     seq, prefixMs, rtf, payloadBytes, behindMs))
        case .partial(let text, let seq, let roundTripMs):
            transcript = text
            chunkLines.append(String(format: "partial %ld: %.0f ms round trip", seq, roundTripMs))
        case .finished(let text, let roundTripMs):
            transcript = text
            isFinal = true
            status = String(format: "final in %.0f ms after END", roundTripMs)
            running = false
            session = nil
        case .failed(let reason, let message):
            fail("\(reason): \(message)")
        case .interrupted(let message):
            error = "interrupted: \(message)"
            running = false
            session = nil
        }
    }
}
