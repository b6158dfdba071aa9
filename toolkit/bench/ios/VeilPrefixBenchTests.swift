// Veil's on-iPhone benchmark of an exported prefix (.mlpackage): an XCTest performance test whose xcodebuild log
// `veil bench EXPORT_DIR --device ios --ios-log FILE` parses (protocol: toolkit/bench/phones.py).
//
// Setup, once: in Xcode make an iOS App project "VeilBench" (iOS 17+, the export's deployment target) with a Unit
// Testing Bundle "VeilBenchTests"; add this file and the exported .mlpackage to the test target (Xcode compiles
// it into the bundle as .mlmodelc) and set `modelName` below. Optional: add `input.raw` (one chunk of PCM,
// little-endian float32, the prefix's input shape) for a recorded input; the input is zeros otherwise (the graph
// is static, so latency does not depend on the values).
//
// Run on the phone (UDID from `xcrun devicectl list devices`):
//   xcodebuild test -project VeilBench.xcodeproj -scheme VeilBench -configuration Release \
//       -destination 'platform=iOS,id=<UDID>' -only-testing:VeilBenchTests/VeilPrefixBenchTests \
//       -allowProvisioningUpdates 2>&1 | tee ios-bench.log
//   veil bench EXPORT_DIR --device ios --ios-log ios-bench.log
//
// Each test loads the model with one compute-unit setting, times the load and the first prediction, runs a few
// warm-up predictions, logs a `veil-bench:` marker line, then measures `iterations` predictions, one per
// iteration (XCTest runs the block iterationCount + 1 times and drops the first).

import CoreML
import Foundation
import XCTest

final class VeilPrefixBenchTests: XCTestCase {
    /// The exported prefix's file name without ".mlpackage", as added to this test target.
    static let modelName = "prefix-k4-int8-weights"
    /// Timed predictions per compute-unit setting: as many as the host bench's >= 50 timed runs.
    static let iterations = 50
    static let warmup = 5

    func testPrefixCPUOnly() throws { try bench(.cpuOnly, "cpuOnly") }
    func testPrefixCPUAndGPU() throws { try bench(.cpuAndGPU, "cpuAndGPU") }
    func testPrefixCPUAndNeuralEngine() throws { try bench(.cpuAndNeuralEngine, "cpuAndNeuralEngine") }
    func testPrefixAll() throws { try bench(.all, "all") }

    private func bench(_ units: MLComputeUnits, _ unitsName: String, caseName: String = #function) throws {
        let bundle = Bundle(for: Self.self)
        let url = try XCTUnwrap(bundle.url(forResource: Self.modelName, withExtension: "mlmodelc"),
                                "add \(Self.modelName).mlpackage to the test target")
        let config = MLModelConfiguration()
        config.computeUnits = units

        var start = DispatchTime.now().uptimeNanoseconds
        let model = try MLModel(contentsOf: url, configuration: config)
        let loadMs = Self.milliseconds(since: start)
        let input = try Self.input(for: model, bundle: bundle)
        start = DispatchTime.now().uptimeNanoseconds
        _ = try model.prediction(from: input)
        let firstMs = Self.milliseconds(since: start)
        for _ in 0..<Self.warmup {
            _ = try model.prediction(from: input)
        }

        let version = ProcessInfo.processInfo.operatingSystemVersion
        let marker = "veil-bench: case=\(caseName.replacingOccurrences(of: "()", with: ""))"
            + " artifact=\(Self.modelName).mlpackage compute_units=\(unitsName) device=\(Self.machine())"
            + " os=\(version.majorVersion).\(version.minorVersion).\(version.patchVersion)"
            + " load_ms=\(String(format: "%.3f", loadMs)) first_inference_ms=\(String(format: "%.3f", firstMs))"
            + " iterations=\(Self.iterations)"
        NSLog("%@", marker)

        let options = XCTMeasureOptions()
        options.iterationCount = Self.iterations
        measure(metrics: [XCTClockMetric(), XCTCPUMetric(), XCTMemoryMetric()], options: options) {
            do {
                _ = try model.prediction(from: input)
            } catch {
                XCTFail("prediction failed: \(error)")
            }
        }
    }

    /// The model's only input (the prefix's PCM chunk): input.raw from the bundle if present, else zeros.
    private static func input(for model: MLModel, bundle: Bundle) throws -> MLFeatureProvider {
        let (name, feature) = try XCTUnwrap(model.modelDescription.inputDescriptionsByName.first)
        let shape = try XCTUnwrap(feature.multiArrayConstraint?.shape, "input \(name) is not a multi-array")
        let array = try MLMultiArray(shape: shape, dataType: .float32)
        var samples = [Float](repeating: 0, count: array.count)
        if let raw = bundle.url(forResource: "input", withExtension: "raw") {
            let data = try Data(contentsOf: raw)
            XCTAssertEqual(data.count, samples.count * MemoryLayout<Float>.size, "input.raw does not fit \(shape)")
            _ = samples.withUnsafeMutableBytes { data.copyBytes(to: $0) }
        }
        array.withUnsafeMutableBufferPointer(ofType: Float.self) { pointer, _ in
            for i in 0..<samples.count {
                pointer[i] = samples[i]
            }
        }
        return try MLDictionaryFeatureProvider(dictionary: [name: MLFeatureValue(multiArray: array)])
    }

    private static func milliseconds(since start: UInt64) -> Double {
        Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6
    }

    /// The hardware model, e.g. "iPhone15,2".
    private static func machine() -> String {
        var info = utsname()
        uname(&info)
        return withUnsafeBytes(of: &info.machine) { raw in
            String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
        }
    }
}
