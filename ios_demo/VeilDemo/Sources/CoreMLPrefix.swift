// The prefix in Core ML (the app's PrefixLoader/PrefixRunner; Android's PrefixRuntimes.kt plays this part there).
// Shared by the app (VeilDemo) and its benchmark (VeilBenchTests).
import CoreML
import Foundation
import VeilCore

/** Core ML's compute-unit settings, by the names the bench log and JSON use. */
enum ComputeUnitsChoice: String, CaseIterable, Identifiable {
    case cpuOnly
    case cpuAndGPU
    case cpuAndNeuralEngine
    case all

    var id: String { rawValue }

    var units: MLComputeUnits {
        switch self {
        case .cpuOnly: return .cpuOnly
        case .cpuAndGPU: return .cpuAndGPU
        case .cpuAndNeuralEngine: return .cpuAndNeuralEngine
        case .all: return .all
        }
    }
}

/**
 * The export's .mlpackage compiled to .mlmodelc once per artifact (keyed by its manifest SHA-256) and kept in
 * Application Support: compiling takes seconds and must not happen on the main thread, nor again at every start.
 * `MLModel.compileModel(at:)` writes to a temporary folder that the system may delete, so the result is moved.
 * The folder is excluded from iCloud and device backups (it is derived data, rebuilt from the export). Compiles are
 * serialized (one at a time, process-wide): two preparations of one artifact never race on its folder.
 */
enum CompiledModelCache {
    /** One compile at a time: a second caller waits, then finds the first one's result. */
    private static let serial = NSLock()

    static func folder() throws -> URL {
        let base = try FileManager.default.url(for: .applicationSupportDirectory, in: .userDomainMask,
                                               appropriateFor: nil, create: true)
        var dir = base.appendingPathComponent("VeilCompiledModels", isDirectory: true)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        var values = URLResourceValues()
        values.isExcludedFromBackup = true
        try dir.setResourceValues(values)
        return dir
    }

    /** The compiled model of `artifact` (at `package`), compiling it if the cache has none; and the compile time in ms (0 when cached). Blocking: call off the main thread. */
    static func compiled(_ artifact: ArtifactEntry, _ package: URL) throws -> (URL, Double) {
        serial.lock()
        defer { serial.unlock() }
        let target = try folder().appendingPathComponent("\(artifact.sha256).mlmodelc", isDirectory: true)
        if FileManager.default.fileExists(atPath: target.path) { return (target, 0) }
        let started = DispatchTime.now().uptimeNanoseconds
        let done = DispatchSemaphore(value: 0)
        var result: Result<URL, Error> = .failure(PrefixLoadException("compile_failed", "\(package.lastPathComponent): not compiled"))
        MLModel.compileModel(at: package) { outcome in
            result = outcome
            done.signal()
        }
        done.wait()
        let temporary: URL
        do {
            temporary = try result.get()
        } catch {
            throw PrefixLoadException("compile_failed", "\(package.lastPathComponent): Core ML could not compile it (\(error.localizedDescription))")
        }
        let ms = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e6
        // nothing else writes the target while the lock is held; replaceItemAt swaps atomically where one exists
        if FileManager.default.fileExists(atPath: target.path) {
            _ = try FileManager.default.replaceItemAt(target, withItemAt: temporary)
        } else {
            try FileManager.default.moveItem(at: temporary, to: target)
        }
        return (target, ms)
    }
}

/**
 * Loads the prefix with one compute-unit setting. `file` may be the export's .mlpackage (compiled through the
 * cache first) or an already compiled .mlmodelc (the benchmark times compilation on its own). The model must
 * have the manifest's input and output (today "pcm" (1, 32000) float32 -> "embeddings" (1, 50, 144)).
 */
final class CoreMLPrefixLoader: PrefixLoader {
    let backend = "coreml"
    let choice: ComputeUnitsChoice
    /**
     * Milliseconds spent compiling the .mlpackage: by the last load (0 when the cache had it), or as given by a
     * caller that compiled it beforehand. Runners report it in their details.
     */
    private(set) var compileMs: Double

    init(_ choice: ComputeUnitsChoice, compileMs: Double = 0) {
        self.choice = choice
        self.compileMs = compileMs
    }

    var runtimeName: String {
        let v = ProcessInfo.processInfo.operatingSystemVersion
        return "Core ML (iOS \(v.majorVersion).\(v.minorVersion), \(choice.rawValue))"
    }

