// Swift only: stands in for java.security.MessageDigest("SHA-256"), which ExportFolder (Manifest.kt) uses.
// CryptoKit and CommonCrypto exist only on Apple platforms, and VeilCore depends on Foundation alone, so the digest
// is FIPS 180-4 SHA-256 written out; the tests check it against the standard's vectors and Python's hashlib.
import Foundation

/** Incremental SHA-256: `update` with bytes as they come, then `finish` once for the 32-byte digest. */
public struct SHA256 {
    private static let K: [UInt32] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
        0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
        0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
        0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
        0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
        0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
        0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
    ]

    private var h: [UInt32] = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                               0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]
    /** Bytes not yet processed: always fewer than one 64-byte block between calls. */
    private var pending: [UInt8] = []
    private var totalBytes: UInt64 = 0
    private var w = [UInt32](repeating: 0, count: 64)

    public init() {}

    public mutating func update<C: Collection>(_ data: C) where C.Element == UInt8 {
        totalBytes &+= UInt64(data.count)
        pending.append(contentsOf: data)
        var start = 0
        while pending.count - start >= 64 {
            compress(start)
            start += 64
        }
        if start > 0 { pending.removeFirst(start) }
    }

    /** The digest; the hasher is spent afterwards. */
    public mutating func finish() -> [UInt8] {
        let bits = totalBytes &* 8
        pending.append(0x80)
        while pending.count % 64 != 56 { pending.append(0) }
        for shift in stride(from: 56, through: 0, by: -8) { pending.append(UInt8(truncatingIfNeeded: bits >> UInt64(shift))) }
        var start = 0
        while start < pending.count {
            compress(start)
            start += 64
        }
        pending.removeAll()
        var out: [UInt8] = []
        for word in h {
            for shift in stride(from: 24, through: 0, by: -8) { out.append(UInt8(truncatingIfNeeded: word >> UInt32(shift))) }
        }
        return out
    }

    /** SHA-256 of `data` as 64 lowercase hex digits. */
    public static func hex<C: Collection>(_ data: C) -> String where C.Element == UInt8 {
        var hasher = SHA256()
        hasher.update(data)
        return VeilProtocol.bytesToHex(hasher.finish())
    }

    @inline(__always)
    private static func rotr(_ x: UInt32, _ n: UInt32) -> UInt32 { (x >> n) | (x << (32 - n)) }

    /** One 64-byte block of `pending` starting at `start`. */
    private mutating func compress(_ start: Int) {
        for t in 0..<16 {
            let b = start + 4 * t
            let b0 = UInt32(pending[b]) << 24
            let b1 = UInt32(pending[b + 1]) << 16
            let b2 = UInt32(pending[b + 2]) << 8
            let b3 = UInt32(pending[b + 3])
            w[t] = b0 | b1 | b2 | b3
        }
        for t in 16..<64 {
            let s0 = SHA256.rotr(w[t - 15], 7) ^ SHA256.rotr(w[t - 15], 18) ^ (w[t - 15] >> 3)
            let s1 = SHA256.rotr(w[t - 2], 17) ^ SHA256.rotr(w[t - 2], 19) ^ (w[t - 2] >> 10)
            w[t] = w[t - 16] &+ s0 &+ w[t - 7] &+ s1
        }
        var a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7]
        for t in 0..<64 {
            let bigS1 = SHA256.rotr(e, 6) ^ SHA256.rotr(e, 11) ^ SHA256.rotr(e, 25)
            let ch = (e & f) ^ (~e & g)
            var t1 = hh &+ bigS1
            t1 = t1 &+ ch
            t1 = t1 &+ SHA256.K[t]
            t1 = t1 &+ w[t]
            let bigS0 = SHA256.rotr(a, 2) ^ SHA256.rotr(a, 13) ^ SHA256.rotr(a, 22)
            let maj = (a & b) ^ (a & c) ^ (b & c)
            let t2 = bigS0 &+ maj
            hh = g
            g = f
            f = e
            e = d &+ t1
            d = c
            c = b
            b = a
            a = t1 &+ t2
        }
        h[0] = h[0] &+ a
        h[1] = h[1] &+ b
        h[2] = h[2] &+ c
        h[3] = h[3] &+ d
        h[4] = h[4] &+ e
        h[5] = h[5] &+ f
        h[6] = h[6] &+ g
        h[7] = h[7] &+ hh
    }
}
