package veil.core

import org.junit.jupiter.api.Assertions.assertArrayEquals
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertThrows
import org.junit.jupiter.api.Test

class VqCodecTest {
    /** G = 2 groups of K = 3 codewords of dg = 2 dims. */
    private val codebook = Codebook(2, 3, 2, floatArrayOf(
        0f, 0f, 1f, 1f, -1f, 2f,      // group 0
        5f, 5f, 0f, 0f, 5f, 5f))      // group 1: codewords 0 and 2 are equal (first wins)

    @Test
    fun `nearest codeword per group, first minimum wins`() {
        val z = Embeddings(2, 4, floatArrayOf(0.9f, 1.2f, 4f, 6f, -0.4f, 0.9f, 0.1f, -0.1f))
        // frame 0: group 0 -> codeword 1 (0.05), group 1 -> codeword 0 (2.0, tied with codeword 2);
        // frame 1: group 0 -> codeword 0 (0.97 against 1.97 and 1.57), group 1 -> codeword 1 (0.02)
        assertArrayEquals(intArrayOf(1, 0, 0, 1), PayloadCodec.quantize(z, codebook))
    }

    @Test
    fun `vq messages are VPL2 with 8-bit indices when K fits a byte`() {
        val z = Embeddings(2, 4, floatArrayOf(0.9f, 1.2f, 4f, 6f, -0.4f, 0.9f, 0.1f, -0.1f))
        val m = PayloadCodec.encodeVq(z, codebook)
        assertEquals("56504c32" + "03" + "08" + "0200" + "0200" + "01000001", Hex.encode(m))
        val (header, indices) = PayloadCodec.decodeIndices(m)
        assertEquals(Codec.VQ, header.codec)
        assertArrayEquals(intArrayOf(1, 0, 0, 1), indices)
        val decoded = PayloadCodec.decode(m, codebook)
        assertArrayEquals(floatArrayOf(1f, 1f, 5f, 5f, 0f, 0f, 0f, 0f), decoded.values)
    }

    @Test
    fun `more than 256 codewords take 16-bit indices`() {
        val k = 300
        val values = FloatArray(k)
        for (i in 0 until k) values[i] = i.toFloat()
        val big = Codebook(1, k, 1, values)
        val m = PayloadCodec.encodeVq(Embeddings(2, 1, floatArrayOf(299.2f, 3.4f)), big)
        assertEquals("56504c32" + "03" + "10" + "0200" + "0100" + "2b01" + "0300", Hex.encode(m))
        assertArrayEquals(floatArrayOf(299f, 3f), PayloadCodec.decode(m, big).values)
    }

    @Test
    fun `vq decoding refuses what does not fit the codebook`() {
        val m = PayloadCodec.encodeVq(Embeddings(1, 4, floatArrayOf(0f, 0f, 0f, 0f)), codebook)
        assertEquals("needs_codebook", assertThrows(PayloadException::class.java) { PayloadCodec.decode(m) }.reason)
        val outOfRange = m.copyOf()
        outOfRange[10] = 3
        assertEquals("index_out_of_range",
            assertThrows(PayloadException::class.java) { PayloadCodec.decode(outOfRange, codebook) }.reason)
        val badWidth = m.copyOf()
        badWidth[5] = 12
        assertEquals("bad_index_width",
            assertThrows(PayloadException::class.java) { PayloadCodec.decode(badWidth, codebook) }.reason)
        val other = Codebook(1, 3, 4, FloatArray(12))
        assertEquals("bad_shape",
            assertThrows(PayloadException::class.java) { PayloadCodec.decode(m, other) }.reason)
    }

    @Test
    fun `VPL2 also carries the float codecs`() {
        val v1 = PayloadCodec.encode(Embeddings(1, 2, floatArrayOf(1.5f, -2f)), Codec.FP16)
        val v2 = v1.copyOf()
        v2[3] = 0x32  // "VPL2"
        assertArrayEquals(PayloadCodec.decode(v1).values, PayloadCodec.decode(v2).values)
    }
}
