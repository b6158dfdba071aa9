package veil.core

/**
 * One fixed-size window of 16 kHz PCM for the prefix: `samples` always holds `chunkSamples` floats; the last
 * chunk of an utterance is zero-padded and `validSamples` says how many of its samples are real audio.
 */
class Chunk(val index: Int, val samples: FloatArray, val validSamples: Int, val isLast: Boolean) {
    /** Seconds of real audio in this chunk at `sampleRate`. */
    fun validSeconds(sampleRate: Int): Double = validSamples.toDouble() / sampleRate
}

/**
 * Cuts a stream of mono PCM into the prefix's fixed windows (2 s = 32 000 samples at 16 kHz by default), as
 * `toolkit.exporting.calibration.chunk_pcm` does for a whole utterance: full windows as soon as they fill, and at
 * the end one zero-padded window carrying its true sample count (an empty utterance still gives one window of
 * zeros with 0 valid samples, like chunk_pcm). Not thread-safe: one producer feeds it.
 */
class Chunker @JvmOverloads constructor(val chunkSamples: Int = DEFAULT_CHUNK_SAMPLES) {
    private var buffer = FloatArray(chunkSamples)
    private var filled = 0
    private var emitted = 0
    private var finished = false

    /** Samples pushed so far. */
    var totalSamples: Long = 0
        private set

    init {
        require(chunkSamples > 0) { "chunk length must be positive, got $chunkSamples samples" }
    }

    /** Append float PCM in [-1, 1]; returns the windows that filled (possibly none). */
    @JvmOverloads
    fun push(pcm: FloatArray, offset: Int = 0, length: Int = pcm.size - offset): List<Chunk> {
        check(!finished) { "chunker already finished" }
        require(offset >= 0 && length >= 0 && offset + length <= pcm.size) { "push($offset, $length) out of range" }
        val out = ArrayList<Chunk>()
        var i = offset
        val end = offset + length
        while (i < end) {
            val n = Math.min(end - i, chunkSamples - filled)
            System.arraycopy(pcm, i, buffer, filled, n)
            filled += n
            i += n
            if (filled == chunkSamples) out.add(emit(chunkSamples, false))
        }
        totalSamples += length
        return out
    }

    /** Append 16-bit PCM (AudioRecord's ENCODING_PCM_16BIT), scaled by 1/32768 as libsndfile reads it. */
    @JvmOverloads
    fun pushPcm16(pcm: ShortArray, offset: Int = 0, length: Int = pcm.size - offset): List<Chunk> {
        val f = FloatArray(length)
        for (i in 0 until length) f[i] = pcm[offset + i] / PCM16_SCALE
        return push(f)
    }

    /**
     * End of the utterance: the zero-padded last window with its true sample count, or null when the audio
     * ended exactly on a window boundary (and at least one window was emitted).
     */
    fun finish(): Chunk? {
        check(!finished) { "chunker already finished" }
        finished = true
        if (filled == 0 && emitted > 0) return null
        val valid = filled
        for (i in filled until chunkSamples) buffer[i] = 0.0f
        return emit(valid, true)
    }

    private fun emit(valid: Int, last: Boolean): Chunk {
        val chunk = Chunk(emitted, buffer, valid, last)
        emitted += 1
        buffer = FloatArray(chunkSamples)
        filled = 0
        return chunk
    }

    companion object {
        const val SAMPLE_RATE = 16000
        const val DEFAULT_CHUNK_SAMPLES = 32000
        const val PCM16_SCALE = 32768.0f

        /** A whole utterance -> its windows, the last one zero-padded (chunk_pcm). */
        @JvmStatic
        @JvmOverloads
        fun chunkUtterance(pcm: FloatArray, chunkSamples: Int = DEFAULT_CHUNK_SAMPLES): List<Chunk> {
            val chunker = Chunker(chunkSamples)
            val out = ArrayList<Chunk>(chunker.push(pcm))
            val last = chunker.finish()
            if (last != null) out.add(last)
            if (out.isNotEmpty() && !out[out.size - 1].isLast) {
                val end = out[out.size - 1]
                out[out.size - 1] = Chunk(end.index, end.samples, end.validSamples, true)
            }
            return out
        }

        /** Valid embedding frames of `samples` of audio: ceil(samples / frameSamples), as frames_for. */
        @JvmStatic
        fun framesFor(samples: Long, frameSamples: Int): Int {
            require(frameSamples > 0) { "frame length must be positive, got $frameSamples" }
            return ((samples + frameSamples - 1) / frameSamples).toInt()
        }
    }
}

/**
 * Trims the prefix's per-chunk frames to the utterance's true length (ceil(total samples / frame samples) over the
 * concatenated chunks), so that the zero padding of the last chunk never reaches the cloud.
 */
class FrameTrimmer(val frameSamples: Int) {
    private var sentFrames = 0L
    private var audioSamples = 0L

    /** The frames of `chunk`'s embeddings that carry audio. */
    fun validFrames(chunk: Chunk, embeddings: Embeddings): Embeddings {
        audioSamples += chunk.validSamples
        if (!chunk.isLast) {
            sentFrames += embeddings.frames
            return embeddings
        }
        val keep = Math.max(0L, Math.min(embeddings.frames.toLong(),
            Chunker.framesFor(audioSamples, frameSamples) - sentFrames)).toInt()
        sentFrames += keep
        return embeddings.firstFrames(keep)
    }
}
