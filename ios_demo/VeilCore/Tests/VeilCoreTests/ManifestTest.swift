// Mirrors android_demo/core/src/test/kotlin/veil/core/ManifestTest.kt
import Foundation
import VeilCore
import XCTest

/** export-manifest.json is the manifest `export-prefix --target android` wrote for the shipped model. */
final class ManifestTest: XCTestCase {
    private func text() throws -> String { try TestFiles.resourceText("export-manifest.json") }

    func testReadsTheGeometryIdentityAndArtifactsOfARealExport() throws {
        let m = try ExportManifest.parse(try text())
        XCTAssertEqual("veil-export/1", m.format)
        XCTAssertEqual(4, m.splitLayer)
        XCTAssertEqual(16000, m.chunk.sampleRate)
        XCTAssertEqual(32000, m.chunk.chunkSamples)
        XCTAssertEqual(640, m.chunk.frameSamples)
        XCTAssertEqual(50, m.chunk.framesPerChunk)
        XCTAssertEqual(2.0, m.chunk.chunkSeconds)
        XCTAssertEqual(144, m.embeddingDim)
        XCTAssertEqual([1, 50, 144], m.output.shape)
        XCTAssertEqual("fc5f61751056807040465decd0c5696d02388d160327c6d509c76f0ff7c6ad76", m.checkpointSha256)
        let et = try m.artifact("executorch")
        XCTAssertEqual("prefix-k4-int8-static.pte", et.file)
        XCTAssertEqual("XnnpackBackend", et.delegateBackend)
        XCTAssertEqual("pass", et.parityVerdict)
        XCTAssertEqual(3346624, et.sizeBytes)
        let lite = try m.artifact("litert", "int8-static")
        XCTAssertNil(lite.delegateBackend)
        XCTAssertEqual("serving_default", try lite.raw.getString("signature"))
        XCTAssertEqual("no_artifact", assertThrows(ManifestException.self) { try m.artifact("coreml") }?.reason)
    }

    func testUnknownKeysAreToleratedAndKept() throws {
        let o = try JSONObject(try text())
        o.put("future_key", JSONObject().put("x", 1))
        try o.getJSONObject("input").put("channels", 1)
        try o.getJSONArray("artifacts").getJSONObject(0).put("runtime_hints", JSONArray([.string("mmap")]))
        let m = try ExportManifest.parse(o.toString())
        XCTAssertEqual(1, try m.raw.getJSONObject("future_key").getInt("x"))
        XCTAssertEqual(2, m.artifacts.count)
    }

    private func broken(_ edit: (JSONObject) throws -> Void) throws -> ManifestException? {
        let o = try JSONObject(try text())
        try edit(o)
        let edited = o.toString()
        return assertThrows(ManifestException.self) { try ExportManifest.parse(edited, "x/manifest.json") }
    }

    func testMissingMistypedAndContradictingKeysAreNamed() throws {
        var e = try broken { try $0.getJSONObject("input").remove("chunk_samples") }
        XCTAssertEqual("missing", e?.reason)
        XCTAssertEqual("x/manifest.json: input.chunk_samples is missing, expected a positive integer", e?.message)
        e = try broken { _ = try $0.getJSONObject("output").put("embedding_dim", "144") }
        XCTAssertEqual("type", e?.reason)
        XCTAssertEqual("x/manifest.json: output.embedding_dim is the string '144', expected a positive integer", e?.message)
        e = try broken { _ = try $0.getJSONObject("output").put("frames_per_chunk", 49) }
        XCTAssertEqual("inconsistent", e?.reason)
        e = try broken {
            _ = try $0.getJSONArray("artifacts").getJSONObject(1).getJSONObject("output")
                .put("shape", JSONArray([.int(1), .int(50), .int(128)]))
        }
        XCTAssertEqual("inconsistent", e?.reason)
        XCTAssertTrue(e?.message.contains("artifacts[1] (prefix-k4-int8-static.tflite)") ?? false, e?.message ?? "")
        e = try broken { _ = $0.put("format", "veil-export/2") }
        XCTAssertEqual("format", e?.reason)
        e = try broken { _ = $0.put("artifacts", JSONArray()) }
        XCTAssertEqual("no_artifact", e?.reason)
        e = try broken { _ = try $0.getJSONArray("artifacts").getJSONObject(0).put("file", "../../etc/passwd") }
        XCTAssertEqual("unsafe_path", e?.reason)
        e = try broken { _ = try $0.getJSONArray("artifacts").getJSONObject(0).put("sha256", "XYZ") }
        XCTAssertEqual("type", e?.reason)
        e = try broken { _ = try $0.getJSONObject("input").put("dtype", "int16") }
        XCTAssertEqual("dtype", e?.reason)
        XCTAssertEqual("not_json",
                       assertThrows(ManifestException.self) { try ExportManifest.parse("{\"format\": ") }?.reason)
    }

