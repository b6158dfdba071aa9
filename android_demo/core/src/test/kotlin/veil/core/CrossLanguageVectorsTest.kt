package veil.core

import org.json.JSONArray
import org.json.JSONObject
import org.junit.jupiter.api.Assertions.assertArrayEquals
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertThrows
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test

/**
 * The Kotlin core against the vectors the Python reference wrote (testvectors/, docs/PROTOCOL.md §8): the same
 * bytes for the same inputs, the same floats bit for bit for the same bytes, and the same reason (and protocol
 * code) for every malformed payload and frame.
 */
class CrossLanguageVectorsTest {
    private val ix = TestVectors.index

    @Test
    fun `the chunker cuts the corpus snippet into the same windows and valid counts`() {
        val c = ix.getJSONObject("chunker")
        val pcm = TestVectors.f32(c.getJSONObject("pcm").getString("file"))
        assertEquals(c.getInt("samples"), pcm.size)
        val chunks = Chunker.chunkUtterance(pcm, c.getInt("chunk_samples"))
        val want = TestVectors.f32(c.getJSONObject("chunks").getString("file"))
        assertEquals(c.getInt("chunk_count"), chunks.size)
        val got = FloatArray(chunks.size * c.getInt("chunk_samples"))
        for (ch in chunks) System.arraycopy(ch.samples, 0, got, ch.index * ch.samples.size, ch.samples.size)
        assertTrue(TestVectors.sameBits(want, got))
        val valid = c.getJSONArray("valid_samples")
        assertEquals((0 until valid.length()).map { valid.getInt(it) }, chunks.map { it.validSamples })
        assertEquals(c.getInt("valid_frames"), Chunker.framesFor(pcm.size.toLong(), c.getInt("frame_samples")))
    }

    @Test
    fun `fp16 edge values round, encode and decode bit for bit`() {
        val fp16 = ix.getJSONObject("payload").getJSONObject("fp16")
        val values = fp16.getJSONArray("values")
        for (i in 0 until values.length()) {
            val v = values.getJSONObject(i)
            val input = TestVectors.floatOf(v.getString("input_f32_bits"))
            assertEquals(TestVectors.bitsOf(v.getString("fp16_bits")), Fp16.fromFloat(input), v.getString("what"))
            val decoded = Fp16.toFloat(TestVectors.bitsOf(v.getString("fp16_bits")))
            assertEquals(TestVectors.bitsOf(v.getString("decoded_f32_bits")),
                java.lang.Float.floatToRawIntBits(decoded), v.getString("what"))
        }
        checkCodecCase(fp16, Codec.FP16)
    }

    @Test
    fun `int8 with exact halves encodes and decodes bit for bit`() {
        val int8 = ix.getJSONObject("payload").getJSONObject("int8")
        checkCodecCase(int8, Codec.INT8)
        val message = TestVectors.bytes(int8.getString("message"))
        val frames = int8.getJSONObject("input").getJSONArray("shape").getInt(0)
        val dim = int8.getJSONObject("input").getJSONArray("shape").getInt(1)
        val scales = int8.getJSONArray("scales_f32_bits")
        val q = int8.getJSONArray("q")
        val buf = java.nio.ByteBuffer.wrap(message, 10, message.size - 10).order(java.nio.ByteOrder.LITTLE_ENDIAN)
        for (t in 0 until frames) assertEquals(TestVectors.bitsOf(scales.getString(t)), buf.int)
        for (t in 0 until frames) for (j in 0 until dim) assertEquals(q.getJSONArray(t).getInt(j), buf.get().toInt())
    }

    private fun checkCodecCase(case: JSONObject, codec: Codec) {
        val input = TestVectors.embeddings(case.getJSONObject("input"))
        val message = TestVectors.bytes(case.getString("message"))
        assertArrayEquals(message, PayloadCodec.encode(input, codec), "${codec.wireName} bytes")
        val decoded = PayloadCodec.decode(message)
        assertTrue(TestVectors.sameBits(TestVectors.embeddings(case.getJSONObject("decoded")).values, decoded.values),
            "${codec.wireName} decoded floats")
    }

    private fun codebook(spec: JSONObject): Codebook {
        val shape = spec.getJSONArray("shape")
        return Codebook(shape.getInt(0), shape.getInt(1), shape.getInt(2), TestVectors.f32(spec.getString("file")))
    }

