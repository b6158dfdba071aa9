package veil.demo

import android.Manifest
import android.media.AudioFormat
import android.media.AudioRecord
import android.media.MediaRecorder
import android.os.Process
import androidx.annotation.RequiresPermission
import veil.core.Chunker
import veil.core.Microphone
import veil.core.PcmRingBuffer

/**
 * The microphone at 16 kHz mono 16-bit PCM (AudioRecord), read in 20 ms blocks on its own thread at audio
 * priority straight into a [PcmRingBuffer]. Capture never waits for inference: while the prefix model loads or a
 * chunk runs, audio piles up in the ring (60 s of it), so nothing said after Start is lost. 16-bit rather than
 * float: read(float[]) needs API 23 and some devices' HALs only deliver 16-bit anyway (sherpa-onnx does the same).
 *
 * [stop] is synchronized and idempotent: the core's SessionLifecycle calls it once, from whichever thread ended the
 * session (main on Stop, OkHttp's on a refusal, this reader's own on a read error), and a second call does nothing.
 */
class AudioCapture : Microphone {
    private val lock = Any()
    @Volatile
    private var running = false
    private var record: AudioRecord? = null
    private var thread: Thread? = null
    private var ring: PcmRingBuffer? = null

    @RequiresPermission(Manifest.permission.RECORD_AUDIO)
    override fun start(ring: PcmRingBuffer, onError: (String) -> Unit) = synchronized(lock) {
        check(record == null) { "the microphone is already recording" }
        val minBytes = AudioRecord.getMinBufferSize(RATE, AudioFormat.CHANNEL_IN_MONO, AudioFormat.ENCODING_PCM_16BIT)
        if (minBytes <= 0) throw IllegalStateException("this device cannot record 16 kHz mono 16-bit PCM ($minBytes)")
        // VOICE_RECOGNITION: the input tuned for ASR (no AGC / noise suppression on most devices)
        val r = AudioRecord(MediaRecorder.AudioSource.VOICE_RECOGNITION, RATE, AudioFormat.CHANNEL_IN_MONO,
            AudioFormat.ENCODING_PCM_16BIT, maxOf(minBytes, RATE))  // >= 0.5 s of device buffer
        if (r.state != AudioRecord.STATE_INITIALIZED) {
            r.release()
            throw IllegalStateException("the microphone could not be opened (AudioRecord not initialized)")
        }
        try {
            r.startRecording()
        } catch (e: IllegalStateException) {
            r.release()
            throw e
        }
        if (r.recordingState != AudioRecord.RECORDSTATE_RECORDING) {
            r.release()
            throw IllegalStateException("the microphone is in use by another app (AudioRecord did not start)")
        }
        record = r
        this.ring = ring
        running = true
        thread = Thread({
            Process.setThreadPriority(Process.THREAD_PRIORITY_URGENT_AUDIO)
            val block = ShortArray(RATE / 50)
            while (running) {
                val n = r.read(block, 0, block.size)
                if (n > 0) {
                    ring.write(block, 0, n)
                } else if (n < 0) {
                    if (running) onError("microphone read failed (AudioRecord error $n)")
                    break
                }
            }
        }, "veil-audio").also { it.start() }
    }

    /** Stop recording and release the recorder; what was captured stays in the ring, whose reader then sees its end. */
    override fun stop() {
        val (r, t, ring) = synchronized(lock) {
            running = false
            val taken = Triple(record, thread, ring)
            record = null
            thread = null
            this.ring = null
            taken
        }
        if (t != null && t !== Thread.currentThread()) t.join(1000)
        if (r != null) {
            try {
                r.stop()
            } catch (e: IllegalStateException) {
                // already stopped by the system (another app took the microphone): release it all the same
            }
            r.release()
        }
        ring?.close()
    }

    companion object {
        const val RATE = Chunker.SAMPLE_RATE
    }
}
