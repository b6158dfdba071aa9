package veil.core

/**
 * The microphone as the pipeline needs it: 16 kHz mono 16-bit PCM written into a ring. The Android app implements
 * it over AudioRecord; JVM tests over a WAV file's samples.
 */
interface Microphone {
    /**
     * Open the microphone and record into `ring` on a thread of its own. Throws when it cannot open (releasing what it
     * opened); a failure later (a read error) goes to `onError`, once.
     */
    fun start(ring: PcmRingBuffer, onError: (String) -> Unit)

    /** Stop recording and release the recorder. Idempotent, safe from any thread, never throws. */
    fun stop()
}

/** What a streaming session reports to the screen, in order. */
sealed class SessionEvent {
    class Status(val text: String) : SessionEvent()
    class ModelLoaded(val runtime: String, val loadMs: Double, val details: Map<String, Any?>) : SessionEvent()
    class Ready(val sessionId: String) : SessionEvent()
    /** One chunk through the prefix: its latency, real-time factor, payload size and how far behind live it ran. */
    class ChunkDone(val seq: Int, val prefixMs: Double, val rtf: Double, val payloadBytes: Int, val behindMs: Double) :
        SessionEvent()
    class Partial(val text: String, val seq: Long, val roundTripMs: Double) : SessionEvent()
    class Final(val text: String, val roundTripMs: Double) : SessionEvent()
    class Failed(val reason: String, val message: String) : SessionEvent()
    /** The session ended without a transcript because the system took the microphone or the screen went away. */
    class Interrupted(val message: String) : SessionEvent()
}

/**
 * One utterance, start to stop: microphone -> ring buffer -> 2-s chunks -> prefix -> payload encoder -> `veil serve`
 * over a WebSocket -> partial and final text, with the microphone and the socket released on every path by a
 * [SessionLifecycle]. What is sent is decided by [PayloadEncoder] from the export's manifest: codebook indices for a
 * vq bottleneck (any other `codec` is refused before the microphone's audio reaches the network), noise added on the
 * phone for a noise bottleneck.
 *
 * [start] checks the server address, opens the microphone and returns; the pipeline thread then verifies and loads
 * the model while audio accumulates in the ring, connects, and works through the backlog. Each full chunk is sent as
 * soon as it is encoded (PARTIALs come back asynchronously); at [stop] the microphone is released and the
 * zero-padded tail goes with its true sample count and only its valid frames, then END. Everything that can fail (the
 * server address, the microphone, a bad export, the runtime, the network, a refusal by the server) ends the session
 * with one [SessionEvent.Failed]; nothing here throws to the caller.
 */
