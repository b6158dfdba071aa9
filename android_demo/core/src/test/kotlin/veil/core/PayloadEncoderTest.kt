package veil.core

import java.io.File
import java.util.Random
import org.json.JSONObject
import org.junit.jupiter.api.Assertions.assertArrayEquals
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertFalse
import org.junit.jupiter.api.Assertions.assertNull
import org.junit.jupiter.api.Assertions.assertThrows
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test

/**
 * What the phone sends for an export with a bottleneck. The vq exports are the manifests/ fixtures with the committed
 * protocol vectors' codebooks (testvectors/payload/vq8-codebook.f32, vq16-codebook.f32) as their codebook.f32, so
 * the encoder must send the committed indices for the committed z inputs, bit for bit.
 */
class PayloadEncoderTest {
    private val vq = TestVectors.index.getJSONObject("payload").getJSONObject("vq").getJSONArray("cases")

    private fun vqCase(name: String): JSONObject {
        for (i in 0 until vq.length()) if (vq.getJSONObject(i).getString("name") == name) return vq.getJSONObject(i)
        throw IllegalStateException("no vq case $name in testvectors/index.json")
    }

    /** An export folder: the fixture manifest `name`, with the vq case's committed codebook as its codebook.f32. */
    private fun exportFolder(name: String): File {
        val dir = TestFiles.tempDir("veil-bottleneck")
        File(dir, ExportManifest.FILE_NAME).writeText(TestFiles.resourceText("manifests/$name-bottleneck.json"))
        if (name.startsWith("vq")) {
            File(TestVectors.dir, vqCase(name).getJSONObject("codebook").getString("file")).copyTo(File(dir, "codebook.f32"))
        }
        return dir
    }

    /** `frames` x `dim` values with unit RMS per frame, as the exported graph emits them. */
    private fun unitRms(frames: Int, dim: Int, seed: Long): Embeddings {
        val random = Random(seed)
        val v = FloatArray(frames * dim) { random.nextGaussian().toFloat() }
        for (t in 0 until frames) {
            var sum = 0.0
            for (j in 0 until dim) sum += v[t * dim + j].toDouble() * v[t * dim + j]
            val rms = Math.sqrt(sum / dim)
            for (j in 0 until dim) v[t * dim + j] = (v[t * dim + j] / rms).toFloat()
        }
        return Embeddings(frames, dim, v)
    }

    @Test
    fun `a vq export sends the committed indices for the committed z, bit for bit`() {
        for (name in listOf("vq8", "vq16")) {
            val case = vqCase(name)
            val export = ExportFolder.open(exportFolder(name))
            assertEquals(listOf(Codec.VQ), PayloadEncoder.codecsFor(export.manifest))
            val encoder = PayloadEncoder.forExport(export, Codec.VQ)
            assertEquals(Codec.VQ, encoder.hello().codec, name)
            val message = encoder.encode(TestVectors.embeddings(case.getJSONObject("z")))
            assertArrayEquals(TestVectors.bytes(case.getString("message")), message, name)
            val want = ArrayList<Int>()
            val rows = case.getJSONArray("indices")
            for (t in 0 until rows.length()) for (g in 0 until rows.getJSONArray(t).length()) want.add(rows.getJSONArray(t).getInt(g))
            assertEquals(want, PayloadCodec.decodeIndices(message).second.toList(), name)
        }
    }

    @Test
    fun `a vq export never emits a continuous codec`() {
        val export = ExportFolder.open(exportFolder("vq8"))
        for (codec in listOf(Codec.INT8, Codec.FP16, Codec.FP32)) {
            val e = assertThrows(PayloadException::class.java) { PayloadEncoder.forExport(export, codec) }
            assertEquals("codec_bypasses_bottleneck", e.reason, codec.wireName)
            assertTrue(e.message!!.contains("would send the vectors and bypass it"), e.message)
        }
        val encoder = PayloadEncoder.forExport(export, Codec.VQ)
        for (seed in 0L until 20L) {
            val header = PayloadCodec.readHeader(encoder.encode(unitRms(50, 16, seed)))
            assertEquals(Codec.VQ, header.codec)
            assertEquals(PayloadCodec.MAGIC_V2, header.magic)
            assertEquals(4, header.dimField)
            assertEquals(8, header.aux)
        }
    }

