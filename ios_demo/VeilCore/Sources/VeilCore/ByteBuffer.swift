// Swift only: stands in for java.nio.ByteBuffer in little-endian order, which the Kotlin core uses in
// PayloadCodec.kt and Protocol.kt. Bounds are the callers' business (they check lengths first, as in Kotlin);
// a read past the end traps, as Kotlin's BufferUnderflowException would throw.
import Foundation

/** Appends little-endian values to a byte array of a known final size. */
struct ByteWriter {
    private(set) var bytes: [UInt8]

    init(capacity: Int) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    mutating func put(_ b: UInt8) { bytes.append(b) }

    mutating func put(_ b: [UInt8]) { bytes.append(contentsOf: b) }

    mutating func putShort(_ v: UInt16) {
        bytes.append(UInt8(truncatingIfNeeded: v))
        bytes.append(UInt8(truncatingIfNeeded: v >> 8))
    }

    mutating func putInt(_ v: UInt32) {
        for shift in stride(from: 0, to: 32, by: 8) { bytes.append(UInt8(truncatingIfNeeded: v >> UInt32(shift))) }
    }

    mutating func putFloat(_ f: Float) { putInt(f.bitPattern) }
}

/** Reads little-endian values from `bytes`, starting at `position`. */
struct ByteReader {
    let bytes: [UInt8]
    private(set) var position: Int

    init(_ bytes: [UInt8], _ position: Int = 0) {
        self.bytes = bytes
        self.position = position
    }

    var remaining: Int { bytes.count - position }

    mutating func get() -> UInt8 {
        let b = bytes[position]
        position += 1
        return b
    }

    mutating func get(_ count: Int) -> [UInt8] {
        let out = Array(bytes[position..<(position + count)])
        position += count
        return out
    }

    mutating func getShort() -> UInt16 {
        let v = UInt16(bytes[position]) | (UInt16(bytes[position + 1]) << 8)
        position += 2
        return v
    }

    mutating func getInt() -> UInt32 {
        var v: UInt32 = 0
        for i in 0..<4 { v |= UInt32(bytes[position + i]) << UInt32(8 * i) }
        position += 4
        return v
    }

    mutating func getFloat() -> Float { Float(bitPattern: getInt()) }
}
