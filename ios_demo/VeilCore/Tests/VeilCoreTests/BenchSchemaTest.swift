// Mirrors android_demo/core/src/test/kotlin/veil/core/BenchSchemaTest.kt
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import VeilCore
import XCTest

/** RSS standing in for the platform's own memory accounting in tests. */
struct RssProbe: PssProbe {
    func pssBytes() -> Int? { ProcessMemory.rssBytes() }
}

/**
 * The benchmark procedure on a stand-in runtime, written as the bench JSON, then checked by the Python side's own
 * validator (toolkit.bench.report.validate) and read by toolkit.bench.android_app's row reader: the two languages
 * agree on the schema.
 */
final class BenchSchemaTest: XCTestCase {
    private let device = DeviceInfo("Apple", "iPhone15,2", "arm64", "iOS", "17.5.1", "Apple A16 Bionic", 6, 6 << 30)
    private let app = AppInfo("veil.demo", "0.1.0", "release", false)

    private func document() throws -> JSONObject {
        let manifest = try ExportManifest.parse(try TestFiles.resourceText("export-manifest.json"))
        let artifact = try manifest.artifact("executorch")
        let input = (0..<manifest.chunk.chunkSamples).map { Float(sin(Double($0) * 0.01)) * 0.1 }
        let m = try BenchRunner.measure(StandInFramePrefix.Loader(), artifact,
                                        TestFiles.repo.appendingPathComponent("testvectors/index.json"), input,
                                        manifest.chunk, try BenchSettings(1, 2, 12), RssProbe(),
                                        try PayloadEncoder(manifest, nil, .int8))
        let row = BenchSchema.artifactRow(artifact, "Swift stand-in (tests only)",
                                          [BenchSchema.measurement(m), BenchSchema.failedMeasurement(2, "thread pool refused")])
        let ctx = BenchContext("run-1", "xcodebuild test -only-testing:VeilBenchTests", "/var/mobile/x", manifest,
                               "a 2-s sine test chunk", try BenchSettings(1, 2, 12), "2026-11-26T12:00:00+00:00", 1.5)
        return BenchSchema.document(ctx, device, app, [row])
    }

    func testAMeasurementHasTheHostSchemaSKeysAndSaneValues() throws {
        let doc = try document()
        let m = try doc.getJSONArray("artifacts").getJSONObject(0).getJSONArray("measurements").getJSONObject(0)
        for key in ["status", "threads", "load_ms", "first_inference_ms", "runs", "p50_ms", "p90_ms", "p99_ms",
                    "rtf", "peak_rss_load_bytes", "peak_rss_inference_bytes"] {
            XCTAssertTrue(m.has(key), key)
        }
        XCTAssertEqual(12, try m.getInt("runs"))
        XCTAssertTrue(try m.getDouble("p50_ms") <= m.getDouble("p90_ms") && m.getDouble("p90_ms") <= m.getDouble("p99_ms"))
        XCTAssertEqual(try m.getDouble("p50_ms") / 1e3 / 2.0, try m.getDouble("rtf"), accuracy: 1e-12)
        XCTAssertEqual("[1,50,144]", try m.getJSONArray("output_shape").toString())
        XCTAssertTrue(try m.getBoolean("output_finite"))
        XCTAssertEqual("int8", try m.getString("payload_codec"))
        XCTAssertEqual(10 + 50 * 4 + 50 * 144, try m.getInt("payload_bytes_per_chunk"))
        XCTAssertEqual(Double(10 + 50 * 4 + 50 * 144) / 2.0, try m.getDouble("payload_bytes_per_second"))
        XCTAssertEqual("int8", try doc.getJSONArray("artifacts").getJSONObject(0).getString("dtype"))
        // the runtime is loaded before the timed load, and the load is recorded as warm
        let runtime = try m.getJSONObject("runtime")
        XCTAssertTrue(try runtime.getDouble("runtime_init_ms") >= 0.0)
        XCTAssertEqual(BenchRunner.PAGE_CACHE, try runtime.getString("page_cache"))
    }

    func testThePythonValidatorAcceptsTheDocumentAndTheAppReaderTakesItsRows() throws {
        #if os(macOS) || os(Linux)
        guard let python = TestFiles.python() else {
            throw XCTSkip("\(TestFiles.repo.path)/.venv/bin/python not found: run `make setup` (this test runs the Python side)")
        }
        let out = try TestFiles.tempDir("bench-schema").appendingPathComponent("bench-schema-sample.json")
        try BenchSchema.write(out, try document())
        let script = "import json, sys\n" +
            "from toolkit.bench import report, android_app\n" +
            "doc = json.load(open(sys.argv[1]))\n" +
            "report.validate(doc)\n" +
            "rows = android_app.rows_from_app(doc)\n" +
            "print(len(rows), rows[0]['tool'], rows[0]['measurements'][0]['status'], rows[0]['measurements'][1]['status'])\n"
        let p = Process()
        p.executableURL = python
        p.arguments = ["-c", script, out.path]
        p.currentDirectoryURL = TestFiles.repo
        var environment = ProcessInfo.processInfo.environment
        environment["PYTHONPATH"] = TestFiles.repo.path
        p.environment = environment
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = pipe
        try p.run()
        let text = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        XCTAssertEqual(0, p.terminationStatus, text)
        XCTAssertEqual("1 veil-app ok failed", text.split(separator: "\n").last.map(String.init))
        #else
        throw XCTSkip("runs the repository's Python as a subprocess: macOS or Linux only")
        #endif
    }

    func testAFailedRunIsADocumentWithTheError() throws {
        let doc = BenchSchema.failure("r", "xcodebuild test", "2026-11-26T12:00:00+00:00",
                                      "refusing to benchmark a debug build", device,
                                      AppInfo("veil.demo", "0.1.0", "debug", true))
        XCTAssertEqual("failed", try doc.getString("status"))
        XCTAssertEqual("debug", try doc.getJSONObject("device").getJSONObject("app").getString("build_type"))
    }
}