    /** Bottleneck fixtures (manifests/): the shipped export's geometry with a bottleneck section. */
    private func fixture(_ name: String) throws -> String { try TestFiles.resourceText("manifests/\(name)-bottleneck.json") }

    func testReadsTheBottleneckSectionOfVqNoiseAndProjectionExports() throws {
        let vq = try XCTUnwrap(try ExportManifest.parse(try fixture("vq8")).bottleneck)
        XCTAssertEqual(16, vq.dim)
        XCTAssertEqual(Codec.vq, vq.payloadCodec)
        XCTAssertTrue(vq.isVq)
        XCTAssertEqual(4, vq.groups)
        XCTAssertEqual(16, vq.codes)
        XCTAssertEqual("codebook.f32", vq.codebook?.file)
        XCTAssertEqual([4, 16, 4], vq.codebook?.shape)
        XCTAssertEqual(64, vq.codebook?.sha256.count)
        XCTAssertEqual(4 * 4 * 16 * 4, vq.codebook?.sizeBytes)
        XCTAssertEqual(0.0, vq.noiseStd)
        XCTAssertEqual([2, 300, 3], try ExportManifest.parse(try fixture("vq16")).bottleneck?.codebook?.shape)
        let noise = try XCTUnwrap(try ExportManifest.parse(try fixture("noise")).bottleneck)
        XCTAssertEqual(Codec.int8, noise.payloadCodec)
        XCTAssertNil(noise.codebook)
        XCTAssertEqual(0.5, noise.noiseStd)
        XCTAssertEqual(0.0, try ExportManifest.parse(try fixture("projection")).bottleneck?.noiseStd)
        XCTAssertNil(try ExportManifest.parse(try text()).bottleneck)
        let nullSection = try JSONObject(try text()).put("bottleneck", .null)
        XCTAssertNil(try ExportManifest.parse(nullSection.toString()).bottleneck)
    }

    private func brokenBottleneck(_ name: String, _ edit: (JSONObject) throws -> Void) throws -> ManifestException? {
        let o = try JSONObject(try fixture(name))
        try edit(try o.getJSONObject("bottleneck"))
        let edited = o.toString()
        return assertThrows(ManifestException.self) { try ExportManifest.parse(edited, "x/manifest.json") }
    }

    func testABottleneckSectionThatCannotBeHonouredIsRefusedNamingTheKey() throws {
        var e = try brokenBottleneck("vq8") { _ = $0.put("payload_codec", "pq") }
        XCTAssertEqual("unknown_codec", e?.reason)
        XCTAssertTrue(e?.message.hasPrefix("x/manifest.json: bottleneck.payload_codec 'pq' is not one of") ?? false)
        e = try brokenBottleneck("vq8") { _ = $0.put("codebook", .null) }
        XCTAssertEqual("missing", e?.reason)
        XCTAssertEqual("x/manifest.json: bottleneck.codebook is null; a vq bottleneck needs its codebook", e?.message)
        e = try brokenBottleneck("vq8") { $0.remove("codebook") }
        XCTAssertEqual("missing", e?.reason)
        e = try brokenBottleneck("vq8") { _ = try $0.getJSONObject("codebook").put("shape", JSONArray([.int(4), .int(16), .int(2)])) }
        XCTAssertEqual("inconsistent", e?.reason)
        XCTAssertEqual("x/manifest.json: bottleneck.codebook.shape [4, 16, 2] is not [groups 4, codes 16, dim / groups 4]",
                       e?.message)
        e = try brokenBottleneck("vq8") { _ = $0.put("codes", 32) }
        XCTAssertEqual("inconsistent", e?.reason)
        e = try brokenBottleneck("vq8") { _ = $0.put("groups", 3) }
        XCTAssertEqual("inconsistent", e?.reason)
        e = try brokenBottleneck("vq8") { _ = $0.put("dim", 32) }
        XCTAssertEqual("inconsistent", e?.reason)
        XCTAssertEqual("x/manifest.json: bottleneck.dim 32 is not output.embedding_dim 16", e?.message)
        e = try brokenBottleneck("vq8") { _ = $0.put("noise_std", 0.1) }
        XCTAssertEqual("inconsistent", e?.reason)
        XCTAssertTrue(e?.message.contains("bottleneck.noise_std 0.1 with payload_codec vq") ?? false)
        e = try brokenBottleneck("vq8") { _ = try $0.getJSONObject("codebook").put("file", "/sdcard/codebook.f32") }
        XCTAssertEqual("unsafe_path", e?.reason)
        e = try brokenBottleneck("vq8") { _ = try $0.getJSONObject("codebook").put("sha256", "abc") }
        XCTAssertEqual("type", e?.reason)
        e = try brokenBottleneck("vq8") { _ = try $0.getJSONObject("codebook").put("byte_order", "big") }
        XCTAssertEqual("dtype", e?.reason)
        e = try brokenBottleneck("noise") { _ = $0.put("noise_std", -0.5) }
        XCTAssertEqual("type", e?.reason)
        XCTAssertEqual("x/manifest.json: bottleneck.noise_std is the number -0.5, expected a finite number >= 0", e?.message)
        e = try brokenBottleneck("noise") { _ = $0.put("noise_std", "0.5") }
        XCTAssertEqual("type", e?.reason)
        e = try brokenBottleneck("noise") { _ = $0.put("codebook", JSONObject().put("file", "codebook.f32")) }
        XCTAssertEqual("inconsistent", e?.reason)
        e = try brokenBottleneck("noise") { _ = $0.put("dim", 144) }
        XCTAssertEqual("inconsistent", e?.reason)
        let nan = try fixture("noise").replacingOccurrences(of: "\"noise_std\": 0.5", with: "\"noise_std\": NaN")
        XCTAssertTrue(nan.contains("NaN"))
        // a NaN (Python's json writes it unquoted) is not JSON: the whole manifest is refused
        e = assertThrows(ManifestException.self) { try ExportManifest.parse(nan, "x/manifest.json") }
        XCTAssertEqual("not_json", e?.reason)
        e = assertThrows(ManifestException.self) {
            try ExportManifest.parse(try JSONObject(try self.text()).put("bottleneck", "vq").toString(), "x/manifest.json")
        }
        XCTAssertEqual("type", e?.reason)
    }

