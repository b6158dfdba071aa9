// Mirrors android_demo/core/src/test/kotlin/veil/core/StreamingPipelineTest.kt
import Foundation
import VeilCore
import XCTest

/**
 * The app's session pipeline without the app: a real `veil serve` on 127.0.0.1, the corpus snippet of the vectors as
 * the microphone's audio, the Swift stand-in prefix, URLSessionTransport as the WebSocket. Every ending (a final, a
 * bad address, a bad export, a microphone that fails to open or fails later, a refused token, an interruption
 * before the socket) releases the microphone once and leaves no socket open. Skipped (XCTSkip, with the reason)
 * where LiveServerTest is.
 */
final class StreamingPipelineTest: XCTestCase {
    #if os(macOS) || os(Linux)
    private static var server: VeilServer?
    #endif
    private static var unavailable: String?
    private static var testToken: String { (try? TestVectors.index().getString("test_token")) ?? "" }

    override class func tearDown() {
        #if os(macOS) || os(Linux)
        server?.close()
        server = nil
        #endif
        super.tearDown()
    }

    private func serverUrl() throws -> String {
        #if os(macOS) || os(Linux)
        if let s = StreamingPipelineTest.server { return s.url }
        if let why = StreamingPipelineTest.unavailable { throw XCTSkip(why) }
        do {
            let s = try VeilServer.start(StreamingPipelineTest.testToken)
            let events = LiveServerTest.EventQueue()
            let probe = URLSessionTransport()
            probe.connect(try ProtocolClient.websocketUrl(s.url), [:], events)
            let first = events.poll(30)
            probe.cancel()
            guard case .open? = first else {
                s.close()
                throw XCTSkip("this toolchain's FoundationNetworking cannot open a WebSocket (\(String(describing: first)))")
            }
            StreamingPipelineTest.server = s
            return s.url
        } catch let skip as XCTSkip {
            StreamingPipelineTest.unavailable = "\(skip)"
            throw skip
        }
        #else
        throw XCTSkip("the pipeline test starts `veil serve` as a subprocess: macOS or Linux only")
        #endif
    }

    /** The vectors' corpus snippet as 16-bit PCM, written into the ring at once; fails or refuses on demand. */
    private final class FileMicrophone: Microphone, @unchecked Sendable {
        private let refuse: Error?
        private let lock = NSLock()
        private(set) var starts = 0
        private(set) var stops = 0
        private var onError: (@Sendable (String) -> Void)?

        init(_ refuse: Error? = nil) {
            self.refuse = refuse
        }

        func start(_ ring: PcmRingBuffer, _ onError: @escaping @Sendable (String) -> Void) throws {
            lock.lock()
            starts += 1
            lock.unlock()
            if let refuse = refuse { throw refuse }
            self.onError = onError
            let pcm = try TestVectors.f32(try TestVectors.index().getJSONObject("chunker").getJSONObject("pcm").getString("file"))
            try ring.write(pcm.map { Int16(max(-32768, min(32767, $0 * 32768))) })
        }

        /** A read error, as the engine losing its input for good. */
        func readError() { onError?("microphone read failed (the audio engine stopped)") }

        func stop() {
            lock.lock()
            stops += 1
            lock.unlock()
        }
    }

    /** URLSessionTransport, counting how the pipeline lets the socket go. */
    private final class CountingTransport: Transport {
        private let inner = URLSessionTransport()
        private(set) var cancels = 0
        private(set) var closes = 0
        private(set) var headers: [String: String] = [:]

        func connect(_ url: String, _ headers: [String: String], _ listener: TransportListener) {
            self.headers = headers
            inner.connect(url, headers, listener)
        }

        func sendBinary(_ bytes: [UInt8]) -> Bool { inner.sendBinary(bytes) }

        func close(_ code: Int, _ reason: String) {
            closes += 1
            inner.close(code, reason)
        }

        func cancel() {
            cancels += 1
            inner.cancel()
        }
    }

    /** Collects a pipeline's events. */
    private final class Events: @unchecked Sendable {
        private let condition = NSCondition()
        private var queue: [SessionEvent] = []