    @Test
    fun `vq picks the same codewords, ties included, in 8- and 16-bit messages`() {
        val cases = ix.getJSONObject("payload").getJSONObject("vq").getJSONArray("cases")
        for (i in 0 until cases.length()) {
            val c = cases.getJSONObject(i)
            val cb = codebook(c.getJSONObject("codebook"))
            assertEquals(c.getInt("index_bits"), cb.indexBits)
            val z = TestVectors.embeddings(c.getJSONObject("z"))
            val want = ArrayList<Int>()
            val rows = c.getJSONArray("indices")
            for (t in 0 until rows.length()) for (g in 0 until rows.getJSONArray(t).length()) want.add(rows.getJSONArray(t).getInt(g))
            assertEquals(want, PayloadCodec.quantize(z, cb).toList(), c.getString("name"))
            val message = TestVectors.bytes(c.getString("message"))
            assertArrayEquals(message, PayloadCodec.encodeVq(z, cb), c.getString("name"))
            val words = PayloadCodec.decode(message, cb)
            assertTrue(TestVectors.sameBits(TestVectors.embeddings(c.getJSONObject("codewords")).values, words.values))
        }
    }

    @Test
    fun `every malformed payload is refused with the listed reason`() {
        val errors = ix.getJSONObject("payload").getJSONObject("errors")
        val cb = codebook(errors.getJSONObject("codebook"))
        val cases = errors.getJSONArray("cases")
        assertTrue(cases.length() >= 10)
        for (i in 0 until cases.length()) {
            val c = cases.getJSONObject(i)
            val e = assertThrows(PayloadException::class.java) {
                PayloadCodec.decode(TestVectors.bytes(c.getString("message")), cb)
            }
            assertEquals(c.getString("reason"), e.reason, c.getString("name"))
        }
    }

    /** A frame's fields as index.json writes them. */
    private fun fieldsOf(m: Message): Map<String, Any> = when (m) {
        is Message.Hello -> mapOf("type" to "HELLO", "checkpoint_sha256" to m.checkpointSha256,
            "split_layer" to m.splitLayer.toLong(), "codec" to m.codec.wireName, "sample_rate" to m.sampleRate,
            "chunk_samples" to m.chunkSamples, "frame_samples" to m.frameSamples, "dim" to m.dim.toLong(),
            "token" to m.token)
        is Message.Chunk -> mapOf("type" to "CHUNK", "seq" to m.seq, "valid_samples" to m.validSamples,
            "payload_bytes" to m.payload.size.toLong())
        is Message.End -> mapOf("type" to "END", "chunks" to m.chunks)
        is Message.Ready -> mapOf("type" to "READY", "session_id" to m.sessionIdHex,
            "max_message_bytes" to m.maxMessageBytes, "max_utterance_samples" to m.maxUtteranceSamples,
            "partial_window_frames" to m.partialWindowFrames, "idle_timeout_ms" to m.idleTimeoutMs)
        is Message.Partial -> mapOf("type" to "PARTIAL", "seq" to m.seq, "chunks" to m.chunks, "frames" to m.frames,
            "flags" to m.flags.toLong(), "text" to m.text)
        is Message.Final -> mapOf("type" to "FINAL", "chunks" to m.chunks, "frames" to m.frames, "text" to m.text)
        is Message.Error -> mapOf("type" to "ERROR", "code" to m.code.toLong(), "name" to m.name,
            "message" to m.message)
    }

    private fun jsonFields(o: JSONObject): Map<String, Any> {
        val out = HashMap<String, Any>()
        for (k in o.keys()) {
            val v = o.get(k)
            out[k] = if (v is Number) v.toLong() else v
        }
        return out
    }

