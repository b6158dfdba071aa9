// Mirrors android_demo/core/src/test/kotlin/veil/core/TestVectors.kt
import Foundation
import VeilCore

/**
 * The cross-language test vectors the Python side writes (`veil protocol vectors --out testvectors`, see
 * testvectors/README.md): exact bytes (.bin), raw little-endian float32 (.f32), and index.json describing both.
 */
enum TestVectors {
    static let dir: URL = TestFiles.repo.appendingPathComponent("testvectors")

    private static var cached: JSONObject?

    static func index() throws -> JSONObject {
        if let ix = cached { return ix }
        let f = dir.appendingPathComponent("index.json")
        guard let data = FileManager.default.contents(atPath: f.path) else {
            throw IllegalStateException(message: "\(f.path) not found: the test vectors come with the repository (testvectors/)")
        }
        let ix = try JSONObject(String(decoding: data, as: UTF8.self))
        cached = ix
        return ix
    }

    static func bytes(_ path: String) throws -> [UInt8] {
        let f = dir.appendingPathComponent(path)
        guard let data = FileManager.default.contents(atPath: f.path) else {
            throw IllegalStateException(message: "\(f.path) not found")
        }
        return [UInt8](data)
    }

    static func f32(_ path: String) throws -> [Float] {
        let b = try bytes(path)
        var out = [Float](repeating: 0, count: b.count / 4)
        for i in 0..<out.count {
            let bits = UInt32(b[4 * i]) | (UInt32(b[4 * i + 1]) << 8) | (UInt32(b[4 * i + 2]) << 16)
                | (UInt32(b[4 * i + 3]) << 24)
            out[i] = Float(bitPattern: bits)
        }
        return out
    }

    /** An .f32 file described by {"file", "shape": [T, d]} as embeddings. */
    static func embeddings(_ spec: JSONObject) throws -> Embeddings {
        let shape = try spec.getJSONArray("shape")
        return try Embeddings(try shape.getInt(0), try shape.getInt(1), try f32(try spec.getString("file")))
    }

    static func bitsOf(_ hex: String) -> Int { Int(hex, radix: 16)! }

    static func floatOf(_ hex: String) -> Float { Float(bitPattern: UInt32(bitsOf(hex))) }

    /** Bit-for-bit equality of float arrays (NaN payloads and -0.0 included). */
    static func sameBits(_ a: [Float], _ b: [Float]) -> Bool {
        if a.count != b.count { return false }
        for i in 0..<a.count where a[i].bitPattern != b[i].bitPattern { return false }
        return true
    }
}