        func add(_ e: SessionEvent) {
            condition.lock()
            queue.append(e)
            condition.broadcast()
            condition.unlock()
        }

        /** The first event `match` accepts (nil on anything else ends the wait only at the deadline). */
        func first<T>(_ what: String, _ match: (SessionEvent) -> T?) throws -> T {
            let deadline = Date(timeIntervalSinceNow: 120)
            condition.lock()
            defer { condition.unlock() }
            while true {
                while !queue.isEmpty {
                    let e = queue.removeFirst()
                    if let t = match(e) { return t }
                }
                if !condition.wait(until: deadline) { throw IllegalStateException(message: "no \(what) within 120 s") }
            }
        }
    }

    /** One pipeline over an export folder with the stand-in runtime. */
    private final class Run {
        let mic: FileMicrophone
        let events = Events()
        let pipeline: StreamingPipeline

        init(_ address: String, _ token: String, mic: FileMicrophone = FileMicrophone(),
             loader: PrefixLoader = StandInFramePrefix.Loader(), dir: URL) throws {
            self.mic = mic
            let export = try ExportFolder.open(dir)
            let events = self.events
            var made: [CountingTransport] = []
            let lock = NSLock()
            pipeline = try StreamingPipeline(export, try export.manifest.artifact("executorch"), loader, 1, .int8, address,
                                             token, {
                                                 let t = CountingTransport()
                                                 lock.lock()
                                                 made.append(t)
                                                 lock.unlock()
                                                 return t
                                             }, mic, { events.add($0) })
            transportsOf = { lock.lock(); defer { lock.unlock() }; return made }
        }

        private var transportsOf: () -> [CountingTransport] = { [] }

        func sockets() -> [CountingTransport] { transportsOf() }

        func failed() throws -> (String, String) {
            try events.first("failed") { if case .failed(let r, let m) = $0 { return (r, m) } else { return nil } }
        }

        func assertReleased(_ state: SessionState, file: StaticString = #filePath, line: UInt = #line) {
            pipeline.join(30_000)
            XCTAssertEqual(state, pipeline.lifecycle.state(), file: file, line: line)
            XCTAssertEqual(1, mic.stops, "microphone stops", file: file, line: line)
            for t in sockets() {
                // after FINAL the client closes (1000) on the transport's queue once the listener returns
                let deadline = Date(timeIntervalSinceNow: 10)
                while t.cancels + t.closes == 0 && Date() < deadline { Thread.sleep(forTimeInterval: 0.01) }
                XCTAssertTrue(t.cancels + t.closes >= 1, "the socket was let go", file: file, line: line)
                XCTAssertTrue(t.headers.isEmpty, "the token travels in the HELLO", file: file, line: line)
            }
            for r in SessionResource.allCases { XCTAssertFalse(pipeline.lifecycle.holds(r), "\(r) still held") }
        }
    }

    /** An export folder of the vectors' model's manifest whose artifact files match their sizes and digests. */
    private func exportFolder() throws -> URL {
        let dir = try TestFiles.tempDir("veil-export")
        let o = try JSONObject(try TestFiles.resourceText("export-manifest.json"))
        let list = try o.getJSONArray("artifacts")
        for i in 0..<list.length {
            let entry = try list.getJSONObject(i)
            let f = dir.appendingPathComponent(try entry.getString("file"))
            let bytes = (0..<(1000 + i)).map { UInt8(truncatingIfNeeded: $0 * 7 + i) }
            try Data(bytes).write(to: f)
            entry.put("size_bytes", bytes.count)
            entry.put("sha256", try ExportFolder.sha256Hex(f))
        }
        try Data(o.toString(1).utf8).write(to: dir.appendingPathComponent("manifest.json"))
        return dir
    }

    private func run(_ address: String? = nil, token: String? = nil, mic: FileMicrophone = FileMicrophone(),
                     loader: PrefixLoader = StandInFramePrefix.Loader(), dir: URL? = nil) throws -> Run {
        try Run(try address ?? serverUrl(), token ?? StreamingPipelineTest.testToken, mic: mic, loader: loader,
                dir: try dir ?? exportFolder())
    }

