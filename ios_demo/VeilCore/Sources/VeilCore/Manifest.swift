// Mirrors android_demo/core/src/main/kotlin/veil/core/Manifest.kt
//
// One addition for iOS: a Core ML artifact is a `.mlpackage` folder, so ExportFolder verifies a folder by the
// size and SHA-256 that export/artifact.py's tree_size and tree_sha256 give it (sorted relative paths and file
// hashes); a single file (.pte, .tflite) is checked exactly as in Kotlin.
import Foundation

/** The prefix's chunk geometry: `chunkSamples` of PCM at `sampleRate` in, one frame per `frameSamples` out. */
public struct ChunkSpec {
    public let sampleRate: Int
    public let chunkSamples: Int
    public let frameSamples: Int

    public init(_ sampleRate: Int, _ chunkSamples: Int, _ frameSamples: Int) {
        self.sampleRate = sampleRate
        self.chunkSamples = chunkSamples
        self.frameSamples = frameSamples
    }

    public var chunkSeconds: Double { Double(chunkSamples) / Double(sampleRate) }
    public var framesPerChunk: Int { chunkSamples / frameSamples }
}

/** A tensor of the prefix's signature as the manifest declares it. */
public struct TensorSpec {
    public let name: String
    public let shape: [Int]
    public let dtype: String
}

/** One exported artifact (.pte, .tflite, .mlpackage) of the manifest's `artifacts` list. */
public struct ArtifactEntry {
    public let backend: String
    public let recipe: String
    /** Path relative to the export folder. */
    public let file: String
    public let sha256: String
    public let sizeBytes: Int
    public let input: TensorSpec
    public let output: TensorSpec
    /** The ExecuTorch delegate the exporter lowered to (e.g. XnnpackBackend), if any. */
    public let delegateBackend: String?
    /** The parity verdict recorded after export ("pass", "fail"), if parity ran. */
    public let parityVerdict: String?
    /** The whole entry as written, unknown keys included. */
    public let raw: JSONObject

    /** "coreml int8-weights": the name bench rows use. */
    public var displayName: String { "\(backend) \(recipe)" }
}

/** The codebook file of a vq bottleneck as the manifest lists it: float32 little-endian, C order. */
public struct CodebookEntry {
    /** Path relative to the export folder (codebook.f32). */
    public let file: String
    public let sha256: String
    /** (groups, codes, dim / groups). */
    public let shape: [Int]

    /** The file's exact length: 4 bytes per float32 value. */
    public var sizeBytes: Int { 4 * shape[0] * shape[1] * shape[2] }
}

/**
 * The manifest's optional `bottleneck` section: the prefix ends in an information bottleneck, and what leaves the
 * phone must go through it, or the privacy it buys is lost. With `payloadCodec` vq the phone sends only codebook
 * indices (`codebook` lists the file it quantizes with; `groups` x `codes` codewords of `dim / groups` values);
 * otherwise the phone adds Gaussian noise of standard deviation `noiseStd` to every value of the (unit-RMS)
 * output before encoding it, when `noiseStd` > 0. `ExportManifest.bottleneck` is nil for a plain export.
 */
public struct Bottleneck {
    /** Output dimension of the bottleneck: the embedding dim the prefix emits. */
    public let dim: Int
    /** The codec the suffix was trained for: vq, or the continuous codec sent by default (int8). */
    public let payloadCodec: Codec
    /** vq groups G (1 without vq). */
    public let groups: Int
    /** vq codes per group K (0 without vq). */
    public let codes: Int
    /** The codebook file of a vq bottleneck, else nil. */
    public let codebook: CodebookEntry?
    /** Standard deviation of the Gaussian noise the phone adds before encoding (0: none). */
    public let noiseStd: Double

    public var isVq: Bool { payloadCodec == .vq }
}

/**
 * `manifest.json` of an export folder (`veil export` / `export-prefix`, format veil-export/1): the one contract
 * between the export job and the apps. The app reads the chunk geometry, the embedding shape, the prefix identity
 * (checkpoint hash and split layer) and the artifacts with their hashes from it. Keys it does not know are
 * tolerated and kept in `raw`; a missing or mistyped key it needs, or shapes that contradict each other, are a
 * ManifestException naming the key.
 */
public final class ExportManifest {
    public static let FORMAT_FAMILY = "veil-export/"
    public static let SUPPORTED_MAJOR = 1
    public static let FILE_NAME = "manifest.json"

