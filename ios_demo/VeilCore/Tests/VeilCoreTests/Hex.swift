// Mirrors android_demo/core/src/test/kotlin/veil/core/Hex.kt
import Foundation

/** Hex <-> bytes for test vectors. */
enum Hex {
    static func decode(_ hex: String) -> [UInt8] {
        let clean = Array(hex.replacingOccurrences(of: " ", with: "").utf8)
        precondition(clean.count % 2 == 0, "odd hex length")
        var out = [UInt8](repeating: 0, count: clean.count / 2)
        for i in 0..<out.count {
            out[i] = UInt8(String(decoding: clean[(2 * i)..<(2 * i + 2)], as: UTF8.self), radix: 16)!
        }
        return out
    }

    static func encode(_ bytes: [UInt8]) -> String {
        var s = ""
        for b in bytes { s += String(format: "%02x", UInt32(b)) }
        return s
    }
}