    /** The message the fields describe (CHUNK: with the payload of the frame it came from). */
    private fun messageOf(f: JSONObject, frame: ByteArray): Message = when (f.getString("type")) {
        "HELLO" -> Message.Hello(f.getString("checkpoint_sha256"), f.getInt("split_layer"),
            Codec.named(f.getString("codec")), f.getLong("sample_rate"), f.getLong("chunk_samples"),
            f.getLong("frame_samples"), f.getInt("dim"), f.getString("token"))
        "CHUNK" -> Message.Chunk(f.getLong("seq"), f.getLong("valid_samples"), frame.copyOfRange(20, frame.size))
        "END" -> Message.End(f.getLong("chunks"))
        "READY" -> Message.Ready(Protocol.hexToBytes(f.getString("session_id"), 16, "session id"),
            f.getLong("max_message_bytes"), f.getLong("max_utterance_samples"), f.getLong("partial_window_frames"),
            f.getLong("idle_timeout_ms"))
        "PARTIAL" -> Message.Partial(f.getLong("seq"), f.getLong("chunks"), f.getLong("frames"), f.getInt("flags"),
            f.getString("text"))
        "FINAL" -> Message.Final(f.getLong("chunks"), f.getLong("frames"), f.getString("text"))
        else -> Message.Error(f.getInt("code"), f.getString("message"))
    }

    @Test
    fun `one frame of every type encodes from its fields and decodes to them`() {
        val cases = ix.getJSONObject("frames").getJSONArray("cases")
        assertEquals(7, cases.length())
        for (i in 0 until cases.length()) {
            val c = cases.getJSONObject(i)
            val frame = TestVectors.bytes(c.getString("frame"))
            val fields = c.getJSONObject("fields")
            assertEquals(jsonFields(fields), fieldsOf(Protocol.decode(frame)), c.getString("name"))
            assertArrayEquals(frame, Protocol.encode(messageOf(fields, frame)), c.getString("name"))
        }
    }

    @Test
    fun `every malformed frame is refused with the listed code and reason`() {
        val errors = ix.getJSONObject("frames").getJSONArray("errors")
        for (i in 0 until errors.length()) {
            val c = errors.getJSONObject(i)
            val e = assertThrows(ProtocolException::class.java) { Protocol.decode(TestVectors.bytes(c.getString("frame"))) }
            assertEquals(c.getInt("code"), e.code, c.getString("name"))
            assertEquals(c.getString("error"), e.error.name, c.getString("name"))
            assertEquals(c.getString("reason"), e.reason, c.getString("name"))
        }
        val concatenated = ix.getJSONObject("frames").getJSONObject("concatenated")
        val frames = Protocol.split(TestVectors.bytes(concatenated.getString("frames")))
        assertEquals(listOf(MessageType.HELLO, MessageType.END), frames.map { Protocol.decode(it).type })
        val cut = concatenated.getJSONObject("cut")
        val e = assertThrows(ProtocolException::class.java) { Protocol.split(TestVectors.bytes(cut.getString("frames"))) }
        assertEquals(cut.getString("reason"), e.reason)
        assertEquals(cut.getInt("code"), e.code)
    }

    @Test
    fun `a real session's client frames are what the Kotlin core encodes from the prefix outputs`() {
        val sessions = ix.getJSONArray("sessions")
        val manifest = ExportManifest.parse(TestFiles.resourceText("export-manifest.json"))
        for (s in 0 until sessions.length()) {
            val session = sessions.getJSONObject(s)
            val codec = Codec.named(session.getString("codec"))
            val client = session.getJSONArray("client")
            for (i in 0 until client.length()) {
                val step = client.getJSONObject(i)
                val frame = TestVectors.bytes(step.getString("frame"))
                val f = step.getJSONObject("fields")
                val mine = when (f.getString("type")) {
                    "HELLO" -> Message.Hello.forExport(manifest, codec, f.getString("token"))
                    "CHUNK" -> {
                        val emb = TestVectors.embeddings(step.getJSONObject("prefix_output"))
                        val payload = PayloadCodec.encode(emb, codec)
                        val decoded = TestVectors.embeddings(step.getJSONObject("decoded"))
                        assertTrue(TestVectors.sameBits(decoded.values, PayloadCodec.decode(payload).values))
                        Message.Chunk(f.getLong("seq"), f.getLong("valid_samples"), payload)
                    }
                    else -> Message.End(f.getLong("chunks"))
                }
                assertArrayEquals(frame, Protocol.encode(mine), "${codec.wireName} ${step.getString("frame")}")
            }
            val server: JSONArray = session.getJSONArray("server")
            for (i in 0 until server.length()) {
                val step = server.getJSONObject(i)
                assertEquals(jsonFields(step.getJSONObject("fields")),
                    fieldsOf(Protocol.decode(TestVectors.bytes(step.getString("frame")))))
            }
        }
    }
}
