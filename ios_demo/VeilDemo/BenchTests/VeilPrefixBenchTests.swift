// Veil's on-iPhone benchmark of an exported prefix (.mlpackage): XCTest performance tests, one per Core ML
// compute-unit setting, in the VeilDemo project's VeilBenchTests target. Each writes the `veil bench` JSON
// (veil-bench/1, through VeilCore's BenchSchema) and prints the log lines `veil bench EXPORT_DIR --device ios
// --ios-log FILE` parses (protocol: toolkit/bench/phones.py).
//
// Setup, once: put the export folder (manifest.json + the .mlpackage) in ios_demo/VeilDemo/Exports/NAME/ (the
// test bundle gets it as a folder reference: the package is compiled on the phone, as the app does), then
// `cd ios_demo/VeilDemo && xcodegen generate`. With several exports there, set VEIL_EXPORT=NAME in the scheme's
// test environment. Optional: Exports/NAME/input.raw, one chunk of PCM as little-endian float32 (the host bench's
// chunk); without it a 2-s chirp is timed (the graph is static, so latency does not depend on the values).
//
// Run on the phone (UDID from `xcrun devicectl list devices`):
//   xcodebuild test -project ios_demo/VeilDemo/VeilDemo.xcodeproj -scheme VeilDemo -configuration Release \
//       -destination 'platform=iOS,id=<UDID>' -only-testing:VeilBenchTests/VeilPrefixBenchTests \
//       -allowProvisioningUpdates 2>&1 | tee ios-bench.log
//   veil bench EXPORT_DIR --device ios --ios-log ios-bench.log
//
// Each test: the .mlpackage is verified against manifest.json and compiled once (compile_ms, cached for the other
// tests); then VeilCore's BenchRunner, the procedure of the Android app's benchmark: load with the compute-unit
// setting (load_ms), first prediction (first_inference_ms), warm-up predictions, `iterations` timed predictions
// (p50/p90/p99, the warm latency), memory (resident size and phys_footprint). It logs a `veil-bench:` marker line
// with load, first and warm times, prints the JSON document on one `veil-bench-json:` line, attaches it to the
// result bundle and writes it to the test's temporary folder; then XCTest measures `iterations` predictions with
// XCTClockMetric, XCTCPUMetric and XCTMemoryMetric (XCTest runs the block iterationCount + 1 times and drops the
// first), the lines the --ios-log parser reads. A Debug build is refused: it is not what ships.

import CoreML
import Foundation
import VeilCore
import XCTest

final class VeilPrefixBenchTests: XCTestCase {
    /** Timed predictions per compute-unit setting: as many as the host bench's >= 50 timed runs. */
    static let iterations = 50
    static let warmup = 5
    /** Rows measured so far in this run (one per compute-unit setting), rewritten into the document after each test. */
    private static var rows: [JSONObject] = []
    private static var compiled: (URL, Double)?
    private static let runId: String = {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.dateFormat = "yyyyMMdd-HHmmss"
        return "ios-" + f.string(from: Date())
    }()
    private static let started = Date()

    func testPrefixCPUOnly() throws { try bench(.cpuOnly) }
    func testPrefixCPUAndGPU() throws { try bench(.cpuAndGPU) }
    func testPrefixCPUAndNeuralEngine() throws { try bench(.cpuAndNeuralEngine) }
    func testPrefixAll() throws { try bench(.all) }