    public let format: String
    public let splitLayer: Int
    public let chunk: ChunkSpec
    public let embeddingDim: Int
    public let input: TensorSpec
    public let output: TensorSpec
    public let checkpointSha256: String
    public let artifacts: [ArtifactEntry]
    /** The information bottleneck at the split, or nil for a plain export (see `PayloadEncoder`). */
    public let bottleneck: Bottleneck?
    public let raw: JSONObject

    init(_ format: String, _ splitLayer: Int, _ chunk: ChunkSpec, _ embeddingDim: Int, _ input: TensorSpec,
         _ output: TensorSpec, _ checkpointSha256: String, _ artifacts: [ArtifactEntry], _ bottleneck: Bottleneck?,
         _ raw: JSONObject) {
        self.format = format
        self.splitLayer = splitLayer
        self.chunk = chunk
        self.embeddingDim = embeddingDim
        self.input = input
        self.output = output
        self.checkpointSha256 = checkpointSha256
        self.artifacts = artifacts
        self.bottleneck = bottleneck
        self.raw = raw
    }

    /** The artifact of `backend` (and `recipe`, when given); ManifestException when the export has none. */
    public func artifact(_ backend: String, _ recipe: String? = nil) throws -> ArtifactEntry {
        for a in artifacts where a.backend == backend && (recipe == nil || a.recipe == recipe) { return a }
        let have = artifacts.map { $0.displayName }.joined(separator: ", ")
        throw ManifestException("no_artifact",
            "manifest.json: no \(backend)\(recipe != nil ? " \(recipe!)" : "") artifact (the export has: \(have))")
    }

    /** Parse and check manifest text; `source` names it in errors. */
    public static func parse(_ text: String, _ source: String = FILE_NAME) throws -> ExportManifest {
        let root: JSONObject
        do {
            root = try JSONObject(text)
        } catch let e as JSONException {
            throw ManifestException("not_json", "\(source): not a JSON object (\(e.message))")
        }
        return try Reader(root, source).manifest()
    }

    /** Read `dir/manifest.json` (no artifact file is opened; see `ExportFolder.verify`). */
    public static func read(_ dir: URL) throws -> ExportManifest {
        let file = dir.appendingPathComponent(FILE_NAME)
        var isDirectory: ObjCBool = false
        if !FileManager.default.fileExists(atPath: file.path, isDirectory: &isDirectory) || isDirectory.boolValue {
            throw ManifestException("missing",
                "\(dir.path): no \(FILE_NAME) (not an export folder; run `veil export --target ios` first)")
        }
        return try parse(String(decoding: try Data(contentsOf: file), as: UTF8.self), file.path)
    }

    private struct Reader {
        let root: JSONObject
        let source: String

        init(_ root: JSONObject, _ source: String) {
            self.root = root
            self.source = source
        }

        func manifest() throws -> ExportManifest {
            let format = try string(root, "format")
            try checkFormat(format)
            let input = try obj(root, "input")
            let output = try obj(root, "output")
            let sampleRate = try positiveInt(input, "input.sample_rate", "sample_rate")
            let chunkSamples = try positiveInt(input, "input.chunk_samples", "chunk_samples")
            let frameSamples = try positiveInt(output, "output.frame_samples", "frame_samples")
            let framesPerChunk = try positiveInt(output, "output.frames_per_chunk", "frames_per_chunk")
            let dim = try positiveInt(output, "output.embedding_dim", "embedding_dim")
            let inputSpec = try tensor(input, "input")
            let outputSpec = try tensor(output, "output")
            if chunkSamples % frameSamples != 0 || chunkSamples / frameSamples != framesPerChunk {
                try fail("inconsistent", "output.frames_per_chunk \(framesPerChunk) x frame_samples \(frameSamples) != " +
                    "input.chunk_samples \(chunkSamples)")
            }
            if inputSpec.shape != [1, chunkSamples] {
                try fail("inconsistent", "input.shape \(inputSpec.shape) is not [1, \(chunkSamples)]")
            }
            if outputSpec.shape != [1, framesPerChunk, dim] {
                try fail("inconsistent", "output.shape \(outputSpec.shape) is not [1, \(framesPerChunk), \(dim)]")
            }
            let splitLayer = try positiveInt(root, "split_layer", "split_layer")
            let checkpoint = try obj(root, "checkpoint")
            let sha = try string(checkpoint, "sha256", "checkpoint.sha256")
            let list = try array(root, "artifacts")
            if list.length == 0 { try fail("no_artifact", "artifacts is empty") }
            var artifacts: [ArtifactEntry] = []
            for i in 0..<list.length {
                guard let entry = list.optJSONObject(i) else { try fail("type", "artifacts[\(i)] is not an object") }
                artifacts.append(try artifact(entry, "artifacts[\(i)]", inputSpec, outputSpec))
            }
            let bottleneck = try bottleneck(dim)
            return ExportManifest(format, splitLayer, ChunkSpec(sampleRate, chunkSamples, frameSamples), dim,
                                  inputSpec, outputSpec, sha, artifacts, bottleneck, root)
        }

