package veil.core

import java.util.concurrent.CountDownLatch
import java.util.concurrent.LinkedBlockingQueue
import java.util.concurrent.TimeUnit
import org.json.JSONObject
import org.junit.jupiter.api.AfterAll
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertNotNull
import org.junit.jupiter.api.Assertions.assertNull
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.BeforeAll
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.TestInstance

/**
 * End to end against a real `veil serve` (the shipped model's suffix) on 127.0.0.1: the Kotlin client streams a
 * real session (the shipped prefix's outputs for a corpus utterance, from testvectors/sessions) over java.net.http
 * WebSocket and gets the transcripts the vectors record; every protocol scenario replayed through the Kotlin
 * transport gets its replies and error codes; refusals surface with their typed codes.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class LiveServerTest {
    private val ix = TestVectors.index
    private val token = ix.getString("test_token")
    private val manifest = ExportManifest.parse(TestFiles.resourceText("export-manifest.json"))
    private lateinit var server: VeilServer

    @BeforeAll
    fun startServer() {
        server = VeilServer.start(token)
    }

    @AfterAll
    fun stopServer() {
        server.close()
    }

    /** Records one session's events. */
    private class Recorder : SessionListener {
        val done = CountDownLatch(1)
        var ready: Message.Ready? = null
        val partials = ArrayList<Message.Partial>()
        var final: Message.Final? = null
        var failed: SessionError? = null

        override fun onReady(ready: Message.Ready) {
            this.ready = ready
        }

        override fun onPartial(partial: Message.Partial, roundTripMs: Double) {
            assertTrue(roundTripMs >= 0.0)
            partials.add(partial)
        }

        override fun onFinal(final: Message.Final, roundTripMs: Double) {
            this.final = final
            done.countDown()
        }

        override fun onFailed(error: SessionError) {
            failed = error
            done.countDown()
        }

        fun await(): Recorder {
            assertTrue(done.await(120, TimeUnit.SECONDS), "no FINAL or error within 120 s")
            return this
        }
    }

    private fun session(codec: String): JSONObject {
        val sessions = ix.getJSONArray("sessions")
        for (i in 0 until sessions.length()) if (sessions.getJSONObject(i).getString("codec") == codec) return sessions.getJSONObject(i)
        throw IllegalStateException("no $codec session in the vectors")
    }

    private fun expectedTexts(s: JSONObject): List<String> {
        val server = s.getJSONArray("server")
        return (1 until server.length()).map { server.getJSONObject(it).getJSONObject("fields").getString("text") }
    }

    /** Stream the session's prefix outputs as the app does: chunks sent as produced, END, then wait. */
    private fun stream(codec: Codec, trimLast: Boolean, hello: Message.Hello = Message.Hello.forExport(manifest, codec),
                       bearer: String? = token): Recorder {
        val rec = Recorder()
        val client = ProtocolClient(JdkWebSocketTransport(), server.url, hello, bearer, rec)
        client.start()
        val steps = session(codec.wireName).getJSONArray("client")
        val trimmer = FrameTrimmer(manifest.chunk.frameSamples)
        var seq = 0
        for (i in 0 until steps.length()) {
            val step = steps.getJSONObject(i)
            if (step.getJSONObject("fields").getString("type") != "CHUNK") continue
            val valid = step.getJSONObject("fields").getInt("valid_samples")
            val chunk = Chunk(seq, FloatArray(0), valid, valid < manifest.chunk.chunkSamples)
            val all = TestVectors.embeddings(step.getJSONObject("prefix_output"))
            val emb = if (trimLast) trimmer.validFrames(chunk, all) else all
            client.sendChunk(seq.toLong(), valid.toLong(), PayloadCodec.encode(emb, codec))
            seq += 1
        }
        client.end()
        return rec.await()
    }

    @Test
    fun `a real session streamed by the Kotlin client gets the vectors' partials and final, for every codec`() {
        for (name in listOf("int8", "fp16", "fp32")) {
            val s = session(name)
            val rec = stream(Codec.named(name), trimLast = false)
            assertNull(rec.failed, "$name: ${rec.failed}")
            assertNotNull(rec.ready)
            val texts = expectedTexts(s)
            assertEquals(texts.subList(0, texts.size - 1), rec.partials.map { it.text }, name)
            assertEquals(texts.last(), rec.final!!.text, name)
            assertEquals(ix.getJSONObject("chunker").getLong("valid_frames"), rec.final!!.frames)
            assertEquals(3L, rec.final!!.chunks)
        }
    }

    @Test
    fun `trimming the last chunk to its valid frames gives the same final`() {
        val rec = stream(Codec.INT8, trimLast = true)
        assertNull(rec.failed, "${rec.failed}")
        assertEquals(expectedTexts(session("int8")).last(), rec.final!!.text)
    }

    @Test
    fun `refusals reach the client with their typed codes`() {
        val wrongToken = stream(Codec.INT8, false, bearer = "not-the-token")
        assertEquals(4401, wrongToken.failed!!.code)  // the token travels in the HELLO: an ERROR frame
        val other = Message.Hello("035f61751056807040465decd0c5696d02388d160327c6d509c76f0ff7c6ad76", 4, Codec.INT8,
            16000, 32000, 640, 144)
        val unknown = stream(Codec.INT8, false, hello = other)
        assertEquals(4404, unknown.failed!!.code)
        assertEquals("unknown_prefix", unknown.failed!!.name)
    }

    /** Raw frames through the Kotlin transport, one reply read per frame, as a server test replays scenarios. */
    private fun exchange(frames: List<ByteArray>): Pair<List<Message>, Int?> {
        val events = LinkedBlockingQueue<Any>()
        val transport = JdkWebSocketTransport()
        transport.connect(ProtocolClient.websocketUrl(server.url), emptyMap(), object : TransportListener {
            override fun onOpen() {
                events.add("open")
            }

            override fun onBinary(bytes: ByteArray) {
                events.add(bytes)
            }

            override fun onText(text: String) {
                events.add("text")
            }

            override fun onClosed(code: Int, reason: String) {
                events.add(code)
            }

            override fun onFailure(failure: TransportFailure) {
                events.add(failure)
            }
        })
        assertEquals("open", events.poll(30, TimeUnit.SECONDS))
        val replies = ArrayList<Message>()
        var close: Int? = null
        for (f in frames) {
            assertTrue(transport.sendBinary(f))
            val e = events.poll(30, TimeUnit.SECONDS)
            if (e is ByteArray) {
                replies.add(Protocol.decode(e))
                if (replies.last() is Message.Error || replies.last() is Message.Final) break
            } else {
                if (e is Int) close = e
                break
            }
        }
        while (close == null) {
            val e = events.poll(30, TimeUnit.SECONDS) ?: break
            if (e is Int) close = e
            if (e is TransportFailure) break
        }
        transport.cancel()
        return Pair(replies, close)
    }

    @Test
    fun `every protocol scenario replayed through the Kotlin transport gets its replies and codes`() {
        val scenarios = ix.getJSONArray("scenarios")
        for (i in 0 until scenarios.length()) {
            val sc = scenarios.getJSONObject(i)
            val name = sc.getString("name")
            val send = sc.getJSONArray("send")
            val frames = (0 until send.length()).map { TestVectors.bytes(send.getJSONObject(it).getString("frame")) }
            val (replies, close) = exchange(frames)
            val expect = sc.getJSONArray("expect")
            val want = (0 until expect.length()).map { expect.getJSONObject(it) }
            assertEquals(want.map { it.getString("type") }, replies.map { it.type.name }, name)
            for ((r, e) in replies.zip(want)) {
                when (r) {
                    is Message.Error -> {
                        assertEquals(e.getInt("code"), r.code, name)
                        assertEquals(e.getInt("code"), close, name)
                    }
                    is Message.Partial -> {
                        assertEquals(e.getString("text"), r.text, name)
                        assertEquals(e.getInt("flags"), r.flags, name)
                    }
                    is Message.Final -> assertEquals(e.getString("text"), r.text, name)
                    else -> assertEquals(e.getString("type"), r.type.name, name)
                }
            }
            if (want.last().getString("type") == "FINAL") assertEquals(1000, close, name)
        }
    }
}
