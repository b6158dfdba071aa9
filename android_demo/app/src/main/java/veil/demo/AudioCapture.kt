package veil.demo

import android.Manifest
import android.media.AudioFormat
import android.media.AudioRecord
import android.media.MediaRecorder
import android.os.Process
import androidx.annotation.RequiresPermission
import veil.core.Chunker
import veil.core.PcmRingBuffer

/**
 * The microphone at 16 kHz mono 16-bit PCM (AudioRecord), read in 20 ms blocks on its own thread at audio
 * priority straight into a [PcmRingBuffer]. Capture never waits for inference: while the prefix model loads or a
 * chunk runs, audio piles up in the ring (60 s of it), so nothing said after Start is lost. 16-bit rather than
 * float: read(float[]) needs API 23 and some devices' HALs only deliver 16-bit anyway (sherpa-onnx does the same).
 */
class AudioCapture(private val ring: PcmRingBuffer, private val onError: (String) -> Unit) {
    @Volatile
    private var running = false
    private var record: AudioRecord? = null
    private var thread: Thread? = null

    @RequiresPermission(Manifest.permission.RECORD_AUDIO)
    fun start() {
        val minBytes = AudioRecord.getMinBufferSize(RATE, AudioFormat.CHANNEL_IN_MONO, AudioFormat.ENCODING_PCM_16BIT)
        if (minBytes <= 0) throw IllegalStateException("this device cannot record 16 kHz mono 16-bit PCM ($minBytes)")
        // VOICE_RECOGNITION: the input tuned for ASR (no AGC / noise suppression on most devices)
        val r = AudioRecord(MediaRecorder.AudioSource.VOICE_RECOGNITION, RATE, AudioFormat.CHANNEL_IN_MONO,
            AudioFormat.ENCODING_PCM_16BIT, maxOf(minBytes, RATE))  // >= 0.5 s of device buffer
        if (r.state != AudioRecord.STATE_INITIALIZED) {
            r.release()
            throw IllegalStateException("the microphone could not be opened (AudioRecord not initialized)")
        }
        record = r
        running = true
        r.startRecording()
        thread = Thread({
            Process.setThreadPriority(Process.THREAD_PRIORITY_URGENT_AUDIO)
            val block = ShortArray(RATE / 50)
            while (running) {
                val n = r.read(block, 0, block.size)
                if (n > 0) {
                    ring.write(block, 0, n)
                } else if (n < 0) {
                    onError("microphone read failed (AudioRecord error $n)")
                    break
                }
            }
        }, "veil-audio").also { it.start() }
    }

    /** Stop recording; what was captured stays in the ring for the reader, which then sees its end. */
    fun stop() {
        running = false
        thread?.join(1000)
        record?.let {
            it.stop()
            it.release()
        }
        record = null
        ring.close()
    }

    companion object {
        const val RATE = Chunker.SAMPLE_RATE
    }
}