class StreamingPipeline(
    private val export: ExportFolder,
    private val artifact: ArtifactEntry,
    private val loader: PrefixLoader,
    private val threads: Int,
    private val codec: Codec,
    private val server: String,
    private val token: String?,
    /** A new, unconnected WebSocket transport (OkHttp on Android). */
    private val transports: () -> Transport,
    private val microphone: Microphone,
    private val events: (SessionEvent) -> Unit
) {
    private val ring = PcmRingBuffer()
    private val lock = Any()
    private var client: ProtocolClient? = null
    private var pipeline: Thread? = null
    val lifecycle = SessionLifecycle(Releaser())

    /** Check the server address, open the microphone and start the pipeline thread. */
    fun start() {
        val url = try {
            ProtocolClient.websocketUrl(server)
        } catch (e: IllegalArgumentException) {
            fail("bad_server", "${e.message}")
            return
        }
        if (!lifecycle.on(LifecycleEvent.START)) return
        try {
            microphone.start(ring) { fail("microphone", it) }
        } catch (e: SecurityException) {
            fail("permission", "microphone permission is missing")
            return
        } catch (e: VeilException) {
            fail(e.reason, e.message ?: e.reason)
            return
        } catch (e: RuntimeException) {
            fail("microphone", "${e.javaClass.simpleName}: ${e.message}")
            return
        }
        val t = Thread(Runnable { run(url) }, "veil-pipeline")
        synchronized(lock) { pipeline = t }
        t.start()
    }

    /** Stop listening; the chunks still in the ring are processed, then END and FINAL. */
    fun stop() {
        lifecycle.on(LifecycleEvent.STOP)
    }

    /** End the session without a transcript: the system took the microphone, or the screen went away. */
    fun interrupt(why: String) {
        if (lifecycle.on(LifecycleEvent.INTERRUPT)) events(SessionEvent.Interrupted(why))
        synchronized(lock) { pipeline }?.interrupt()
    }

    /** Wait up to `millis` for the pipeline thread to finish (tests, and a bench that must not overlap sessions). */
    fun join(millis: Long) {
        synchronized(lock) { pipeline }?.join(millis)
    }

    private fun fail(reason: String, message: String) {
        if (lifecycle.on(LifecycleEvent.FAIL)) events(SessionEvent.Failed(reason, message))
    }

    private fun run(url: String) {
        var prefix: PrefixRunner? = null
        try {
            events(SessionEvent.Status("checking ${artifact.file} against manifest.json ..."))
            val file = export.verify(artifact)
            val encoder = PayloadEncoder.forExport(export, codec)
            events(SessionEvent.Status("loading ${artifact.displayName} ..."))
            loader.prepareRuntime()
            val t0 = System.nanoTime()
            prefix = loader.load(artifact, file, threads)
            events(SessionEvent.ModelLoaded(loader.runtimeName, (System.nanoTime() - t0) / 1e6, prefix.details()))
            if (lifecycle.state().terminal) return
            // the token travels in the HELLO, never in a header (URLSession reserves Authorization)
            val c = ProtocolClient(transports(), url, encoder.hello(token ?: ""), null, Replies())
            synchronized(lock) { client = c }
            lifecycle.on(LifecycleEvent.CONNECTED)
            if (lifecycle.state().terminal) return  // the socket was released at once; never opened
            c.start()
            stream(prefix, c, encoder)
        } catch (e: VeilException) {
            fail(e.reason, e.message ?: e.reason)
        } catch (e: InterruptedException) {
            interrupt("the session was cancelled")
        } catch (e: Exception) {
            fail("internal", "${e.javaClass.simpleName}: ${e.message}")
        } finally {
            prefix?.close()
        }
    }

    private fun stream(prefix: PrefixRunner, client: ProtocolClient, encoder: PayloadEncoder) {
        val chunk = export.manifest.chunk
        val chunker = Chunker(chunk.chunkSamples)
        val trimmer = FrameTrimmer(chunk.frameSamples)
        val block = ShortArray(chunk.sampleRate / 10)
        while (!lifecycle.state().terminal) {
            val n = ring.read(block, block.size, 100)
            if (n < 0) break
            for (c in chunker.pushPcm16(block, 0, n)) send(prefix, client, encoder, trimmer, c, ring.available)
        }
        if (lifecycle.state().terminal) return
        chunker.finish()?.let { send(prefix, client, encoder, trimmer, it, 0) }
        if (ring.droppedSamples > 0) {
            events(SessionEvent.Status("the prefix fell ${ring.droppedSamples} samples behind the microphone; " +
                "they were dropped"))
        }
        val seconds = chunker.totalSamples.toDouble() / chunk.sampleRate
        events(SessionEvent.Status(String.format(java.util.Locale.ROOT, "sent %.1f s of audio; waiting for the final ...",
            seconds)))
        client.end()
    }

    private fun send(prefix: PrefixRunner, client: ProtocolClient, encoder: PayloadEncoder, trimmer: FrameTrimmer,
                     c: Chunk, backlog: Int) {
        val t0 = System.nanoTime()
        val embeddings = trimmer.validFrames(c, prefix.run(c.samples))
        val prefixMs = (System.nanoTime() - t0) / 1e6
        val payload = encoder.encode(embeddings)
        client.sendChunk(c.index.toLong(), c.validSamples.toLong(), payload)
        val spec = export.manifest.chunk
        events(SessionEvent.ChunkDone(c.index, prefixMs, prefixMs / 1e3 / spec.chunkSeconds, payload.size,
            backlog * 1e3 / spec.sampleRate))
    }

    private inner class Releaser : SessionReleaser {
        override fun release(resource: SessionResource) {
            when (resource) {
                SessionResource.MICROPHONE -> {
                    microphone.stop()
                    ring.close()  // the reader sees the end of the audio whatever the microphone did
                }
                SessionResource.SOCKET -> synchronized(lock) { client }?.cancel()
            }
        }
    }

    private inner class Replies : SessionListener {
        override fun onReady(ready: Message.Ready) {
            lifecycle.on(LifecycleEvent.READY)
            events(SessionEvent.Ready(ready.sessionIdHex))
        }

        override fun onPartial(partial: Message.Partial, roundTripMs: Double) =
            events(SessionEvent.Partial(partial.text, partial.seq, roundTripMs))

        override fun onFinal(final: Message.Final, roundTripMs: Double) {
            lifecycle.on(LifecycleEvent.FINAL)  // the client closes the socket (1000) when this returns
            events(SessionEvent.Final(final.text, roundTripMs))
        }

        override fun onFailed(error: SessionError) = fail(error.name, "server: ${error.code} ${error.name}: ${error.message}")
    }
}
