// Mirrors android_demo/core/src/test/kotlin/veil/core/PayloadEncoderTest.kt
import Foundation
import VeilCore
import XCTest

/** A seeded generator for reproducible noise in tests (SplitMix64; Kotlin: java.util.Random(seed)). */
struct SeededGenerator: RandomNumberGenerator {
    private var state: UInt64

    init(_ seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/**
 * What the phone sends for an export with a bottleneck. The vq exports are the manifests/ fixtures with the committed
 * protocol vectors' codebooks (testvectors/payload/vq8-codebook.f32, vq16-codebook.f32) as their codebook.f32, so
 * the encoder must send the committed indices for the committed z inputs, bit for bit.
 */
final class PayloadEncoderTest: XCTestCase {
    private func vqCase(_ name: String) throws -> JSONObject {
        let vq = try TestVectors.index().getJSONObject("payload").getJSONObject("vq").getJSONArray("cases")
        for i in 0..<vq.length {
            let c = try vq.getJSONObject(i)
            if try c.getString("name") == name { return c }
        }
        throw IllegalStateException(message: "no vq case \(name) in testvectors/index.json")
    }

    /** An export folder: the fixture manifest `name`, with the vq case's committed codebook as its codebook.f32. */
    private func exportFolder(_ name: String) throws -> URL {
        let dir = try TestFiles.tempDir("veil-bottleneck")
        try Data(try TestFiles.resourceText("manifests/\(name)-bottleneck.json").utf8)
            .write(to: dir.appendingPathComponent(ExportManifest.FILE_NAME))
        if name.hasPrefix("vq") {
            let book = try vqCase(name).getJSONObject("codebook").getString("file")
            try Data(try TestVectors.bytes(book)).write(to: dir.appendingPathComponent("codebook.f32"))
        }
        return dir
    }

    /** `frames` x `dim` values with unit RMS per frame, as the exported graph emits them. */
    private func unitRms(_ frames: Int, _ dim: Int, _ seed: UInt64) throws -> Embeddings {
        let noise = GaussianNoise(SeededGenerator(seed))
        var v = (0..<frames * dim).map { _ in Float(noise.next()) }
        for t in 0..<frames {
            var sum = 0.0
            for j in 0..<dim { sum += Double(v[t * dim + j]) * Double(v[t * dim + j]) }
            let rms = (sum / Double(dim)).squareRoot()
            for j in 0..<dim { v[t * dim + j] = Float(Double(v[t * dim + j]) / rms) }
        }
        return try Embeddings(frames, dim, v)
    }

    func testAVqExportSendsTheCommittedIndicesForTheCommittedZBitForBit() throws {
        for name in ["vq8", "vq16"] {
            let c = try vqCase(name)
            let export = try ExportFolder.open(try exportFolder(name))
            XCTAssertEqual([Codec.vq], PayloadEncoder.codecsFor(export.manifest))
            let encoder = try PayloadEncoder.forExport(export, .vq)
            XCTAssertEqual(Codec.vq, encoder.hello().codec, name)
            let message = try encoder.encode(try TestVectors.embeddings(try c.getJSONObject("z")))
            XCTAssertEqual(try TestVectors.bytes(try c.getString("message")), message, name)
            var want: [Int] = []
            let rows = try c.getJSONArray("indices")
            for t in 0..<rows.length {
                let row = try rows.getJSONArray(t)
                for g in 0..<row.length { want.append(try row.getInt(g)) }
            }
            XCTAssertEqual(want, try PayloadCodec.decodeIndices(message).1, name)
        }
    }

    func testAVqExportNeverEmitsAContinuousCodec() throws {
        let export = try ExportFolder.open(try exportFolder("vq8"))
        for codec in [Codec.int8, Codec.fp16, Codec.fp32] {
            let e = assertThrows(PayloadException.self) { try PayloadEncoder.forExport(export, codec) }
            XCTAssertEqual("codec_bypasses_bottleneck", e?.reason, codec.wireName)
            XCTAssertTrue(e?.message.contains("would send the vectors and bypass it") ?? false)
        }
        let encoder = try PayloadEncoder.forExport(export, .vq)
        for seed in UInt64(0)..<20 {
            let header = try PayloadCodec.readHeader(try encoder.encode(try unitRms(50, 16, seed)))
            XCTAssertEqual(Codec.vq, header.codec)
            XCTAssertEqual(PayloadCodec.MAGIC_V2, header.magic)
            XCTAssertEqual(4, header.dimField)
            XCTAssertEqual(8, header.aux)
        }
    }

    func testAVqEncoderNeedsTheExportSOwnCodebook() throws {
        let manifest = try ExportManifest.read(try exportFolder("vq8"))
        XCTAssertEqual("needs_codebook",
                       assertThrows(PayloadException.self) { try PayloadEncoder(manifest, nil, .vq) }?.reason)
        let other = try XCTUnwrap(try ExportFolder.open(try exportFolder("vq16")).codebook())
        XCTAssertEqual("bad_codebook",
                       assertThrows(PayloadException.self) { try PayloadEncoder(manifest, other, .vq) }?.reason)
        let plain = try ExportManifest.parse(try TestFiles.resourceText("export-manifest.json"))
        XCTAssertEqual("needs_codebook",
                       assertThrows(PayloadException.self) { try PayloadEncoder(plain, nil, .vq) }?.reason)
        let noise = try ExportManifest.parse(try TestFiles.resourceText("manifests/noise-bottleneck.json"))
        XCTAssertEqual("needs_codebook",
                       assertThrows(PayloadException.self) { try PayloadEncoder(noise, nil, .vq) }?.reason)
    }

    func testTheCodebookFileIsCheckedAgainstTheManifestBeforeItCodesAnything() throws {
        let dir = try exportFolder("vq8")
        let export = try ExportFolder.open(dir)
        let book = dir.appendingPathComponent("codebook.f32")
        let good = [UInt8](try Data(contentsOf: book))
        XCTAssertEqual(4 * 16 * 4, try export.codebook()?.values.count)
        try Data(good[0..<(good.count - 4)]).write(to: book)
        var e = assertThrows(ManifestException.self) { try export.codebook() }
        XCTAssertEqual("size_mismatch", e?.reason)
        XCTAssertTrue(e?.message.hasPrefix("\(book.path): 1020 bytes is not a float32 codebook of shape [4, 16, 4]") ?? false,
                      e?.message ?? "")
        var changed = good
        changed[0] = changed[0] &+ 1
        try Data(changed).write(to: book)
        XCTAssertEqual("sha256_mismatch", assertThrows(ManifestException.self) { try export.codebook() }?.reason)
        XCTAssertEqual("sha256_mismatch",
                       assertThrows(ManifestException.self) { try PayloadEncoder.forExport(export, .vq) }?.reason)
        try FileManager.default.removeItem(at: book)
        e = assertThrows(ManifestException.self) { try export.codebook() }
        XCTAssertEqual("missing_file", e?.reason)
        XCTAssertEqual("\(book.path): codebook listed in manifest.json is missing", e?.message)
        // a codebook with a NaN codeword, listed with its own hash: refused for its values
        var nan = good
        for (i, b) in [UInt8(0x00), 0x00, 0xC0, 0x7F].enumerated() { nan[i] = b }
        try Data(nan).write(to: book)
        let manifestFile = dir.appendingPathComponent(ExportManifest.FILE_NAME)
        let o = try JSONObject(String(decoding: try Data(contentsOf: manifestFile), as: UTF8.self))
        _ = try o.getJSONObject("bottleneck").getJSONObject("codebook").put("sha256", try ExportFolder.sha256Hex(book))
        try Data(o.toString().utf8).write(to: manifestFile)
        e = assertThrows(ManifestException.self) { try ExportFolder.open(dir).codebook() }
        XCTAssertEqual("bad_codebook", e?.reason)
        XCTAssertEqual("\(book.path): the vq codebook contains NaN or Inf", e?.message)
        XCTAssertNil(try ExportFolder.open(try exportFolder("noise")).codebook())
    }

    /** Sample mean and standard deviation of decoded - z over every value. */
    private func differenceStats(_ z: Embeddings, _ decoded: Embeddings) -> (Double, Double) {
        XCTAssertEqual(z.values.count, decoded.values.count)
        let n = z.values.count
        var sum = 0.0
        for i in 0..<n { sum += Double(decoded.values[i]) - Double(z.values[i]) }
        let mean = sum / Double(n)
        var squares = 0.0
        for i in 0..<n {
            let d = Double(decoded.values[i]) - Double(z.values[i]) - mean
            squares += d * d
        }
        return (mean, (squares / Double(n - 1)).squareRoot())
    }

    func testANoiseExportAddsGaussianNoiseOfTheManifestSStdOnThePhoneBeforeEncoding() throws {
        let manifest = try ExportManifest.parse(try TestFiles.resourceText("manifests/noise-bottleneck.json"))
        let s = try XCTUnwrap(manifest.bottleneck).noiseStd
        XCTAssertEqual(0.5, s)
        XCTAssertEqual([Codec.int8, Codec.fp16, Codec.fp32], PayloadEncoder.codecsFor(manifest))
        let z = try unitRms(313, 16, 7)  // 5008 values
        for codec in [Codec.fp32, Codec.int8] {
            let encoder = try PayloadEncoder(manifest, nil, codec, GaussianNoise(SeededGenerator(11)))
            XCTAssertEqual(codec, encoder.hello().codec)
            let decoded = try PayloadCodec.decode(try encoder.encode(z))
            let (mean, std) = differenceStats(z, decoded)
            // std of 5008 N(0, S^2) samples: S * (1 +- 0.01); mean: 0 +- S / 71
            XCTAssertTrue(abs(std - s) < 0.05 * s, "\(codec.wireName): std \(std), noise_std \(s)")
            XCTAssertTrue(abs(mean) < 4 * s / Double(z.values.count).squareRoot(), "\(codec.wireName): mean \(mean)")
        }
        // the app's default source is SystemRandomNumberGenerator: the same statistics, and fresh noise on every message
        let app = try PayloadEncoder(manifest, nil, .fp32)
        let (mean, std) = differenceStats(z, try PayloadCodec.decode(try app.encode(z)))
        XCTAssertTrue(abs(std - s) < 0.05 * s, "SystemRandomNumberGenerator: std \(std), noise_std \(s)")
        XCTAssertTrue(abs(mean) < 4 * s / Double(z.values.count).squareRoot(), "SystemRandomNumberGenerator: mean \(mean)")
        XCTAssertNotEqual(try app.encode(z), try app.encode(z))
    }

    func testSeededNoiseIsReproducibleAndNoiseStd0SendsTodaySBytes() throws {
        let manifest = try ExportManifest.parse(try TestFiles.resourceText("manifests/noise-bottleneck.json"))
        let z = try unitRms(50, 16, 3)
        XCTAssertEqual(try PayloadEncoder(manifest, nil, .int8, GaussianNoise(SeededGenerator(5))).encode(z),
                       try PayloadEncoder(manifest, nil, .int8, GaussianNoise(SeededGenerator(5))).encode(z))
        let zero = try JSONObject(try TestFiles.resourceText("manifests/noise-bottleneck.json"))
        _ = try zero.getJSONObject("bottleneck").put("noise_std", 0.0)
        let projection = try ExportManifest.parse(try TestFiles.resourceText("manifests/projection-bottleneck.json"))
        for m in [try ExportManifest.parse(zero.toString()), projection] {
            XCTAssertEqual(0.0, m.bottleneck?.noiseStd)
            for codec in [Codec.int8, Codec.fp16, Codec.fp32] {
                XCTAssertEqual(try PayloadCodec.encode(z, codec), try PayloadEncoder(m, nil, codec).encode(z))
            }
        }
        // a plain export (the shipped one): the committed session's prefix outputs encode as before
        let plain = try ExportManifest.parse(try TestFiles.resourceText("export-manifest.json"))
        XCTAssertEqual([Codec.int8, Codec.fp16, Codec.fp32], PayloadEncoder.codecsFor(plain))
        for chunk in 0...2 {
            let prefix = try Embeddings(50, 144, try TestVectors.f32("sessions/prefix-\(chunk).f32"))
            for codec in [Codec.int8, Codec.fp16, Codec.fp32] {
                XCTAssertEqual(try PayloadCodec.encode(prefix, codec), try PayloadEncoder(plain, nil, codec).encode(prefix))
            }
        }
        XCTAssertEqual("bad_shape", assertThrows(PayloadException.self) {
            try PayloadEncoder(plain, nil, .int8).encode(z)
        }?.reason)
    }

    func testTheBenchReportsTheBytesTheAppSendsVqIndicesForAVqExport() throws {
        let dir = try exportFolder("vq8")
        let export = try ExportFolder.open(dir)
        let artifact = try export.manifest.artifact("executorch")
        let weights = dir.appendingPathComponent(artifact.file)
        try Data((0..<2048).map { UInt8(truncatingIfNeeded: $0) }).write(to: weights)
        let input = (0..<export.manifest.chunk.chunkSamples).map { Float(sin(Double($0) * 0.01)) * 0.1 }
        let m = try BenchRunner.measure(StandInFramePrefix.Loader(), artifact, weights, input, export.manifest.chunk,
                                        try BenchSettings(1, 0, 2), NoPss(), try PayloadEncoder.forExport(export, .vq))
        XCTAssertEqual("vq", m.payloadCodec)
        XCTAssertEqual(PayloadCodec.messageBytes(.vq, 50, 4), m.payloadBytes)
        let json = BenchSchema.measurement(m)
        XCTAssertEqual("vq", try json.getString("payload_codec"))
        XCTAssertEqual(210, try json.getInt("payload_bytes_per_chunk"))
        XCTAssertEqual(105.0, try json.getDouble("payload_bytes_per_second"))
    }

    private struct NoPss: PssProbe {
        func pssBytes() -> Int? { nil }
    }
}
