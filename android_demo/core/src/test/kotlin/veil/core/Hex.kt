package veil.core

/** Hex <-> bytes for test vectors. */
object Hex {
    fun decode(hex: String): ByteArray {
        val clean = hex.replace(" ", "")
        require(clean.length % 2 == 0) { "odd hex length" }
        val out = ByteArray(clean.length / 2)
        for (i in out.indices) out[i] = Integer.parseInt(clean.substring(2 * i, 2 * i + 2), 16).toByte()
        return out
    }

    fun encode(bytes: ByteArray): String {
        val s = StringBuilder()
        for (b in bytes) s.append(String.format(java.util.Locale.ROOT, "%02x", b.toInt() and 0xFF))
        return s.toString()
    }
}
