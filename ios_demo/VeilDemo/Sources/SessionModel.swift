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

    private var session: StreamingSession?
    private var prepared: PreparedPrefix?
    private let work = DispatchQueue(label: "veil-prepare")

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
        status = "preparing \(dir.lastPathComponent) (\(choice.rawValue)): verify, compile, load, warm up ..."
        work.async {
            let outcome = Result { try PreparedPrefix.prepare(dir, choice) }
            Task { @MainActor in
                switch outcome {
                case .success(let p):
                    self.prepared?.runner.close()
                    self.prepared = p
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
        guard session == nil, let dir = selectedExport else { return }
        UserDefaults.standard.set(server, forKey: "server")
        running = true
        error = nil
        transcript = ""
        isFinal = false
        chunkLines = []
        status = "asking for the microphone ..."
        AVAudioApplication.requestRecordPermission { granted in
            Task { @MainActor in
                guard granted else {
                    self.fail("microphone access was denied (Settings > Privacy > Microphone)")
                    return
                }
                do {
                    let s = try StreamingSession(dir, self.computeUnits, self.prepared, self.codec, self.server,
                                                 self.token.isEmpty ? nil : self.token) { event in
                        Task { @MainActor in self.onEvent(event) }
                    }
                    self.session = s
                    try s.start()
                    self.status = "listening ..."
                } catch {
                    self.fail((error as? VeilException)?.message ?? error.localizedDescription)
                }
            }
        }
    }

    func stop() {
        session?.stop()
        status = "finishing ..."
    }

    private func fail(_ message: String) {
        error = message
        running = false
        session?.cancel()
        session = nil
    }

    private func onEvent(_ event: SessionEvent) {
        switch event {
        case .status(let text):
            status = text
        case .modelReady(let runtime, let loadMs, let warmupMs):
            modelLine = String(format: "%@: load %.0f ms, warm-up %.0f ms", runtime, loadMs, warmupMs)
        case .ready(let sessionId):
            status = "streaming (session \(sessionId.prefix(8)))"
        case .chunkDone(let seq, let prefixMs, let rtf, let payloadBytes, let behindMs):
            chunkLines.append(String(format: "chunk %d: prefix %.1f ms (RTF %.3f), %d B, %.0f ms behind live",
                                     seq, prefixMs, rtf, payloadBytes, behindMs))
        case .partial(let text, let seq, let roundTripMs):
            transcript = text
            chunkLines.append(String(format: "partial %d: %.0f ms round trip", seq, roundTripMs))
        case .finished(let text, let roundTripMs):
            transcript = text
            isFinal = true
            status = String(format: "final in %.0f ms after END", roundTripMs)
            running = false
            session = nil
        case .failed(let reason, let message):
            fail("\(reason): \(message)")
        }
    }
}