    func testAStoppedSessionGetsItsFinalThenTheMicrophoneAndTheSocketAreReleased() throws {
        let r = try run()
        r.pipeline.start()
        _ = try r.events.first("ready") { if case .ready = $0 { return true } else { return nil } }
        r.pipeline.stop()
        XCTAssertEqual(1, r.mic.stops, "Stop releases the microphone at once")
        _ = try r.events.first("final") { if case .finished = $0 { return true } else { return nil } }
        r.assertReleased(.finished)
        XCTAssertEqual(1, r.sockets().count)
        XCTAssertEqual(1, r.sockets().first?.closes, "close 1000 after FINAL")
    }

    func testABadServerAddressFailsBeforeTheMicrophoneOpens() throws {
        let r = try run("192.168.1.10:8000")
        r.pipeline.start()
        XCTAssertEqual("bad_server", try r.failed().0)
        XCTAssertEqual(0, r.mic.starts)
        XCTAssertEqual(.failed, r.pipeline.lifecycle.state())
    }

    func testAFailedVerifyReleasesTheMicrophoneAndNeverConnects() throws {
        let dir = try exportFolder()
        let file = dir.appendingPathComponent(try ExportFolder.open(dir).manifest.artifact("executorch").file)
        let handle = try FileHandle(forWritingTo: file)
        handle.seekToEndOfFile()
        handle.write(Data([1]))
        handle.closeFile()
        let r = try run(dir: dir)
        r.pipeline.start()
        XCTAssertEqual("size_mismatch", try r.failed().0)
        r.assertReleased(.failed)
        XCTAssertTrue(r.sockets().isEmpty)
    }

    func testAMicrophoneThatCannotOpenOrFailsLaterReleasesTheMicrophoneAndTheSocket() throws {
        let refused = try run(mic: FileMicrophone(IllegalStateException(message: "the microphone could not be opened")))
        refused.pipeline.start()
        XCTAssertEqual("microphone", try refused.failed().0)
        refused.assertReleased(.failed)
        let denied = try run(mic: FileMicrophone(VeilException("permission", "microphone access was denied")))
        denied.pipeline.start()
        XCTAssertEqual("permission", try denied.failed().0)
        denied.assertReleased(.failed)

        let broken = try run()
        broken.pipeline.start()
        _ = try broken.events.first("ready") { if case .ready = $0 { return true } else { return nil } }
        broken.mic.readError()
        XCTAssertEqual("microphone", try broken.failed().0)
        broken.assertReleased(.failed)
        XCTAssertEqual(1, broken.sockets().first?.cancels)
    }

    func testARefusedTokenReleasesTheMicrophoneAndTheSocket() throws {
        let r = try run(token: "not-the-token")
        r.pipeline.start()
        let (reason, message) = try r.failed()
        XCTAssertEqual("unauthorized", reason, message)
        r.assertReleased(.failed)
    }

    func testAnInterruptionWhileTheModelLoadsReleasesTheMicrophoneAndNeverOpensASocket() throws {
        final class Slow: PrefixLoader {
            let inner = StandInFramePrefix.Loader()
            let loading = DispatchSemaphore(value: 0)
            let release = DispatchSemaphore(value: 0)
            var backend: String { inner.backend }
            var runtimeName: String { inner.runtimeName }

            func load(_ artifact: ArtifactEntry, _ file: URL, _ threads: Int) throws -> PrefixRunner {
                loading.signal()
                _ = release.wait(timeout: .now() + 30)
                return try inner.load(artifact, file, threads)
            }
        }
        let slow = Slow()
        let r = try run(loader: slow)
        r.pipeline.start()
        XCTAssertEqual(.success, slow.loading.wait(timeout: .now() + 30))
        r.pipeline.interrupt("a phone call took the microphone")
        slow.release.signal()
        let message = try r.events.first("interrupted") {
            if case .interrupted(let m) = $0 { return m } else { return nil }
        }
        XCTAssertEqual("a phone call took the microphone", message)
        r.assertReleased(.interrupted)
        XCTAssertTrue(r.sockets().isEmpty)
    }
}