        /** The optional `bottleneck` section (absent or null: a plain export), checked against the output dim. */
        private func bottleneck(_ outputDim: Int) throws -> Bottleneck? {
            let v = root.opt("bottleneck")
            if v == nil { return nil }
            if case .null? = v { return nil }
            guard case .object(let o)? = v else { try fail("type", "bottleneck is \(describe(v)), expected an object") }
            let dim = try positiveInt(o, "bottleneck.dim", "dim")
            if dim != outputDim {
                try fail("inconsistent", "bottleneck.dim \(dim) is not output.embedding_dim \(outputDim)")
            }
            let name = try string(o, "payload_codec", "bottleneck.payload_codec")
            guard let codec = Codec.allCases.first(where: { $0.wireName == name }) else {
                try fail("unknown_codec", "bottleneck.payload_codec '\(name)' is not one of fp32, fp16, int8, vq " +
                    "(export with this Veil version, or update the app)")
            }
            let noise = o.opt("noise_std")
            var noiseStd = 0.0
            switch noise {
            case nil, .null?:
                noiseStd = 0.0
            case .int(let i)? where i >= 0:
                noiseStd = Double(i)
            case .double(let d)? where !d.isNaN && !d.isInfinite && d >= 0.0:
                noiseStd = d
            default:
                try fail("type", "bottleneck.noise_std is \(describe(noise)), expected a finite number >= 0")
            }
            let book = o.opt("codebook")
            if codec != .vq {
                var listed = book != nil
                if case .null? = book { listed = false }
                if listed {
                    try fail("inconsistent", "bottleneck.codebook is listed but bottleneck.payload_codec is '\(name)', not vq")
                }
                return Bottleneck(dim: dim, payloadCodec: codec, groups: 1, codes: 0, codebook: nil, noiseStd: noiseStd)
            }
            if noiseStd > 0.0 {
                try fail("inconsistent", "bottleneck.noise_std \(noiseStd) with payload_codec vq: the phone sends codebook " +
                    "indices, noise is only for a continuous payload")
            }
            guard case .object(let entry)? = book else {
                var absent = book == nil
                if case .null? = book { absent = true }
                try fail(absent ? "missing" : "type",
                    "bottleneck.codebook is \(describe(book)); a vq bottleneck needs its codebook")
            }
            let groups = try positiveInt(o, "bottleneck.groups", "groups")
            let codes = try positiveInt(o, "bottleneck.codes", "codes")
            if codes > Codebook.MAX_CODES {
                try fail("type", "bottleneck.codes \(codes) exceeds the \(Codebook.MAX_CODES) codes a vq index can name")
            }
            if dim % groups != 0 { try fail("inconsistent", "bottleneck.dim \(dim) is not a multiple of bottleneck.groups \(groups)") }
            let file = try safePath(try string(entry, "file", "bottleneck.codebook.file"), "bottleneck.codebook.file")
            let sha = try sha256(entry, "bottleneck.codebook.sha256")
            let dims = try shape(entry, "bottleneck.codebook.shape")
            if dims != [groups, codes, dim / groups] {
                try fail("inconsistent", "bottleneck.codebook.shape \(dims) is not [groups \(groups), codes \(codes), " +
                    "dim / groups \(dim / groups)]")
            }
            let dtype = try string(entry, "dtype", "bottleneck.codebook.dtype")
            if dtype != "float32" { try fail("dtype", "bottleneck.codebook.dtype is '\(dtype)'; the app reads float32") }
            let order = try string(entry, "byte_order", "bottleneck.codebook.byte_order")
            if order != "little" { try fail("dtype", "bottleneck.codebook.byte_order is '\(order)'; the app reads little") }
            return Bottleneck(dim: dim, payloadCodec: codec, groups: groups, codes: codes,
                              codebook: CodebookEntry(file: file, sha256: sha, shape: dims), noiseStd: 0.0)
        }