    @Test
    fun `a vq encoder needs the export's own codebook`() {
        val manifest = ExportManifest.read(exportFolder("vq8"))
        assertEquals("needs_codebook",
            assertThrows(PayloadException::class.java) { PayloadEncoder(manifest, null, Codec.VQ) }.reason)
        val other = ExportFolder.open(exportFolder("vq16")).codebook()!!
        assertEquals("bad_codebook",
            assertThrows(PayloadException::class.java) { PayloadEncoder(manifest, other, Codec.VQ) }.reason)
        val plain = ExportManifest.parse(TestFiles.resourceText("export-manifest.json"))
        assertEquals("needs_codebook",
            assertThrows(PayloadException::class.java) { PayloadEncoder(plain, null, Codec.VQ) }.reason)
        val noise = ExportManifest.parse(TestFiles.resourceText("manifests/noise-bottleneck.json"))
        assertEquals("needs_codebook",
            assertThrows(PayloadException::class.java) { PayloadEncoder(noise, null, Codec.VQ) }.reason)
    }

    @Test
    fun `the codebook file is checked against the manifest before it codes anything`() {
        val dir = exportFolder("vq8")
        val export = ExportFolder.open(dir)
        val book = File(dir, "codebook.f32")
        val good = book.readBytes()
        assertEquals(4 * 16 * 4, export.codebook()!!.values.size)
        book.writeBytes(good.copyOf(good.size - 4))
        var e = assertThrows(ManifestException::class.java) { export.codebook() }
        assertEquals("size_mismatch", e.reason)
        assertTrue(e.message!!.startsWith("${book.path}: 1020 bytes is not a float32 codebook of shape [4, 16, 4]"), e.message)
        val changed = good.copyOf()
        changed[0] = (changed[0] + 1).toByte()
        book.writeBytes(changed)
        assertEquals("sha256_mismatch", assertThrows(ManifestException::class.java) { export.codebook() }.reason)
        assertEquals("sha256_mismatch",
            assertThrows(ManifestException::class.java) { PayloadEncoder.forExport(export, Codec.VQ) }.reason)
        book.delete()
        e = assertThrows(ManifestException::class.java) { export.codebook() }
        assertEquals("missing_file", e.reason)
        assertEquals("${book.path}: codebook listed in manifest.json is missing", e.message)
        // a codebook with a NaN codeword, listed with its own hash: refused for its values
        val nan = good.copyOf()
        for (i in 0 until 4) nan[i] = byteArrayOf(0x00, 0x00, 0xC0.toByte(), 0x7F)[i]
        book.writeBytes(nan)
        val o = JSONObject(File(dir, ExportManifest.FILE_NAME).readText())
        o.getJSONObject("bottleneck").getJSONObject("codebook").put("sha256", ExportFolder.sha256Hex(book))
        File(dir, ExportManifest.FILE_NAME).writeText(o.toString())
        e = assertThrows(ManifestException::class.java) { ExportFolder.open(dir).codebook() }
        assertEquals("bad_codebook", e.reason)
        assertEquals("${book.path}: the vq codebook contains NaN or Inf", e.message)
        assertNull(ExportFolder.open(exportFolder("noise")).codebook())
    }

    /** Sample mean and standard deviation of decoded - z over every value. */
    private fun differenceStats(z: Embeddings, decoded: Embeddings): Pair<Double, Double> {
        assertEquals(z.values.size, decoded.values.size)
        val n = z.values.size
        var sum = 0.0
        for (i in 0 until n) sum += decoded.values[i].toDouble() - z.values[i]
        val mean = sum / n
        var squares = 0.0
        for (i in 0 until n) {
            val d = decoded.values[i].toDouble() - z.values[i] - mean
            squares += d * d
        }
        return Pair(mean, Math.sqrt(squares / (n - 1)))
    }

