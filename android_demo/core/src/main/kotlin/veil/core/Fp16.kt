package veil.core

/**
 * IEEE 754 binary16 ("half") conversion, bit by bit.
 *
 * JDK 17 has no float16 conversion (Float.floatToFloat16 arrived in JDK 20) and android.util.Half does not exist on
 * a plain JVM, so the payload codec carries its own. Float to half rounds to nearest, ties to even, exactly as numpy's
 * `astype(np.float16)`: subnormal halves are produced, values past the half range become infinity, NaN stays NaN.
 */
object Fp16 {
    /** The largest finite half, 65504. */
    const val MAX_VALUE: Float = 65504.0f

    /** float32 -> the 16 bits of the nearest half (ties to even), in the low 16 bits of the result. */
    @JvmStatic
    fun fromFloat(value: Float): Int {
        val f = java.lang.Float.floatToRawIntBits(value)
        val sign = (f ushr 16) and 0x8000
        val exponent = (f ushr 23) and 0xff
        val mantissa = f and 0x7fffff
        if (exponent == 0xff) {
            // infinity stays infinity; NaN keeps its top payload bits and stays a NaN
            if (mantissa == 0) return sign or 0x7c00
            val nan = 0x7c00 or (mantissa ushr 13)
            return sign or (if (nan == 0x7c00) 0x7c01 else nan)
        }
        val unbiased = exponent - 127
        if (unbiased > 15) return sign or 0x7c00
        if (unbiased >= -14) {
            // normal half: keep 10 mantissa bits, round the 13 dropped bits to nearest even;
            // a carry out of the mantissa bumps the exponent (and 65520 and up become infinity)
            val half = ((unbiased + 15) shl 10) or (mantissa ushr 13)
            return sign or roundDropped(half, mantissa and 0x1fff, 13)
        }
        if (unbiased < -25) return sign  // below half the smallest subnormal: signed zero
        // subnormal half: the implicit 1 joins the mantissa, which is shifted further right
        val full = mantissa or 0x800000
        val shift = 13 + (-14 - unbiased)
        val half = full ushr shift
        return sign or roundDropped(half, full and ((1 shl shift) - 1), shift)
    }

    /** Round `kept` by its `bits` dropped low bits `dropped`: up above the halfway point, to even at it. */
    private fun roundDropped(kept: Int, dropped: Int, bits: Int): Int {
        val halfway = 1 shl (bits - 1)
        return if (dropped > halfway || (dropped == halfway && (kept and 1) == 1)) kept + 1 else kept
    }

    /** The 16 bits of a half (low bits of `bits`) -> the float32 it denotes (exact). */
    @JvmStatic
    fun toFloat(bits: Int): Float {
        val sign = (bits and 0x8000) shl 16
        val exponent = (bits ushr 10) and 0x1f
        val mantissa = bits and 0x3ff
        if (exponent == 0x1f) {
            return java.lang.Float.intBitsToFloat(sign or 0x7f800000 or (mantissa shl 13))
        }
        if (exponent == 0) {
            if (mantissa == 0) return java.lang.Float.intBitsToFloat(sign)
            // subnormal: mantissa * 2^-24, exact in float32
            val magnitude = mantissa.toFloat() * SUBNORMAL_UNIT
            return if (sign != 0) -magnitude else magnitude
        }
        return java.lang.Float.intBitsToFloat(sign or ((exponent - 15 + 127) shl 23) or (mantissa shl 13))
    }

    /** 2^-24, the smallest subnormal half. */
    private val SUBNORMAL_UNIT: Float = java.lang.Float.intBitsToFloat((127 - 24) shl 23)
}
