package veil.demo

import android.Manifest
import android.os.SystemClock
import androidx.annotation.RequiresPermission
import okhttp3.OkHttpClient
import veil.core.ArtifactEntry
import veil.core.Chunk
import veil.core.Chunker
import veil.core.Codec
import veil.core.ExportFolder
import veil.core.FrameTrimmer
import veil.core.Message
import veil.core.PayloadEncoder
import veil.core.PcmRingBuffer
import veil.core.PrefixLoader
import veil.core.PrefixRunner
import veil.core.ProtocolClient
import veil.core.SessionError
import veil.core.SessionListener
import veil.core.VeilException

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
}

/**
 * One utterance, start to stop: microphone -> ring buffer -> 2-s chunks -> prefix (ExecuTorch or LiteRT) ->
 * payload encoder -> `veil serve` over a WebSocket -> partial and final text. What is sent is decided by
 * [PayloadEncoder] from the export's manifest: codebook indices for a vq bottleneck (any other `codec` is refused
 * before the microphone's audio reaches the network), noise added on the phone for a noise bottleneck.
 *
 * Capture starts first and never waits; the pipeline thread then verifies and loads the model (memory-mapped
 * from the app's files dir) while audio accumulates in the ring, connects, and works through the backlog. Each
 * full chunk is sent as soon as it is encoded (PARTIALs come back asynchronously); at Stop the zero-padded tail
 * goes with its true sample count and only its valid frames, then END. Everything that can fail (native library,
 * a bad export, the network, a refusal by the server) ends the session with a [SessionEvent.Failed] on screen.
 */
class StreamingSession(
    private val export: ExportFolder,
    private val artifact: ArtifactEntry,
    private val loader: PrefixLoader,
    private val threads: Int,
    private val codec: Codec,
    private val server: String,
    private val token: String?,
    private val http: OkHttpClient,
    private val events: (SessionEvent) -> Unit
) {
    private val ring = PcmRingBuffer()
    private val capture = AudioCapture(ring) { fail("microphone", it) }
    @Volatile
    private var failed = false
    private var pipeline: Thread? = null

    @RequiresPermission(Manifest.permission.RECORD_AUDIO)
    fun start() {
        capture.start()
        pipeline = Thread({ run() }, "veil-pipeline").also { it.start() }
    }

    /** Stop listening; the chunks still in the ring are processed, then END and FINAL. */
    fun stop() = capture.stop()

    /** Stop without a final transcript (the screen went away). */
    fun cancel() {
        failed = true
        capture.stop()
        pipeline?.interrupt()
    }

    private fun fail(reason: String, message: String) {
        if (failed) return
        failed = true
        events(SessionEvent.Failed(reason, message))
    }

    private fun run() {
        var prefix: PrefixRunner? = null
        var client: ProtocolClient? = null
        try {
            events(SessionEvent.Status("checking ${artifact.file} against manifest.json ..."))
            val file = export.verify(artifact)
            val encoder = PayloadEncoder.forExport(export, codec)
            events(SessionEvent.Status("loading ${artifact.displayName} ..."))
            val t0 = SystemClock.elapsedRealtimeNanos()
            prefix = loader.load(artifact, file, threads)
            events(SessionEvent.ModelLoaded(loader.runtimeName, (SystemClock.elapsedRealtimeNanos() - t0) / 1e6,
                prefix.details()))
            client = ProtocolClient(OkHttpTransport(http), server,
                encoder.hello(), token, Replies())
            client.start()
            stream(prefix, client, encoder)
        } catch (e: VeilException) {
            fail(e.reason, e.message ?: e.reason)
            client?.cancel()
        } catch (e: InterruptedException) {
            client?.cancel()
        } catch (e: Exception) {
            fail("internal", "${e.javaClass.simpleName}: ${e.message}")
            client?.cancel()
        } finally {
            prefix?.close()
        }
    }

    private fun stream(prefix: PrefixRunner, client: ProtocolClient, encoder: PayloadEncoder) {
        val chunk = export.manifest.chunk
        val chunker = Chunker(chunk.chunkSamples)
        val trimmer = FrameTrimmer(chunk.frameSamples)
        val block = ShortArray(chunk.sampleRate / 10)
        while (!failed) {
            val n = ring.read(block, block.size, 100)
            if (n < 0) break
            for (c in chunker.pushPcm16(block, 0, n)) send(prefix, client, encoder, trimmer, c, ring.available)
        }
        if (failed) return
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
        val t0 = SystemClock.elapsedRealtimeNanos()
        val embeddings = trimmer.validFrames(c, prefix.run(c.samples))
        val prefixMs = (SystemClock.elapsedRealtimeNanos() - t0) / 1e6
        val payload = encoder.encode(embeddings)
        client.sendChunk(c.index.toLong(), c.validSamples.toLong(), payload)
        val seconds = export.manifest.chunk.chunkSeconds
        events(SessionEvent.ChunkDone(c.index, prefixMs, prefixMs / 1e3 / seconds, payload.size,
            backlog * 1e3 / export.manifest.chunk.sampleRate))
    }

    private inner class Replies : SessionListener {
        override fun onReady(ready: Message.Ready) = events(SessionEvent.Ready(ready.sessionIdHex))

        override fun onPartial(partial: Message.Partial, roundTripMs: Double) =
            events(SessionEvent.Partial(partial.text, partial.seq, roundTripMs))

        override fun onFinal(final: Message.Final, roundTripMs: Double) =
            events(SessionEvent.Final(final.text, roundTripMs))

        override fun onFailed(error: SessionError) {
            fail(error.name, "server: ${error.code} ${error.name}: ${error.message}")
            capture.stop()
        }
    }
}