        private func checkFormat(_ format: String) throws {
            var major: Int? = nil
            if format.hasPrefix(ExportManifest.FORMAT_FAMILY) {
                let rest = format.dropFirst(ExportManifest.FORMAT_FAMILY.count)
                major = Int(rest.split(separator: ".", omittingEmptySubsequences: false).first.map(String.init) ?? "")
            }
            if major != ExportManifest.SUPPORTED_MAJOR {
                try fail("format", "format '\(format)' is not \(ExportManifest.FORMAT_FAMILY)\(ExportManifest.SUPPORTED_MAJOR) (export with this Veil " +
                    "version, or update the app)")
            }
        }

        private func artifact(_ o: JSONObject, _ location: String, _ input: TensorSpec,
                              _ output: TensorSpec) throws -> ArtifactEntry {
            let file = try safePath(try string(o, "file", "\(location).file"), "\(location).file")
            let sha = try sha256(o, "\(location).sha256")
            let size = o.opt("size_bytes")
            guard let sizeBytes = ExportManifest.Reader.byteCount(size) else {
                try fail(size == nil ? "missing" : "type", "\(location).size_bytes is \(describe(size)), expected a byte count")
            }
            let ai = try tensor(try obj(o, "input", "\(location).input"), "\(location).input")
            let ao = try tensor(try obj(o, "output", "\(location).output"), "\(location).output")
            if ai.shape != input.shape || ao.shape != output.shape {
                try fail("inconsistent", "\(location) (\(file)) has shapes \(ai.shape) -> \(ao.shape), the manifest " +
                    "\(input.shape) -> \(output.shape)")
            }
            let delegation = o.optJSONObject("delegation")
            let parity = o.optJSONObject("parity")
            return ArtifactEntry(backend: try string(o, "backend", "\(location).backend"),
                                 recipe: try string(o, "recipe", "\(location).recipe"), file: file,
                                 sha256: sha, sizeBytes: sizeBytes, input: ai, output: ao,
                                 delegateBackend: delegation != nil && delegation!.has("backend") ? delegation!.optString("backend") : nil,
                                 parityVerdict: parity != nil && parity!.has("verdict") ? parity!.optString("verdict") : nil,
                                 raw: o)
        }

        /** A byte count: a non-negative integral number (Kotlin: `size is Number`, >= 0, integral). */
        private static func byteCount(_ v: JSONValue?) -> Int? {
            guard let v = v, let n = JSONValue.integer(v), n >= 0 else { return nil }
            return n
        }

        /** `file` (named `location`), refused unless it is a relative path inside the export folder. */
        private func safePath(_ file: String, _ location: String) throws -> String {
            if file.hasPrefix("/") || file.split(separator: "/", omittingEmptySubsequences: false).contains("..")
                || file.contains("\\") {
                try fail("unsafe_path", "\(location) '\(file)' is not a path inside the export folder")
            }
            return file
        }

