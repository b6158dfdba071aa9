package veil.core

import org.junit.jupiter.api.Assertions.assertArrayEquals
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertThrows
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test

/**
 * Byte identity with toolkit/payload.py on messages it produced (numpy 2.4.6): the rounding traps (half-to-even
 * int8, fp16 subnormals, -0.0) are in these inputs. The shared cross-language vectors are checked in
 * CrossLanguageVectorsTest.
 */
class PayloadCodecTest {
    // toolkit.payload.encode(np.array([[127, 2.5, -3.5, 0.5], [0.1, -127, 1.5, 33.3]], np.float32), codec)
    private val ties = Embeddings(2, 4, floatArrayOf(127f, 2.5f, -3.5f, 0.5f, 0.1f, -127f, 1.5f, 33.3f))
    private val tiesWant = mapOf(
        Codec.FP32 to "56504c310000020004000000fe4200002040000060c00000003fcdcccc3d0000fec20000c03f33330542",
        Codec.FP16 to "56504c31010002000400f057004100c30038662ef0d7003e2a50",
        Codec.INT8 to "56504c310200020004000000803f0000803f7f02fc0000810221")

    // rng = np.random.default_rng(0); (rng.standard_normal((3, 5)) * [[0.01], [3], [0]]).astype(np.float32)
    private val mixed = Embeddings(3, 5, floatArrayOf(0.001257302239537239f, -0.0013210485922172666f,
        0.006404226645827293f, 0.0010490011190995574f, -0.0053566936403512955f, 1.0847852230072021f,
        3.9120001792907715f, 2.841242790222168f, -2.111205816268921f, -3.796264410018921f, -0.0f, 0.0f, -0.0f,
        -0.0f, -0.0f))
    private val mixedWant = mapOf(
        Codec.FP32 to "56504c3100000300050010cca43a0927adba8cdad13ba37e893a3487afbb3eda8a3f365e7a40ecd63540ff1d07c0" +
            "fff572c00000008000000000000000800000008000000080",
        Codec.FP16 to "56504c31010003000500261569958f1e4c147c9d573cd343af4139c098c300800000008000800080",
        Codec.INT8 to "56504c310200030005008f815338e456fc3c0000000019e67f1596237f5cbb850000000000")
    private val mixedInt8Decoded = floatArrayOf(0.0012606745585799217f, -0.0013111014850437641f,
        0.006404226645827293f, 0.0010589666198939085f, -0.005345259793102741f, 1.0781103372573853f,
        3.9120001792907715f, 2.833889961242676f, -2.125417470932007f, -3.788787603378296f, 0f, 0f, 0f, 0f, 0f)

    @Test
    fun `encodes byte for byte what toolkit payload encodes`() {
        for ((codec, hex) in tiesWant) assertEquals(hex, Hex.encode(PayloadCodec.encode(ties, codec)), codec.wireName)
        for ((codec, hex) in mixedWant) assertEquals(hex, Hex.encode(PayloadCodec.encode(mixed, codec)), codec.wireName)
    }

    @Test
    fun `int8 rounds half to even like numpy rint`() {
        // 2.5 -> 2 and -3.5 -> -4 (half-up rounding would give 3 and -3)
        val body = PayloadCodec.encode(ties, Codec.INT8).copyOfRange(10 + 8, 10 + 12)
        assertArrayEquals(byteArrayOf(127, 2, -4, 0), body)
    }

    @Test
    fun `decodes to the floats toolkit payload decodes`() {
        val fp32 = PayloadCodec.decode(Hex.decode(mixedWant.getValue(Codec.FP32)))
        assertArrayEquals(mixed.values, fp32.values)
        val int8 = PayloadCodec.decode(Hex.decode(mixedWant.getValue(Codec.INT8)))
        assertArrayEquals(mixedInt8Decoded, int8.values)
        val fp16 = PayloadCodec.decode(Hex.decode(mixedWant.getValue(Codec.FP16)))
        assertEquals(3, fp16.frames)
        assertEquals(5, fp16.dim)
        assertEquals(3.912109375f, fp16[1, 1])
        assertEquals(0.0012569427490234375f, fp16[0, 0])
    }