    @Test
    fun `a noise export adds Gaussian noise of the manifest's std on the phone before encoding`() {
        val manifest = ExportManifest.parse(TestFiles.resourceText("manifests/noise-bottleneck.json"))
        val s = manifest.bottleneck!!.noiseStd
        assertEquals(0.5, s)
        assertEquals(listOf(Codec.INT8, Codec.FP16, Codec.FP32), PayloadEncoder.codecsFor(manifest))
        val z = unitRms(313, 16, 7)  // 5008 values
        for (codec in listOf(Codec.FP32, Codec.INT8)) {
            val encoder = PayloadEncoder(manifest, null, codec, GaussianNoise(Random(11)))
            assertEquals(codec, encoder.hello().codec)
            val decoded = PayloadCodec.decode(encoder.encode(z))
            val (mean, std) = differenceStats(z, decoded)
            // std of 5008 N(0, S^2) samples: S * (1 +- 0.01); mean: 0 +- S / 71
            assertTrue(Math.abs(std - s) < 0.05 * s, "${codec.wireName}: std $std, noise_std $s")
            assertTrue(Math.abs(mean) < 4 * s / Math.sqrt(z.values.size.toDouble()), "${codec.wireName}: mean $mean")
        }
        // the app's default source is SecureRandom: the same statistics, and fresh noise on every message
        val app = PayloadEncoder(manifest, null, Codec.FP32)
        val (mean, std) = differenceStats(z, PayloadCodec.decode(app.encode(z)))
        assertTrue(Math.abs(std - s) < 0.05 * s, "SecureRandom: std $std, noise_std $s")
        assertTrue(Math.abs(mean) < 4 * s / Math.sqrt(z.values.size.toDouble()), "SecureRandom: mean $mean")
        assertFalse(app.encode(z).contentEquals(app.encode(z)))
    }

    @Test
    fun `seeded noise is reproducible and noise_std 0 sends today's bytes`() {
        val manifest = ExportManifest.parse(TestFiles.resourceText("manifests/noise-bottleneck.json"))
        val z = unitRms(50, 16, 3)
        assertArrayEquals(PayloadEncoder(manifest, null, Codec.INT8, GaussianNoise(Random(5))).encode(z),
            PayloadEncoder(manifest, null, Codec.INT8, GaussianNoise(Random(5))).encode(z))
        val zero = JSONObject(TestFiles.resourceText("manifests/noise-bottleneck.json"))
        zero.getJSONObject("bottleneck").put("noise_std", 0.0)
        val projection = ExportManifest.parse(TestFiles.resourceText("manifests/projection-bottleneck.json"))
        for (m in listOf(ExportManifest.parse(zero.toString()), projection)) {
            assertEquals(0.0, m.bottleneck!!.noiseStd)
            for (codec in listOf(Codec.INT8, Codec.FP16, Codec.FP32)) {
                assertArrayEquals(PayloadCodec.encode(z, codec), PayloadEncoder(m, null, codec).encode(z))
            }
        }
        // a plain export (the shipped one): the committed session's prefix outputs encode as before
        val plain = ExportManifest.parse(TestFiles.resourceText("export-manifest.json"))
        assertEquals(listOf(Codec.INT8, Codec.FP16, Codec.FP32), PayloadEncoder.codecsFor(plain))
        for (chunk in 0..2) {
            val prefix = Embeddings(50, 144, TestVectors.f32("sessions/prefix-$chunk.f32"))
            for (codec in listOf(Codec.INT8, Codec.FP16, Codec.FP32)) {
                assertArrayEquals(PayloadCodec.encode(prefix, codec), PayloadEncoder(plain, null, codec).encode(prefix))
            }
        }
        assertEquals("bad_shape", assertThrows(PayloadException::class.java) {
            PayloadEncoder(plain, null, Codec.INT8).encode(z)
        }.reason)
    }

    @Test
    fun `the bench reports the bytes the app sends, vq indices for a vq export`() {
        val dir = exportFolder("vq8")
        val export = ExportFolder.open(dir)
        val artifact = export.manifest.artifact("executorch")
        val weights = File(dir, artifact.file)
        weights.writeBytes(ByteArray(2048) { it.toByte() })
        val input = FloatArray(export.manifest.chunk.chunkSamples) { Math.sin(it * 0.01).toFloat() * 0.1f }
        val pss = object : PssProbe {
            override fun pssBytes(): Long? = null
        }
        val m = BenchRunner.measure(JvmFramePrefix.Loader(), artifact, weights, input, export.manifest.chunk,
            BenchSettings(1, 0, 2), pss, PayloadEncoder.forExport(export, Codec.VQ))
        assertEquals("vq", m.payloadCodec)
        assertEquals(PayloadCodec.messageBytes(Codec.VQ, 50, 4), m.payloadBytes)
        val json = BenchSchema.measurement(m)
        assertEquals("vq", json.getString("payload_codec"))
        assertEquals(210, json.getInt("payload_bytes_per_chunk"))
        assertEquals(105.0, json.getDouble("payload_bytes_per_second"))
    }
}
