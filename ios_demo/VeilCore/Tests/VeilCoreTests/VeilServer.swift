// Mirrors android_demo/core/src/test/kotlin/veil/core/VeilServer.kt
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import VeilCore
import XCTest

#if os(macOS) || os(Linux)
/**
 * A real `veil serve` of the shipped model on 127.0.0.1 (an ephemeral port), started from the repository's .venv
 * as `python -m toolkit.cli serve --port 0 ...`, accepting the test vectors' token. Its address is read from the
 * "listening on" line it prints; `close` stops it (SIGTERM, then SIGKILL).
 */
final class VeilServer {
    let url: String
    private let process: Process
    private let output: LineQueue

    private init(_ process: Process, _ url: String, _ output: LineQueue) {
        self.process = process
        self.url = url
        self.output = output
    }

    func close() {
        process.terminate()
        let deadline = Date(timeIntervalSinceNow: 20)
        while process.isRunning && Date() < deadline { usleep(50_000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    }

    /** Lines a process prints, as they come (Kotlin: a LinkedBlockingQueue fed by a reader thread). */
    final class LineQueue {
        private let condition = NSCondition()
        private var lines: [String] = []
        private var all: [String] = []
        private var ended = false

        func add(_ line: String) {
            condition.lock()
            lines.append(line)
            all.append(line)
            condition.broadcast()
            condition.unlock()
        }

        func end() {
            condition.lock()
            ended = true
            condition.broadcast()
            condition.unlock()
        }

        /** The next line, waiting up to `seconds`; nil on timeout or when the output ended. */
        func poll(_ seconds: Double) -> String? {
            condition.lock()
            defer { condition.unlock() }
            let deadline = Date(timeIntervalSinceNow: seconds)
            while lines.isEmpty && !ended {
                if !condition.wait(until: deadline) { break }
            }
            return lines.isEmpty ? nil : lines.removeFirst()
        }

        var text: String {
            condition.lock()
            defer { condition.unlock() }
            return all.joined(separator: "\n")
        }
    }

    static func start(_ token: String, _ startupSeconds: Double = 300) throws -> VeilServer {
        let repo = TestFiles.repo
        guard let python = TestFiles.python() else {
            throw XCTSkip("\(repo.path)/.venv/bin/python not found: run `make setup` (the live test starts `veil serve`)")
        }
        let tokens = try TestFiles.tempDir("veil-serve").appendingPathComponent("tokens")
        try Data("sha256:\(SHA256.hex(Array(token.utf8)))\n".utf8).write(to: tokens)
        let process = Process()
        process.executableURL = python
        process.arguments = ["-m", "toolkit.cli", "serve", "--host", "127.0.0.1", "--port", "0",
                             "--checkpoint", repo.appendingPathComponent("models/normalized.safetensors").path,
                             "--token-file", tokens.path, "--threads", "1", "--max-wait-ms", "1",
                             "--log-level", "warning"]
        process.currentDirectoryURL = repo
        var environment = ProcessInfo.processInfo.environment
        environment["PYTHONPATH"] = repo.path
        process.environment = environment
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        let output = LineQueue()
        try process.run()
        let reader = Thread {
            var pending = [UInt8]()
            while true {
                let data = pipe.fileHandleForReading.availableData
                if data.isEmpty { break }
                pending.append(contentsOf: data)
                while let newline = pending.firstIndex(of: 0x0A) {
                    output.add(String(decoding: pending[..<newline], as: UTF8.self))
                    pending.removeSubrange(...newline)
                }
            }
            if !pending.isEmpty { output.add(String(decoding: pending, as: UTF8.self)) }
            output.end()
        }
        reader.start()
        let listening = try NSRegularExpression(pattern: "listening on (http://127\\.0\\.0\\.1:\\d+)")
        let deadline = Date(timeIntervalSinceNow: startupSeconds)
        while Date() < deadline {
            if let line = output.poll(1) {
                let range = NSRange(line.startIndex..<line.endIndex, in: line)
                if let m = listening.firstMatch(in: line, range: range), let r = Range(m.range(at: 1), in: line) {
                    return VeilServer(process, String(line[r]), output)
                }
            }
            if !process.isRunning && output.poll(0) == nil {
                throw IllegalStateException(message: "veil serve exited with \(process.terminationStatus): \(output.text)")
            }
        }
        kill(process.processIdentifier, SIGKILL)
        throw IllegalStateException(message: "veil serve did not listen within \(startupSeconds) s: \(output.text)")
    }
}
#endif
