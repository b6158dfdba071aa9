package veil.core

import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertFalse
import org.junit.jupiter.api.Assertions.assertNull
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test

class ChunkerTest {
    private fun ramp(n: Int): FloatArray = FloatArray(n) { (it + 1).toFloat() }

    @Test
    fun `an utterance becomes 2-s windows with a zero-padded tail and its true length`() {
        val chunks = Chunker.chunkUtterance(ramp(70000))
        assertEquals(listOf(32000, 32000, 6000), chunks.map { it.validSamples })
        assertEquals(listOf(false, false, true), chunks.map { it.isLast })
        val tail = chunks[2].samples
        assertEquals(32000, tail.size)
        assertEquals(64001f, tail[0])
        assertEquals(70000f, tail[5999])
        for (i in 6000 until 32000) assertEquals(0f, tail[i])
        assertEquals(0.375, chunks[2].validSeconds(16000))
    }

    @Test
    fun `like chunk_pcm, an exact multiple has no extra window and silence still gives one`() {
        val exact = Chunker.chunkUtterance(ramp(64000))
        assertEquals(listOf(32000, 32000), exact.map { it.validSamples })
        assertTrue(exact[1].isLast)
        val empty = Chunker.chunkUtterance(FloatArray(0))
        assertEquals(1, empty.size)
        assertEquals(0, empty[0].validSamples)
        assertEquals(32000, empty[0].samples.size)
    }

    @Test
    fun `streaming pushes of any size give the same windows`() {
        val pcm = ramp(100001)
        val chunker = Chunker()
        val got = ArrayList<Chunk>()
        var i = 0
        var step = 1
        while (i < pcm.size) {
            val n = Math.min(step, pcm.size - i)
            got.addAll(chunker.push(pcm, i, n))
            i += n
            step = step * 3 + 7
        }
        got.add(chunker.finish()!!)
        val whole = Chunker.chunkUtterance(pcm)
        assertEquals(whole.size, got.size)
        for (k in whole.indices) {
            assertEquals(k, got[k].index)
            assertTrue(whole[k].samples.contentEquals(got[k].samples))
            assertEquals(whole[k].validSamples, got[k].validSamples)
        }
        assertEquals(100001L, chunker.totalSamples)
    }

    @Test
    fun `16-bit PCM is scaled by 1 over 32768 as libsndfile reads it`() {
        val chunker = Chunker(4)
        val out = chunker.pushPcm16(shortArrayOf(-32768, 16384, 1, 32767))
        assertEquals(1, out.size)
        assertEquals(listOf(-1.0f, 0.5f, 1f / 32768f, 32767f / 32768f), out[0].samples.toList())
        assertNull(chunker.finish())
    }

    @Test
    fun `frames are trimmed to ceil of samples over frame samples`() {
        assertEquals(10, Chunker.framesFor(6000, 640))
        assertEquals(0, Chunker.framesFor(0, 640))
        assertEquals(1, Chunker.framesFor(1, 640))
        val trimmer = FrameTrimmer(640)
        val chunks = Chunker.chunkUtterance(ramp(70000))
        val kept = chunks.map { trimmer.validFrames(it, Embeddings(50, 2, FloatArray(100))).frames }
        assertEquals(listOf(50, 50, 10), kept)  // ceil(70000 / 640) = 110
        assertFalse(chunks[0].isLast)
    }
}
