package veil.core

import java.io.File
import org.json.JSONArray
import org.json.JSONObject
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertNull
import org.junit.jupiter.api.Assertions.assertThrows
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test

/** export-manifest.json is the manifest `export-prefix --target android` wrote for the shipped model. */
class ManifestTest {
    private val text = TestFiles.resourceText("export-manifest.json")

    @Test
    fun `reads the geometry, identity and artifacts of a real export`() {
        val m = ExportManifest.parse(text)
        assertEquals("veil-export/1", m.format)
        assertEquals(4, m.splitLayer)
        assertEquals(16000, m.chunk.sampleRate)
        assertEquals(32000, m.chunk.chunkSamples)
        assertEquals(640, m.chunk.frameSamples)
        assertEquals(50, m.chunk.framesPerChunk)
        assertEquals(2.0, m.chunk.chunkSeconds)
        assertEquals(144, m.embeddingDim)
        assertEquals(listOf(1, 50, 144), m.output.shape)
        assertEquals("fc5f61751056807040465decd0c5696d02388d160327c6d509c76f0ff7c6ad76", m.checkpointSha256)
        val et = m.artifact("executorch")
        assertEquals("prefix-k4-int8-static.pte", et.file)
        assertEquals("XnnpackBackend", et.delegateBackend)
        assertEquals("pass", et.parityVerdict)
        assertEquals(3346624L, et.sizeBytes)
        val lite = m.artifact("litert", "int8-static")
        assertNull(lite.delegateBackend)
        assertEquals("serving_default", lite.raw.getString("signature"))
        assertEquals("no_artifact", assertThrows(ManifestException::class.java) { m.artifact("coreml") }.reason)
    }

    @Test
    fun `unknown keys are tolerated and kept`() {
        val o = JSONObject(text)
        o.put("future_key", JSONObject().put("x", 1))
        o.getJSONObject("input").put("channels", 1)
        o.getJSONArray("artifacts").getJSONObject(0).put("runtime_hints", JSONArray(listOf("mmap")))
        val m = ExportManifest.parse(o.toString())
        assertEquals(1, m.raw.getJSONObject("future_key").getInt("x"))
        assertEquals(2, m.artifacts.size)
    }

    private fun broken(edit: (JSONObject) -> Unit): ManifestException {
        val o = JSONObject(text)
        edit(o)
        return assertThrows(ManifestException::class.java) { ExportManifest.parse(o.toString(), "x/manifest.json") }
    }

    @Test
    fun `missing, mistyped and contradicting keys are named`() {
        var e = broken { it.getJSONObject("input").remove("chunk_samples") }
        assertEquals("missing", e.reason)
        assertEquals("x/manifest.json: input.chunk_samples is missing, expected a positive integer", e.message)
        e = broken { it.getJSONObject("output").put("embedding_dim", "144") }
        assertEquals("type", e.reason)
        assertEquals("x/manifest.json: output.embedding_dim is the string '144', expected a positive integer", e.message)
        e = broken { it.getJSONObject("output").put("frames_per_chunk", 49) }
        assertEquals("inconsistent", e.reason)
        e = broken { it.getJSONArray("artifacts").getJSONObject(1).getJSONObject("output").put("shape", JSONArray(listOf(1, 50, 128))) }
        assertEquals("inconsistent", e.reason)
        assertTrue(e.message!!.contains("artifacts[1] (prefix-k4-int8-static.tflite)"), e.message)
        e = broken { it.put("format", "veil-export/2") }
        assertEquals("format", e.reason)
        e = broken { it.put("artifacts", JSONArray()) }
        assertEquals("no_artifact", e.reason)
        e = broken { it.getJSONArray("artifacts").getJSONObject(0).put("file", "../../etc/passwd") }
        assertEquals("unsafe_path", e.reason)
        e = broken { it.getJSONArray("artifacts").getJSONObject(0).put("sha256", "XYZ") }
        assertEquals("type", e.reason)
        e = broken { it.getJSONObject("input").put("dtype", "int16") }
        assertEquals("dtype", e.reason)
        assertEquals("not_json", assertThrows(ManifestException::class.java) { ExportManifest.parse("{\"format\": ") }.reason)
    }

    /** An export folder whose manifest describes two small real files. */
    private fun folder(): File {
        val dir = TestFiles.tempDir("veil-export")
        val o = JSONObject(text)
        val list = o.getJSONArray("artifacts")
        for (i in 0 until list.length()) {
            val entry = list.getJSONObject(i)
            val f = File(dir, entry.getString("file"))
            f.writeBytes(ByteArray(1000 + i) { (it * 7 + i).toByte() })
            entry.put("size_bytes", f.length())
            entry.put("sha256", ExportFolder.sha256Hex(f))
        }
        File(dir, "manifest.json").writeText(o.toString(1))
        return dir
    }

    @Test
    fun `an export folder is verified by size and sha256 before use`() {
        val dir = folder()
        val export = ExportFolder.open(dir)
        val et = export.manifest.artifact("executorch")
        assertEquals(File(dir, et.file), export.verify(et))
        File(dir, et.file).appendBytes(byteArrayOf(1))
        assertEquals("size_mismatch", assertThrows(ManifestException::class.java) { export.verify(et) }.reason)
        val lite = export.manifest.artifact("litert")
        val bytes = File(dir, lite.file).readBytes()
        bytes[0] = (bytes[0] + 1).toByte()
        File(dir, lite.file).writeBytes(bytes)
        assertEquals("sha256_mismatch", assertThrows(ManifestException::class.java) { export.verify(lite) }.reason)
        File(dir, lite.file).delete()
        assertEquals("missing_file", assertThrows(ManifestException::class.java) { export.verify(lite) }.reason)
        assertEquals("missing", assertThrows(ManifestException::class.java) { ExportFolder.open(File(dir, "nope")) }.reason)
    }

    @Test
    fun `sha256 of a file is the lowercase hex digest`() {
        val f = File(TestFiles.tempDir("sha"), "abc")
        f.writeText("abc")
        assertEquals("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", ExportFolder.sha256Hex(f))
    }
}