        /** The lowercase hex SHA-256 under key `sha256` of `o` (named `location`). */
        private func sha256(_ o: JSONObject, _ location: String) throws -> String {
            let sha = try string(o, "sha256", location)
            if sha.utf8.count != 64 || !sha.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }) {
                try fail("type", "\(location) '\(sha)' is not a lowercase hex SHA-256")
            }
            return sha
        }

        /// `o.shape` (named `location` in errors): a JSON array of positive integers.
        private func shape(_ o: JSONObject, _ location: String) throws -> [Int] {
            let values = try array(o, "shape", location)
            var dims: [Int] = []
            for i in 0..<values.length {
                let d = values.opt(i)
                guard let v = d, let n = JSONValue.integer(v), n >= 1, n <= Int(Int32.max) else {
                    try fail("type", "\(location)[\(i)] is \(describe(d)), expected a positive integer")
                }
                dims.append(n)
            }
            return dims
        }

        private func tensor(_ o: JSONObject, _ location: String) throws -> TensorSpec {
            let dims = try shape(o, "\(location).shape")
            let dtype = try string(o, "dtype", "\(location).dtype")
            if dtype != "float32" { try fail("dtype", "\(location).dtype is '\(dtype)'; the app feeds and reads float32") }
            return TensorSpec(name: try string(o, "name", "\(location).name"), shape: dims, dtype: dtype)
        }

        func obj(_ o: JSONObject, _ key: String, _ location: String? = nil) throws -> JSONObject {
            let v = o.opt(key)
            if case .object(let x)? = v { return x }
            try fail(v == nil ? "missing" : "type", "\(location ?? key) is \(describe(v)), expected an object")
        }

        func array(_ o: JSONObject, _ key: String, _ location: String? = nil) throws -> JSONArray {
            let v = o.opt(key)
            if case .array(let x)? = v { return x }
            try fail(v == nil ? "missing" : "type", "\(location ?? key) is \(describe(v)), expected a list")
        }

        func string(_ o: JSONObject, _ key: String, _ location: String? = nil) throws -> String {
            let v = o.opt(key)
            if case .string(let x)? = v { return x }
            try fail(v == nil ? "missing" : "type", "\(location ?? key) is \(describe(v)), expected a string")
        }

        func positiveInt(_ o: JSONObject, _ location: String, _ key: String) throws -> Int {
            let v = o.opt(key)
            if let x = v, let n = JSONValue.integer(x), n > 0, n <= Int(Int32.max) { return n }
            try fail(v == nil ? "missing" : "type", "\(location) is \(describe(v)), expected a positive integer")
        }

        func describe(_ v: JSONValue?) -> String {
            switch v {
            case nil: return "missing"
            case .null?: return "null"
            case .string(let s)?: return "the string '\(s)'"
            case .int(let i)?: return "the number \(i)"
            case .double(let d)?: return "the number \(d)"
            case .bool(let b)?: return "\(b)"
            case .array?: return "a list"
            case .object?: return "an object"
            }
        }

        func fail(_ reason: String, _ message: String) throws -> Never {
            throw ManifestException(reason, "\(source): \(message)")
        }
    }
}

/**
 * An export folder on the device: the manifest plus its artifact files, checked before a runtime maps them.
 * `verify` streams each file through SHA-256 (a 3-5 MB prefix takes tens of milliseconds on a phone), so a
 * truncated or swapped copy is refused instead of loading a model the manifest does not describe. A `.mlpackage`
 * folder is checked file by file, as export/artifact.py hashes it.
 */
public final class ExportFolder {
    public let dir: URL
    public let manifest: ExportManifest

    public init(_ dir: URL, _ manifest: ExportManifest) {
        self.dir = dir
        self.manifest = manifest
    }

    /** The file (or .mlpackage folder) of `artifact`, which must exist. */
    public func fileOf(_ artifact: ArtifactEntry) throws -> URL {
        let f = dir.appendingPathComponent(artifact.file)
        if !FileManager.default.fileExists(atPath: f.path) {
            throw ManifestException("missing_file", "\(f.path): artifact listed in manifest.json is missing")
        }
        return f
    }

    /** Check size and SHA-256 of `artifact` against the manifest. */
    public func verify(_ artifact: ArtifactEntry) throws -> URL {
        let f = try fileOf(artifact)
        let length = try ExportFolder.treeSize(f)
        if length != artifact.sizeBytes {
            throw ManifestException("size_mismatch", "\(f.path): \(length) bytes, manifest.json says " +
                "\(artifact.sizeBytes) (an incomplete copy? push the export again)")
        }
        let sha = try ExportFolder.treeSha256Hex(f)
        if sha != artifact.sha256 {
            throw ManifestException("sha256_mismatch",
                "\(f.path): sha256 differs from manifest.json (the file changed after export)")
        }
        return f
    }