    private func bench(_ choice: ComputeUnitsChoice, caseName: String = #function) throws {
        let bundle = Bundle(for: Self.self)
        let app = DeviceFacts.app(bundle)
        let device = DeviceFacts.device()
        if app.debuggable {
            let doc = BenchSchema.failure(Self.runId, command(), iso8601(Date()), "refusing to benchmark a Debug build: " +
                "unoptimized Swift is many times slower; run xcodebuild test with -configuration Release", device, app)
            try publish(doc)
            XCTFail("refusing to benchmark a Debug build (xcodebuild test -configuration Release)")
            return
        }
        let dir = try exportFolder(bundle)
        let (export, artifact, package) = try ExportStore.open(dir)
        if Self.compiled == nil { Self.compiled = try CompiledModelCache.compiled(artifact, package) }
        let (compiledURL, compileMs) = Self.compiled!
        let chunk = export.manifest.chunk
        let (input, inputDescription) = try Self.input(dir, chunk)
        let settings = try BenchSettings(1, Self.warmup, Self.iterations)
        let loader = CoreMLPrefixLoader(choice, compileMs: compileMs)
        // the payload the app would send for this export (vq indices for a vq bottleneck, the default codec else)
        let encoder = try PayloadEncoder.forExport(export, PayloadEncoder.codecsFor(export.manifest)[0])
        let m = try BenchRunner.measure(loader, artifact, compiledURL, input, chunk, settings, FootprintProbe(), encoder)

        let version = ProcessInfo.processInfo.operatingSystemVersion
        let marker = "veil-bench: case=\(caseName.replacingOccurrences(of: "()", with: ""))"
            + " artifact=\(URL(fileURLWithPath: artifact.file).lastPathComponent) compute_units=\(choice.rawValue)"
            + " device=\(DeviceFacts.machine())"
            + " os=\(version.majorVersion).\(version.minorVersion).\(version.patchVersion)"
            + " compile_ms=\(String(format: "%.3f", compileMs)) load_ms=\(String(format: "%.3f", m.loadMs))"
            + " first_inference_ms=\(String(format: "%.3f", m.firstInferenceMs))"
            + " warm_p50_ms=\(String(format: "%.3f", m.latency.p50Ms)) iterations=\(Self.iterations)"
        NSLog("%@", marker)

        let measurement = BenchSchema.measurement(m)
        XCTAssertTrue(m.outputFinite, "the prefix produced NaN or Inf")
        Self.rows.append(BenchSchema.artifactRow(artifact, loader.runtimeName, [measurement]))
        let ctx = BenchContext(Self.runId, command(), dir.path, export.manifest, inputDescription, settings,
                               iso8601(Self.started), Date().timeIntervalSince(Self.started))
        try publish(BenchSchema.document(ctx, device, app, Self.rows))

        // the log lines --ios-log parses: XCTest's own measurement of the warm prediction
        let runner = try loader.load(artifact, compiledURL, 1)
        defer { runner.close() }
        _ = try runner.run(input)
        let options = XCTMeasureOptions()
        options.iterationCount = Self.iterations
        measure(metrics: [XCTClockMetric(), XCTCPUMetric(), XCTMemoryMetric()], options: options) {
            do {
                _ = try runner.run(input)
            } catch {
                XCTFail("prediction failed: \(error)")
            }
        }
    }

    /** The JSON on one log line, as a result-bundle attachment, and in the temporary folder. */
    private func publish(_ doc: JSONObject) throws {
        print("veil-bench-json: \(doc.toString())")
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("veil-bench/\(Self.runId).json")
        try BenchSchema.write(file, doc)
        let attachment = XCTAttachment(contentsOfFile: file)
        attachment.name = "\(Self.runId).json"
        attachment.lifetime = .keepAlways
        add(attachment)
        NSLog("%@", "veil-bench wrote \(file.path)")
    }

    private func command() -> String {
        "xcodebuild test -scheme VeilDemo -configuration Release -only-testing:VeilBenchTests/VeilPrefixBenchTests"
    }

    /** The export: Exports/$VEIL_EXPORT in the test bundle, or its only export. */
    private func exportFolder(_ bundle: Bundle) throws -> URL {
        let folders = ExportStore.folders(bundle)
        if let name = ProcessInfo.processInfo.environment["VEIL_EXPORT"], !name.isEmpty {
            return try XCTUnwrap(folders.first { $0.lastPathComponent == name },
                                 "VEIL_EXPORT=\(name) is not among the bundled exports \(folders.map { $0.lastPathComponent })")
        }
        try XCTSkipIf(folders.isEmpty, "no export: put an `export-prefix --target ios` folder in ios_demo/VeilDemo/Exports/")
        XCTAssertEqual(1, folders.count, "several exports bundled; set VEIL_EXPORT=NAME in the scheme's test environment")
        return folders[0]
    }

    /** The chunk to time: Exports/NAME/input.raw (float32 LE, the host bench's chunk) or a 2-s chirp. */
    private static func input(_ dir: URL, _ chunk: ChunkSpec) throws -> ([Float], String) {
        let raw = dir.appendingPathComponent("input.raw")
        if let data = FileManager.default.contents(atPath: raw.path) {
            try require(data.count == 4 * chunk.chunkSamples, "\(raw.path): \(data.count) bytes; the prefix takes " +
                "\(chunk.chunkSamples) float32 samples (\(4 * chunk.chunkSamples) bytes)")
            let bytes = [UInt8](data)
            var x = [Float](repeating: 0, count: chunk.chunkSamples)
            for i in 0..<x.count {
                var bits: UInt32 = 0
                for k in 0..<4 { bits |= UInt32(bytes[4 * i + k]) << UInt32(8 * k) }
                x[i] = Float(bitPattern: bits)
            }
            return (x, "the host bench's chunk (input.raw)")
        }
        // a 200 Hz -> 4 kHz chirp at -12 dBFS: speech-band energy (latency does not depend on values; static graph)
        var x = [Float](repeating: 0, count: chunk.chunkSamples)
        let seconds = chunk.chunkSeconds
        for i in 0..<x.count {
            let t = Double(i) / Double(chunk.sampleRate)
            let phase = 2 * Double.pi * (200.0 * t + (3800.0 / (2 * seconds)) * t * t)
            x[i] = Float(0.25 * sin(phase))
        }
        return (x, "a 2-s 200-4000 Hz chirp at -12 dBFS (no input.raw in the export)")
    }

    private func iso8601(_ date: Date) -> String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime]
        return f.string(from: date)
    }
}