    @Test
    fun `message sizes follow the header and body layout`() {
        assertEquals(10 + 4 * 50 * 144, PayloadCodec.messageBytes(Codec.FP32, 50, 144))
        assertEquals(10 + 50 * 4 + 50 * 144, PayloadCodec.messageBytes(Codec.INT8, 50, 144))
        assertEquals(10 + 50 * 8 * 2, PayloadCodec.messageBytes(Codec.VQ, 50, 8, 16))
        val empty = PayloadCodec.encode(Embeddings(0, 144, FloatArray(0)), Codec.INT8)
        assertEquals(10, empty.size)
        assertEquals(0, PayloadCodec.decode(empty).frames)
    }

    @Test
    fun `refuses what cannot travel`() {
        val nan = Embeddings(1, 2, floatArrayOf(1f, Float.NaN))
        assertEquals("nonfinite", assertThrows(PayloadException::class.java) {
            PayloadCodec.encode(nan, Codec.INT8)
        }.reason)
        val big = Embeddings(1, 1, floatArrayOf(65505f))
        assertEquals("fp16_range", assertThrows(PayloadException::class.java) {
            PayloadCodec.encode(big, Codec.FP16)
        }.reason)
        assertEquals("too_large", assertThrows(PayloadException::class.java) {
            PayloadCodec.encode(Embeddings(0x10000, 0, FloatArray(0)), Codec.FP32)
        }.reason)
        assertEquals("needs_codebook", assertThrows(PayloadException::class.java) {
            PayloadCodec.encode(ties, Codec.VQ)
        }.reason)
    }

    @Test
    fun `malformed messages are typed errors`() {
        val good = PayloadCodec.encode(ties, Codec.INT8)
        fun reasonOf(message: ByteArray): String =
            assertThrows(PayloadException::class.java) { PayloadCodec.decode(message) }.reason
        assertEquals("short_header", reasonOf(good.copyOfRange(0, 9)))
        assertEquals("body_size", reasonOf(good.copyOfRange(0, good.size - 1)))
        assertEquals("body_size", reasonOf(good + byteArrayOf(0)))
        val badMagic = good.copyOf()
        badMagic[3] = 0
        val e = assertThrows(PayloadException::class.java) { PayloadCodec.decode(badMagic) }
        assertEquals("bad_magic", e.reason)
        assertTrue(e.message!!.endsWith("(got b'VPL\\x00')"), e.message)
        val badCodec = good.copyOf()
        badCodec[4] = 9
        assertEquals("unknown_codec", reasonOf(badCodec))
        val vqInV1 = good.copyOf()
        vqInV1[4] = 3
        assertEquals("codec_not_in_version", reasonOf(vqInV1))
        val aux = good.copyOf()
        aux[5] = 1
        assertEquals("nonzero_aux", reasonOf(aux))
        // an fp32 message whose body is a NaN
        val nan = PayloadCodec.encode(Embeddings(1, 1, floatArrayOf(1f)), Codec.FP32)
        nan[10] = 0; nan[11] = 0; nan[12] = 0xc0.toByte(); nan[13] = 0x7f
        assertEquals("nonfinite", reasonOf(nan))
    }

    @Test
    fun `python bytes repr quotes and escapes like python`() {
        assertEquals("b'VPL1'", PayloadCodec.pythonBytesRepr("VPL1".toByteArray()))
        assertEquals("b\"it's\"", PayloadCodec.pythonBytesRepr("it's".toByteArray()))
        assertEquals("b'\\x00\\xff\\n\\\\'", PayloadCodec.pythonBytesRepr(byteArrayOf(0, -1, 10, 92)))
    }
}