    /** An export folder whose manifest describes two small real files. */
    private func folder() throws -> URL {
        let dir = try TestFiles.tempDir("veil-export")
        let o = try JSONObject(try text())
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

    func testAnExportFolderIsVerifiedBySizeAndSha256BeforeUse() throws {
        let dir = try folder()
        let export = try ExportFolder.open(dir)
        let et = try export.manifest.artifact("executorch")
        XCTAssertEqual(dir.appendingPathComponent(et.file).path, try export.verify(et).path)
        let etFile = dir.appendingPathComponent(et.file)
        let handle = try FileHandle(forWritingTo: etFile)
        _ = try handle.seekToEnd()
        try handle.write(contentsOf: Data([1]))
        try handle.close()
        XCTAssertEqual("size_mismatch", assertThrows(ManifestException.self) { try export.verify(et) }?.reason)
        let lite = try export.manifest.artifact("litert")
        let liteFile = dir.appendingPathComponent(lite.file)
        var bytes = [UInt8](try Data(contentsOf: liteFile))
        bytes[0] = bytes[0] &+ 1
        try Data(bytes).write(to: liteFile)
        XCTAssertEqual("sha256_mismatch", assertThrows(ManifestException.self) { try export.verify(lite) }?.reason)
        try FileManager.default.removeItem(at: liteFile)
        XCTAssertEqual("missing_file", assertThrows(ManifestException.self) { try export.verify(lite) }?.reason)
        XCTAssertEqual("missing",
                       assertThrows(ManifestException.self) { try ExportFolder.open(dir.appendingPathComponent("nope")) }?.reason)
    }

    func testSha256OfAFileIsTheLowercaseHexDigest() throws {
        let f = try TestFiles.tempDir("sha").appendingPathComponent("abc")
        try Data("abc".utf8).write(to: f)
        XCTAssertEqual("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", try ExportFolder.sha256Hex(f))
    }

    /**
     * Swift only: a Core ML artifact is a .mlpackage folder; its size and SHA-256 are export/artifact.py's
     * tree_size and tree_sha256 (the expected values were computed by them for this tree). "a/b" sorts before
     * "a-c" because Python compares paths by component, not as strings.
     */
    func testAnMlpackageFolderIsVerifiedByTheTreeSha256ThatExportArtifactPyComputes() throws {
        let root = try TestFiles.tempDir("mlpackage").appendingPathComponent("p.mlpackage")
        let weights = root.appendingPathComponent("Data/com.apple.CoreML/weights")
        try FileManager.default.createDirectory(at: weights, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(at: root.appendingPathComponent("a"), withIntermediateDirectories: true)
        try Data("{}".utf8).write(to: root.appendingPathComponent("Manifest.json"))
        var model: [UInt8] = []
        for _ in 0..<3 { model.append(contentsOf: (0..<256).map { UInt8($0) }) }
        try Data(model).write(to: root.appendingPathComponent("Data/com.apple.CoreML/model.mlmodel"))
        try Data(count: 1000).write(to: weights.appendingPathComponent("weight.bin"))
        try Data("x".utf8).write(to: root.appendingPathComponent("a-c"))
        try Data("y".utf8).write(to: root.appendingPathComponent("a/b"))
        XCTAssertEqual(1772, try ExportFolder.treeSize(root))
        XCTAssertEqual("b8612393601d54f059c0adacbfcd43a5772ba59f906623e649567c49a5335252", try ExportFolder.treeSha256Hex(root))
    }
}