    /**
     * The codebook of a vq bottleneck export, checked against the manifest (length, SHA-256, finite values), or
     * nil when the export has none. The phone quantizes with it; see `PayloadEncoder`.
     */
    public func codebook() throws -> Codebook? {
        guard let entry = manifest.bottleneck?.codebook else { return nil }
        let f = dir.appendingPathComponent(entry.file)
        var isDir: ObjCBool = false
        if !FileManager.default.fileExists(atPath: f.path, isDirectory: &isDir) || isDir.boolValue {
            throw ManifestException("missing_file", "\(f.path): codebook listed in manifest.json is missing")
        }
        let bytes = [UInt8](try Data(contentsOf: f))
        if bytes.count != entry.sizeBytes {
            throw ManifestException("size_mismatch", "\(f.path): \(bytes.count) bytes is not a float32 codebook of " +
                "shape \(entry.shape) (\(entry.sizeBytes) bytes; an incomplete copy? push the export again)")
        }
        if ExportFolder.sha256Hex(bytes) != entry.sha256 {
            throw ManifestException("sha256_mismatch",
                "\(f.path): sha256 differs from manifest.json (the codebook changed after export)")
        }
        var values = [Float](repeating: 0, count: bytes.count / 4)
        for i in 0..<values.count {
            let bits = UInt32(bytes[4 * i]) | (UInt32(bytes[4 * i + 1]) << 8) | (UInt32(bytes[4 * i + 2]) << 16)
                | (UInt32(bytes[4 * i + 3]) << 24)
            values[i] = Float(bitPattern: bits)
        }
        let codebook = try Codebook(entry.shape[0], entry.shape[1], entry.shape[2], values)
        do {
            try codebook.checkFinite()
        } catch let e as PayloadException {
            throw ManifestException(e.reason, "\(f.path): \(e.message)")
        }
        return codebook
    }

    public static func open(_ dir: URL) throws -> ExportFolder { ExportFolder(dir, try ExportManifest.read(dir)) }

    /** SHA-256 of `bytes` as lowercase hex. */
    public static func sha256Hex(_ bytes: [UInt8]) -> String {
        var hasher = SHA256()
        hasher.update(bytes)
        return VeilProtocol.bytesToHex(hasher.finish())
    }

    /** SHA-256 of one file as lowercase hex, read in 64 KiB blocks. */
    public static func sha256Hex(_ file: URL) throws -> String {
        let handle = try FileHandle(forReadingFrom: file)
        defer { try? handle.close() }
        var hasher = SHA256()
        while true {
            guard let block = try handle.read(upToCount: 1 << 16), !block.isEmpty else { break }
            hasher.update(block)
        }
        return VeilProtocol.bytesToHex(hasher.finish())
    }

    /**
     * export/artifact.py's tree_sha256: a file's SHA-256, or for a folder the SHA-256 of
     * "<relative/path>\0<file sha256>\n" over its files in the order Python sorts their paths (component by
     * component, so "a/b" comes before "a-c").
     */
    public static func treeSha256Hex(_ path: URL) throws -> String {
        guard try isDirectory(path) else { return try sha256Hex(path) }
        var hasher = SHA256()
        for relative in try treeFiles(path) {
            let line = "\(relative)\u{0}\(try sha256Hex(path.appendingPathComponent(relative)))\n"
            hasher.update(Array(line.utf8))
        }
        return VeilProtocol.bytesToHex(hasher.finish())
    }

    /** export/artifact.py's tree_size: a file's size, or the sum over a folder's files. */
    public static func treeSize(_ path: URL) throws -> Int {
        guard try isDirectory(path) else { return try fileSize(path) }
        var total = 0
        for relative in try treeFiles(path) { total += try fileSize(path.appendingPathComponent(relative)) }
        return total
    }

    private static func isDirectory(_ path: URL) throws -> Bool {
        var isDir: ObjCBool = false
        if !FileManager.default.fileExists(atPath: path.path, isDirectory: &isDir) {
            throw ManifestException("missing_file", "\(path.path): artifact listed in manifest.json is missing")
        }
        return isDir.boolValue
    }

    private static func fileSize(_ file: URL) throws -> Int {
        let attributes = try FileManager.default.attributesOfItem(atPath: file.path)
        return (attributes[.size] as? NSNumber)?.intValue ?? 0
    }

    /** Relative paths of the regular files under `dir`, sorted as pathlib sorts them (by components). */
    static func treeFiles(_ dir: URL) throws -> [String] {
        var files: [String] = []
        for relative in try FileManager.default.subpathsOfDirectory(atPath: dir.path) {
            var isDir: ObjCBool = false
            if FileManager.default.fileExists(atPath: dir.appendingPathComponent(relative).path, isDirectory: &isDir),
               !isDir.boolValue {
                files.append(relative)
            }
        }
        return files.sorted { a, b in
            let pa = a.split(separator: "/").map { $0.unicodeScalars.map { $0.value } }
            let pb = b.split(separator: "/").map { $0.unicodeScalars.map { $0.value } }
            return pa.lexicographicallyPrecedes(pb) { x, y in x.lexicographicallyPrecedes(y) }
        }
    }
}
