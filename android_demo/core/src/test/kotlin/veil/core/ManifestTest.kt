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

    /** Bottleneck fixtures (manifests/): the shipped export's geometry with a bottleneck section. */
    private fun fixture(name: String): String = TestFiles.resourceText("manifests/$name-bottleneck.json")

    @Test
    fun `reads the bottleneck section of vq, noise and projection exports`() {
        val vq = ExportManifest.parse(fixture("vq8")).bottleneck!!
        assertEquals(16, vq.dim)
        assertEquals(Codec.VQ, vq.payloadCodec)
        assertTrue(vq.isVq)
        assertEquals(4, vq.groups)
        assertEquals(16, vq.codes)
        assertEquals("codebook.f32", vq.codebook!!.file)
        assertEquals(listOf(4, 16, 4), vq.codebook!!.shape)
        assertEquals(64, vq.codebook!!.sha256.length)
        assertEquals(4L * 4 * 16 * 4, vq.codebook!!.sizeBytes)
        assertEquals(0.0, vq.noiseStd)
        assertEquals(listOf(2, 300, 3), ExportManifest.parse(fixture("vq16")).bottleneck!!.codebook!!.shape)
        val noise = ExportManifest.parse(fixture("noise")).bottleneck!!
        assertEquals(Codec.INT8, noise.payloadCodec)
        assertNull(noise.codebook)
        assertEquals(0.5, noise.noiseStd)
        assertEquals(0.0, ExportManifest.parse(fixture("projection")).bottleneck!!.noiseStd)
        assertNull(ExportManifest.parse(text).bottleneck)
        val nullSection = JSONObject(text).put("bottleneck", JSONObject.NULL)
        assertNull(ExportManifest.parse(nullSection.toString()).bottleneck)
    }

    private fun brokenBottleneck(name: String, edit: (JSONObject) -> Unit): ManifestException {
        val o = JSONObject(fixture(name))
        edit(o.getJSONObject("bottleneck"))
        return assertThrows(ManifestException::class.java) { ExportManifest.parse(o.toString(), "x/manifest.json") }
    }

    @Test
    fun `a bottleneck section that cannot be honoured is refused, naming the key`() {
        var e = brokenBottleneck("vq8") { it.put("payload_codec", "pq") }
        assertEquals("unknown_codec", e.reason)
        assertTrue(e.message!!.startsWith("x/manifest.json: bottleneck.payload_codec 'pq' is not one of"), e.message)
        e = brokenBottleneck("vq8") { it.put("codebook", JSONObject.NULL) }
        assertEquals("missing", e.reason)
        assertEquals("x/manifest.json: bottleneck.codebook is null; a vq bottleneck needs its codebook", e.message)
        e = brokenBottleneck("vq8") { it.remove("codebook") }
        assertEquals("missing", e.reason)
        e = brokenBottleneck("vq8") { it.getJSONObject("codebook").put("shape", JSONArray(listOf(4, 16, 2))) }
        assertEquals("inconsistent", e.reason)
        assertEquals("x/manifest.json: bottleneck.codebook.shape [4, 16, 2] is not [groups 4, codes 16, dim / groups 4]",
            e.message)
        e = brokenBottleneck("vq8") { it.put("codes", 32) }
        assertEquals("inconsistent", e.reason)
        e = brokenBottleneck("vq8") { it.put("groups", 3) }
        assertEquals("inconsistent", e.reason)
        e = brokenBottleneck("vq8") { it.put("dim", 32) }
        assertEquals("inconsistent", e.reason)
        assertEquals("x/manifest.json: bottleneck.dim 32 is not output.embedding_dim 16", e.message)
        e = brokenBottleneck("vq8") { it.put("noise_std", 0.1) }
        assertEquals("inconsistent", e.reason)
        assertTrue(e.message!!.contains("bottleneck.noise_std 0.1 with payload_codec vq"), e.message)
        e = brokenBottleneck("vq8") { it.getJSONObject("codebook").put("file", "/sdcard/codebook.f32") }
        assertEquals("unsafe_path", e.reason)
        e = brokenBottleneck("vq8") { it.getJSONObject("codebook").put("sha256", "abc") }
        assertEquals("type", e.reason)
        e = brokenBottleneck("vq8") { it.getJSONObject("codebook").put("byte_order", "big") }
        assertEquals("dtype", e.reason)
        e = brokenBottleneck("noise") { it.put("noise_std", -0.5) }
        assertEquals("type", e.reason)
        assertEquals("x/manifest.json: bottleneck.noise_std is the number -0.5, expected a finite number >= 0", e.message)
        e = brokenBottleneck("noise") { it.put("noise_std", "0.5") }
        assertEquals("type", e.reason)
        e = brokenBottleneck("noise") { it.put("codebook", JSONObject().put("file", "codebook.f32")) }
        assertEquals("inconsistent", e.reason)
        e = brokenBottleneck("noise") { it.put("dim", 144) }
        assertEquals("inconsistent", e.reason)
        val nan = fixture("noise").replace("\"noise_std\": 0.5", "\"noise_std\": NaN")
        assertTrue(nan.contains("NaN"))
        // a NaN (Python's json writes it unquoted) is not JSON: the whole manifest is refused
        e = assertThrows(ManifestException::class.java) { ExportManifest.parse(nan, "x/manifest.json") }
        assertEquals("not_json", e.reason)
        e = assertThrows(ManifestException::class.java) {
            ExportManifest.parse(JSONObject(text).put("bottleneck", "vq").toString(), "x/manifest.json")
        }
        assertEquals("type", e.reason)
    }

    /** An export folder whose manifest describes two small real files. */
    private fun folder(): File = TestFiles.exportFolder(text)

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
