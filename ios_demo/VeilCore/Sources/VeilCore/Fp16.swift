// Mirrors android_demo/core/src/main/kotlin/veil/core/Fp16.kt
import Foundation

/**
 * IEEE 754 binary16 ("half") conversion, bit by bit.
 *
 * Swift's half type is unavailable on Intel Macs (macOS x86_64, Catalyst), so the payload codec carries its own
 * conversion, exactly as the Kotlin core does (JDK 17 has none either). Float to half rounds to nearest, ties to
 * even, exactly as numpy's `astype(np.float16)`: subnormal halves are produced, values past the half range become
 * infinity, NaN stays NaN. Bits travel as Int (the low 16 bits), as in Kotlin.
 */
public enum Fp16 {
    /** The largest finite half, 65504. */
    public static let MAX_VALUE: Float = 65504.0

    /** float32 -> the 16 bits of the nearest half (ties to even), in the low 16 bits of the result. */
    public static func fromFloat(_ value: Float) -> Int {
        let f = Int(value.bitPattern)
        let sign = (f >> 16) & 0x8000
        let exponent = (f >> 23) & 0xff
        let mantissa = f & 0x7fffff
        if exponent == 0xff {
            // infinity stays infinity; NaN keeps its top payload bits and stays a NaN
            if mantissa == 0 { return sign | 0x7c00 }
            let nan = 0x7c00 | (mantissa >> 13)
            return sign | (nan == 0x7c00 ? 0x7c01 : nan)
        }
        let unbiased = exponent - 127
        if unbiased > 15 { return sign | 0x7c00 }
        if unbiased >= -14 {
            // normal half: keep 10 mantissa bits, round the 13 dropped bits to nearest even;
            // a carry out of the mantissa bumps the exponent (and 65520 and up become infinity)
            let half = ((unbiased + 15) << 10) | (mantissa >> 13)
            return sign | roundDropped(half, mantissa & 0x1fff, 13)
        }
        if unbiased < -25 { return sign }  // below half the smallest subnormal: signed zero
        // subnormal half: the implicit 1 joins the mantissa, which is shifted further right
        let full = mantissa | 0x800000
        let shift = 13 + (-14 - unbiased)
        let half = full >> shift
        return sign | roundDropped(half, full & ((1 << shift) - 1), shift)
    }

    /** Round `kept` by its `bits` dropped low bits `dropped`: up above the halfway point, to even at it. */
    private static func roundDropped(_ kept: Int, _ dropped: Int, _ bits: Int) -> Int {
        let halfway = 1 << (bits - 1)
        return (dropped > halfway || (dropped == halfway && (kept & 1) == 1)) ? kept + 1 : kept
    }

    /** The 16 bits of a half (low bits of `bits`) -> the float32 it denotes (exact). */
    public static func toFloat(_ bits: Int) -> Float {
        let sign = (bits & 0x8000) << 16
        let exponent = (bits >> 10) & 0x1f
        let mantissa = bits & 0x3ff
        if exponent == 0x1f {
            return Float(bitPattern: UInt32(sign | 0x7f800000 | (mantissa << 13)))
        }
        if exponent == 0 {
            if mantissa == 0 { return Float(bitPattern: UInt32(sign)) }
            // subnormal: mantissa * 2^-24, exact in float32
            let magnitude = Float(mantissa) * SUBNORMAL_UNIT
            return sign != 0 ? -magnitude : magnitude
        }
        return Float(bitPattern: UInt32(sign | ((exponent - 15 + 127) << 23) | (mantissa << 13)))
    }

    /** 2^-24, the smallest subnormal half. */
    private static let SUBNORMAL_UNIT: Float = Float(bitPattern: UInt32((127 - 24) << 23))
}