    func load(_ artifact: ArtifactEntry, _ file: URL, _ threads: Int) throws -> PrefixRunner {
        var compiled = file
        if file.pathExtension == "mlpackage" {
            let (url, ms) = try CompiledModelCache.compiled(artifact, file)
            compiled = url
            compileMs = ms
        }
        let config = MLModelConfiguration()
        config.computeUnits = choice.units
        let model: MLModel
        do {
            model = try MLModel(contentsOf: compiled, configuration: config)
        } catch {
            throw PrefixLoadException("load_failed", "\(artifact.file): Core ML could not load it (\(error.localizedDescription))")
        }
        let inputs = model.modelDescription.inputDescriptionsByName
        let outputs = model.modelDescription.outputDescriptionsByName
        guard inputs[artifact.input.name] != nil, outputs[artifact.output.name] != nil else {
            throw PrefixLoadException("signature", "\(artifact.file): the model's inputs \(inputs.keys.sorted()) and outputs " +
                "\(outputs.keys.sorted()) are not the manifest's \(artifact.input.name) -> \(artifact.output.name)")
        }
        return try CoreMLPrefixRunner(model, artifact, choice, compileMs)
    }
}

/** One chunk through the loaded model; the input array is allocated once and refilled. */
final class CoreMLPrefixRunner: PrefixRunner {
    private let model: MLModel
    private let artifact: ArtifactEntry
    private let choice: ComputeUnitsChoice
    private let compileMs: Double
    private let input: MLMultiArray
    private let provider: MLDictionaryFeatureProvider

    init(_ model: MLModel, _ artifact: ArtifactEntry, _ choice: ComputeUnitsChoice, _ compileMs: Double) throws {
        self.model = model
        self.artifact = artifact
        self.choice = choice
        self.compileMs = compileMs
        input = try MLMultiArray(shape: artifact.input.shape.map { NSNumber(value: $0) }, dataType: .float32)
        provider = try MLDictionaryFeatureProvider(dictionary: [artifact.input.name: MLFeatureValue(multiArray: input)])
    }

    func run(_ pcm: [Float]) throws -> Embeddings {
        let samples = artifact.input.shape.last ?? 0
        try require(pcm.count == samples, "the prefix takes \(samples) samples, got \(pcm.count)")
        input.withUnsafeMutableBufferPointer(ofType: Float.self) { pointer, strides in
            let step = strides.last ?? 1
            for i in 0..<pcm.count { pointer[i * step] = pcm[i] }
        }
        let out = try model.prediction(from: provider)
        guard let array = out.featureValue(for: artifact.output.name)?.multiArrayValue else {
            throw PrefixLoadException("signature", "\(artifact.file): no multi-array output \(artifact.output.name)")
        }
        return try CoreMLPrefixRunner.embeddings(array)
    }

    /**
     * A (1, T, D) output as embeddings, read through its strides (Core ML may pad rows for the GPU or Neural
     * Engine) and its data type (float32, or float16 converted bit by bit: Swift's half type is not on Intel Macs).
     */
    static func embeddings(_ array: MLMultiArray) throws -> Embeddings {
        let shape = array.shape.map { $0.intValue }
        try require(shape.count == 3 && shape[0] == 1, "prefix output of shape \(shape), expected (1, frames, dim)")
        let frames = shape[1]
        let dim = shape[2]
        let dataType = array.dataType
        var values = [Float](repeating: 0, count: frames * dim)
        try array.withUnsafeMutableBytes { raw, strides in
            for t in 0..<frames {
                for j in 0..<dim {
                    let index = t * strides[1] + j * strides[2]
                    switch dataType {
                    case .float32:
                        values[t * dim + j] = raw.load(fromByteOffset: 4 * index, as: Float.self)
                    case .float16:
                        values[t * dim + j] = Fp16.toFloat(Int(raw.load(fromByteOffset: 2 * index, as: UInt16.self)))
                    case .double:
                        values[t * dim + j] = Float(raw.load(fromByteOffset: 8 * index, as: Double.self))
                    default:
                        throw PrefixLoadException("signature", "prefix output of data type \(dataType.rawValue); " +
                            "expected float32 (or float16, float64)")
                    }
                }
            }
        }
        return try Embeddings(frames, dim, values)
    }

    func details() -> [String: Any?] {
        let v = ProcessInfo.processInfo.operatingSystemVersion
        return ["engine": "coreml", "compute_units": choice.rawValue, "file": artifact.file,
                "input": artifact.input.name, "output": artifact.output.name, "compile_ms": compileMs,
                "os": "\(v.majorVersion).\(v.minorVersion).\(v.patchVersion)"]
    }

    func close() {}
}
