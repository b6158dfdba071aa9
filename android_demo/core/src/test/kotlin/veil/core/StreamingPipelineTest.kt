package veil.core

import java.io.File
import java.util.concurrent.CountDownLatch
import java.util.concurrent.LinkedBlockingQueue
import java.util.concurrent.TimeUnit
import java.util.concurrent.atomic.AtomicInteger
import org.json.JSONObject
import org.junit.jupiter.api.AfterAll
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.BeforeAll
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.TestInstance

/**
 * The app's session pipeline without Android: a real `veil serve` on 127.0.0.1, the corpus snippet of the vectors as
 * the microphone's audio, the JVM stand-in prefix, java.net.http as the WebSocket. Every ending (a final, a bad
 * address, a bad export, a microphone that fails to open or fails later, a refused token, an interruption before
 * the socket) releases the microphone once and leaves no socket open.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class StreamingPipelineTest {
    private val token = TestVectors.index.getString("test_token")
    private lateinit var server: VeilServer

    @BeforeAll
    fun startServer() {
        server = VeilServer.start(token)
    }

    @AfterAll
    fun stopServer() {
        server.close()
    }

    /** The vectors' corpus snippet as 16-bit PCM, written into the ring at once; fails or refuses on demand. */
    private class FileMicrophone(private val refuse: RuntimeException? = null) : Microphone {
        val starts = AtomicInteger()
        val stops = AtomicInteger()
        private var onError: ((String) -> Unit)? = null

        override fun start(ring: PcmRingBuffer, onError: (String) -> Unit) {
            starts.incrementAndGet()
            if (refuse != null) throw refuse
            this.onError = onError
            val pcm = TestVectors.f32(TestVectors.index.getJSONObject("chunker").getJSONObject("pcm").getString("file"))
            val samples = ShortArray(pcm.size) { Math.max(-32768f, Math.min(32767f, pcm[it] * 32768f)).toInt().toShort() }
            ring.write(samples)
        }

        /** A read error, as AudioRecord.read returning a negative count. */
        fun readError() = onError!!("microphone read failed (AudioRecord error -3)")

        override fun stop() {
            stops.incrementAndGet()
        }
    }

    /** java.net.http, counting how the pipeline lets the socket go. */
    private class CountingTransport : Transport {
        private val inner = JdkWebSocketTransport()
        val cancels = AtomicInteger()
        val closes = AtomicInteger()

        override fun connect(url: String, headers: Map<String, String>, listener: TransportListener) {
            assertTrue(headers.isEmpty(), "the token travels in the HELLO, not in a header: $headers")
            inner.connect(url, headers, listener)
        }

        override fun sendBinary(bytes: ByteArray): Boolean = inner.sendBinary(bytes)

        override fun close(code: Int, reason: String) {
            closes.incrementAndGet()
            inner.close(code, reason)
        }

        override fun cancel() {
            cancels.incrementAndGet()
            inner.cancel()
        }
    }

    /** One pipeline over an export folder with the stand-in runtime; its events in a queue. */
    private inner class Run(val mic: FileMicrophone = FileMicrophone(), address: String = server.url,
                            bearer: String = token, loader: PrefixLoader = JvmFramePrefix.Loader(),
                            dir: File = exportFolder()) {
        val events = LinkedBlockingQueue<SessionEvent>()
        val transports = ArrayList<CountingTransport>()
        val export = ExportFolder.open(dir)
        val pipeline = StreamingPipeline(export, export.manifest.artifact("executorch"), loader, 1, Codec.INT8,
            address, bearer, { CountingTransport().also { synchronized(transports) { transports.add(it) } } }, mic,
            { events.add(it) })

        fun <T : SessionEvent> await(type: Class<T>): T {
            while (true) {
                val e = events.poll(120, TimeUnit.SECONDS) ?: throw AssertionError("no ${type.simpleName} within 120 s")
                if (type.isInstance(e)) return type.cast(e)
                if (e is SessionEvent.Failed && type != SessionEvent.Failed::class.java) {
                    throw AssertionError("failed: ${e.reason}: ${e.message}")
                }
            }
        }

        /** After the end: the microphone stopped once, every socket cancelled or closed, nothing held. */
        fun assertReleased(state: SessionState) {
            pipeline.join(30_000)
            assertEquals(state, pipeline.lifecycle.state())
            assertEquals(1, mic.stops.get(), "microphone stops")
            for (t in synchronized(transports) { ArrayList(transports) }) {
                // after FINAL the client closes (1000) on the transport's thread once the listener returns
                val deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10)
                while (t.cancels.get() + t.closes.get() == 0 && System.nanoTime() < deadline) Thread.sleep(10)
                assertTrue(t.cancels.get() + t.closes.get() >= 1, "the socket was let go")
            }
            for (r in SessionResource.values()) assertTrue(!pipeline.lifecycle.holds(r), "$r still held")
        }
    }

    /** An export folder of the vectors' model's manifest whose artifact files match their sizes and digests. */
    private fun exportFolder(): File = TestFiles.exportFolder(TestFiles.resourceText("export-manifest.json"))

    @Test
    fun `a stopped session gets its final, then the microphone and the socket are released`() {
        val run = Run()
        run.pipeline.start()
        run.await(SessionEvent.Ready::class.java)
        run.pipeline.stop()
        assertEquals(1, run.mic.stops.get(), "Stop releases the microphone at once")
        run.await(SessionEvent.Final::class.java)
        run.assertReleased(SessionState.FINISHED)
        assertEquals(1, run.transports.size)
        assertEquals(1, run.transports[0].closes.get(), "close 1000 after FINAL")
    }

    @Test
    fun `a bad server address fails before the microphone opens`() {
        val run = Run(address = "192.168.1.10:8000")
        run.pipeline.start()
        val failed = run.await(SessionEvent.Failed::class.java)
        assertEquals("bad_server", failed.reason)
        assertEquals(0, run.mic.starts.get())
        assertEquals(SessionState.FAILED, run.pipeline.lifecycle.state())
    }

    @Test
    fun `a failed verify releases the microphone and never connects`() {
        val dir = exportFolder()
        File(dir, ExportFolder.open(dir).manifest.artifact("executorch").file).appendBytes(byteArrayOf(1))
        val run = Run(dir = dir)
        run.pipeline.start()
        assertEquals("size_mismatch", run.await(SessionEvent.Failed::class.java).reason)
        run.assertReleased(SessionState.FAILED)
        assertTrue(run.transports.isEmpty())
    }

    @Test
    fun `a microphone that cannot open or fails later releases the microphone and the socket`() {
        val refused = Run(mic = FileMicrophone(IllegalStateException("the microphone could not be opened")))
        refused.pipeline.start()
        assertEquals("microphone", refused.await(SessionEvent.Failed::class.java).reason)
        refused.assertReleased(SessionState.FAILED)
        val denied = Run(mic = FileMicrophone(SecurityException("RECORD_AUDIO")))
        denied.pipeline.start()
        assertEquals("permission", denied.await(SessionEvent.Failed::class.java).reason)
        denied.assertReleased(SessionState.FAILED)

        val broken = Run()
        broken.pipeline.start()
        broken.await(SessionEvent.Ready::class.java)
        broken.mic.readError()
        assertEquals("microphone", broken.await(SessionEvent.Failed::class.java).reason)
        broken.assertReleased(SessionState.FAILED)
        assertEquals(1, broken.transports[0].cancels.get())
    }

    @Test
    fun `a refused token releases the microphone and the socket`() {
        val run = Run(bearer = "not-the-token")
        run.pipeline.start()
        val failed = run.await(SessionEvent.Failed::class.java)
        assertEquals("unauthorized", failed.reason, failed.message)
        run.assertReleased(SessionState.FAILED)
    }

    @Test
    fun `an interruption while the model loads releases the microphone and never opens a socket`() {
        val loading = CountDownLatch(1)
        val release = CountDownLatch(1)
        val slow = object : PrefixLoader {
            private val inner = JvmFramePrefix.Loader()
            override val backend: String = inner.backend
            override val runtimeName: String = inner.runtimeName

            override fun load(artifact: ArtifactEntry, file: File, threads: Int): PrefixRunner {
                loading.countDown()
                release.await(30, TimeUnit.SECONDS)
                return inner.load(artifact, file, threads)
            }
        }
        val run = Run(loader = slow)
        run.pipeline.start()
        assertTrue(loading.await(30, TimeUnit.SECONDS))
        run.pipeline.interrupt("a phone call took the microphone")
        release.countDown()
        assertEquals("a phone call took the microphone", run.await(SessionEvent.Interrupted::class.java).message)
        run.assertReleased(SessionState.INTERRUPTED)
        assertTrue(run.transports.isEmpty())
    }
}
