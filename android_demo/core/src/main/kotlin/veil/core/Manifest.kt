package veil.core

import java.io.File
import java.io.FileInputStream
import java.nio.ByteBuffer
import java.nio.ByteOrder
import java.security.MessageDigest
import org.json.JSONArray
import org.json.JSONException
import org.json.JSONObject

/** The prefix's chunk geometry: `chunkSamples` of PCM at `sampleRate` in, one frame per `frameSamples` out. */
class ChunkSpec(val sampleRate: Int, val chunkSamples: Int, val frameSamples: Int) {
    val chunkSeconds: Double get() = chunkSamples.toDouble() / sampleRate
    val framesPerChunk: Int get() = chunkSamples / frameSamples
}

/** A tensor of the prefix's signature as the manifest declares it. */
class TensorSpec(val name: String, val shape: List<Int>, val dtype: String)

/** One exported artifact (.pte, .tflite, .mlpackage) of the manifest's `artifacts` list. */
class ArtifactEntry(
    val backend: String,
    val recipe: String,
    /** Path relative to the export folder. */
    val file: String,
    val sha256: String,
    val sizeBytes: Long,
    val input: TensorSpec,
    val output: TensorSpec,
    /** The ExecuTorch delegate the exporter lowered to (e.g. XnnpackBackend), if any. */
    val delegateBackend: String?,
    /** The parity verdict recorded after export ("pass", "fail"), if parity ran. */
    val parityVerdict: String?,
    /** The whole entry as written, unknown keys included. */
    val raw: JSONObject
) {
    /** "executorch int8-static": the name bench rows use. */
    val displayName: String get() = "$backend $recipe"
}

/** The codebook file of a vq bottleneck as the manifest lists it: float32 little-endian, C order. */
class CodebookEntry(
    /** Path relative to the export folder (codebook.f32). */
    val file: String,
    val sha256: String,
    /** (groups, codes, dim / groups). */
    val shape: List<Int>
) {
    /** The file's exact length: 4 bytes per float32 value. */
    val sizeBytes: Long get() = 4L * shape[0] * shape[1] * shape[2]
}

/**
 * The manifest's optional `bottleneck` section: the prefix ends in an information bottleneck, and what leaves the
 * phone must go through it, or the privacy it buys is lost. With `payloadCodec` vq the phone sends only codebook
 * indices ([codebook] lists the file it quantizes with; `groups` x `codes` codewords of `dim / groups` values);
 * otherwise the phone adds Gaussian noise of standard deviation [noiseStd] to every value of the (unit-RMS)
 * output before encoding it, when [noiseStd] > 0. [ExportManifest.bottleneck] is null for a plain export.
 */
class Bottleneck(
    /** Output dimension of the bottleneck: the embedding dim the prefix emits. */
    val dim: Int,
    /** The codec the suffix was trained for: vq, or the continuous codec sent by default (int8). */
    val payloadCodec: Codec,
    /** vq groups G (1 without vq). */
    val groups: Int,
    /** vq codes per group K (0 without vq). */
    val codes: Int,
    /** The codebook file of a vq bottleneck, else null. */
    val codebook: CodebookEntry?,
    /** Standard deviation of the Gaussian noise the phone adds before encoding (0: none). */
    val noiseStd: Double
) {
    val isVq: Boolean get() = payloadCodec == Codec.VQ
}

/**
 * `manifest.json` of an export folder (`veil export` / `export-prefix`, format veil-export/1): the one contract
 * between the export job and the apps. The app reads the chunk geometry, the embedding shape, the prefix identity
 * (checkpoint hash and split layer) and the artifacts with their hashes from it. Keys it does not know are
 * tolerated and kept in [raw]; a missing or mistyped key it needs, or shapes that contradict each other, are a
 * [ManifestException] naming the key.
 */
class ExportManifest(
    val format: String,
    val splitLayer: Int,
    val chunk: ChunkSpec,
    val embeddingDim: Int,
    val input: TensorSpec,
    val output: TensorSpec,
    val checkpointSha256: String,
    val artifacts: List<ArtifactEntry>,
    /** The information bottleneck at the split, or null for a plain export (see [PayloadEncoder]). */
    val bottleneck: Bottleneck?,
    val raw: JSONObject
) {
    /** The artifact of `backend` (and `recipe`, when given); ManifestException when the export has none. */
    @JvmOverloads
    fun artifact(backend: String, recipe: String? = null): ArtifactEntry {
        for (a in artifacts) if (a.backend == backend && (recipe == null || a.recipe == recipe)) return a
        val have = artifacts.joinToString(", ") { it.displayName }
        throw ManifestException("no_artifact",
            "manifest.json: no $backend${if (recipe != null) " $recipe" else ""} artifact (the export has: $have)")
    }

    companion object {
        const val FORMAT_FAMILY = "veil-export/"
        const val SUPPORTED_MAJOR = 1
        const val FILE_NAME = "manifest.json"

        /** Parse and check manifest text; `source` names it in errors. */
        @JvmStatic
        @JvmOverloads
        fun parse(text: String, source: String = FILE_NAME): ExportManifest {
            val root = try {
                JSONObject(text)
            } catch (e: JSONException) {
                throw ManifestException("not_json", "$source: not a JSON object (${e.message})")
            }
            return Reader(root, source).manifest()
        }

        /** Read `dir/manifest.json` (no artifact file is opened; see [ExportFolder.verify]). */
        @JvmStatic
        fun read(dir: File): ExportManifest {
            val file = File(dir, FILE_NAME)
            if (!file.isFile) {
                throw ManifestException("missing",
                    "$dir: no $FILE_NAME (not an export folder; run `veil export --target android` first)")
            }
            return parse(String(file.readBytes(), Charsets.UTF_8), file.path)
        }
    }

    private class Reader(val root: JSONObject, val source: String) {
        fun manifest(): ExportManifest {
            val format = string(root, "format")
            checkFormat(format)
            val input = obj(root, "input")
            val output = obj(root, "output")
            val sampleRate = positiveInt(input, "input.sample_rate", "sample_rate")
            val chunkSamples = positiveInt(input, "input.chunk_samples", "chunk_samples")
            val frameSamples = positiveInt(output, "output.frame_samples", "frame_samples")
            val framesPerChunk = positiveInt(output, "output.frames_per_chunk", "frames_per_chunk")
            val dim = positiveInt(output, "output.embedding_dim", "embedding_dim")
            val inputSpec = tensor(input, "input")
            val outputSpec = tensor(output, "output")
            if (chunkSamples % frameSamples != 0 || chunkSamples / frameSamples != framesPerChunk) {
                fail("inconsistent", "output.frames_per_chunk $framesPerChunk x frame_samples $frameSamples != " +
                    "input.chunk_samples $chunkSamples")
            }
            if (inputSpec.shape != listOf(1, chunkSamples)) {
                fail("inconsistent", "input.shape ${inputSpec.shape} is not [1, $chunkSamples]")
            }
            if (outputSpec.shape != listOf(1, framesPerChunk, dim)) {
                fail("inconsistent", "output.shape ${outputSpec.shape} is not [1, $framesPerChunk, $dim]")
            }
            val splitLayer = positiveInt(root, "split_layer", "split_layer")
            val checkpoint = obj(root, "checkpoint")
            val sha = string(checkpoint, "sha256", "checkpoint.sha256")
            val list = array(root, "artifacts")
            if (list.length() == 0) fail("no_artifact", "artifacts is empty")
            val artifacts = ArrayList<ArtifactEntry>()
            for (i in 0 until list.length()) {
                val entry = list.optJSONObject(i) ?: fail("type", "artifacts[$i] is not an object")
                artifacts.add(artifact(entry, "artifacts[$i]", inputSpec, outputSpec))
            }
            val bottleneck = bottleneck(dim)
            return ExportManifest(format, splitLayer, ChunkSpec(sampleRate, chunkSamples, frameSamples), dim,
                inputSpec, outputSpec, sha, artifacts, bottleneck, root)
        }

        /** The optional `bottleneck` section (absent or null: a plain export), checked against the output dim. */
        private fun bottleneck(outputDim: Int): Bottleneck? {
            val v = root.opt("bottleneck")
            if (v == null || v == JSONObject.NULL) return null
            val o = v as? JSONObject ?: fail("type", "bottleneck is ${describe(v)}, expected an object")
            val dim = positiveInt(o, "bottleneck.dim", "dim")
            if (dim != outputDim) {
                fail("inconsistent", "bottleneck.dim $dim is not output.embedding_dim $outputDim")
            }
            val name = string(o, "payload_codec", "bottleneck.payload_codec")
            val codec = Codec.values().firstOrNull { it.wireName == name }
                ?: fail("unknown_codec", "bottleneck.payload_codec '$name' is not one of fp32, fp16, int8, vq " +
                    "(export with this Veil version, or update the app)")
            val noise = o.opt("noise_std")
            val noiseStd = when {
                noise == null || noise == JSONObject.NULL -> 0.0
                noise is Number && !noise.toDouble().isNaN() && !noise.toDouble().isInfinite() &&
                    noise.toDouble() >= 0.0 -> noise.toDouble()
                else -> fail("type", "bottleneck.noise_std is ${describe(noise)}, expected a finite number >= 0")
            }
            val book = o.opt("codebook")
            if (codec != Codec.VQ) {
                if (book != null && book != JSONObject.NULL) {
                    fail("inconsistent", "bottleneck.codebook is listed but bottleneck.payload_codec is '$name', not vq")
                }
                return Bottleneck(dim, codec, 1, 0, null, noiseStd)
            }
            if (noiseStd > 0.0) {
                fail("inconsistent", "bottleneck.noise_std $noiseStd with payload_codec vq: the phone sends codebook " +
                    "indices, noise is only for a continuous payload")
            }
            if (book !is JSONObject) {
                fail(if (book == null || book == JSONObject.NULL) "missing" else "type",
                    "bottleneck.codebook is ${describe(book)}; a vq bottleneck needs its codebook")
            }
            val groups = positiveInt(o, "bottleneck.groups", "groups")
            val codes = positiveInt(o, "bottleneck.codes", "codes")
            if (codes > Codebook.MAX_CODES) {
                fail("type", "bottleneck.codes $codes exceeds the ${Codebook.MAX_CODES} codes a vq index can name")
            }
            if (dim % groups != 0) fail("inconsistent", "bottleneck.dim $dim is not a multiple of bottleneck.groups $groups")
            val file = safePath(string(book, "file", "bottleneck.codebook.file"), "bottleneck.codebook.file")
            val sha = sha256(book, "bottleneck.codebook.sha256")
            val dims = shape(book, "bottleneck.codebook.shape")
            if (dims != listOf(groups, codes, dim / groups)) {
                fail("inconsistent", "bottleneck.codebook.shape $dims is not [groups $groups, codes $codes, " +
                    "dim / groups ${dim / groups}]")
            }
            val dtype = string(book, "dtype", "bottleneck.codebook.dtype")
            if (dtype != "float32") fail("dtype", "bottleneck.codebook.dtype is '$dtype'; the app reads float32")
            val order = string(book, "byte_order", "bottleneck.codebook.byte_order")
            if (order != "little") fail("dtype", "bottleneck.codebook.byte_order is '$order'; the app reads little")
            return Bottleneck(dim, codec, groups, codes, CodebookEntry(file, sha, dims), 0.0)
        }

        private fun checkFormat(format: String) {
            val major = if (format.startsWith(FORMAT_FAMILY)) {
                format.substring(FORMAT_FAMILY.length).substringBefore('.').toIntOrNull()
            } else {
                null
            }
            if (major != SUPPORTED_MAJOR) {
                fail("format", "format '$format' is not $FORMAT_FAMILY$SUPPORTED_MAJOR (export with this Veil " +
                    "version, or update the app)")
            }
        }

        private fun artifact(o: JSONObject, where: String, input: TensorSpec, output: TensorSpec): ArtifactEntry {
            val file = safePath(string(o, "file", "$where.file"), "$where.file")
            val sha = sha256(o, "$where.sha256")
            val size = o.opt("size_bytes")
            if (size !is Number || size.toLong() < 0 || size.toDouble() != size.toLong().toDouble()) {
                fail(if (size == null) "missing" else "type", "$where.size_bytes is ${describe(size)}, expected a byte count")
            }
            val ai = tensor(obj(o, "input", "$where.input"), "$where.input")
            val ao = tensor(obj(o, "output", "$where.output"), "$where.output")
            if (ai.shape != input.shape || ao.shape != output.shape) {
                fail("inconsistent", "$where ($file) has shapes ${ai.shape} -> ${ao.shape}, the manifest " +
                    "${input.shape} -> ${output.shape}")
            }
            val delegation = o.optJSONObject("delegation")
            val parity = o.optJSONObject("parity")
            return ArtifactEntry(string(o, "backend", "$where.backend"), string(o, "recipe", "$where.recipe"), file,
                sha, size.toLong(), ai, ao,
                if (delegation != null && delegation.has("backend")) delegation.optString("backend") else null,
                if (parity != null && parity.has("verdict")) parity.optString("verdict") else null, o)
        }

        /** `file` (named `where`), refused unless it is a relative path inside the export folder. */
        private fun safePath(file: String, where: String): String {
            if (file.startsWith("/") || file.split('/').contains("..") || file.contains('\\')) {
                fail("unsafe_path", "$where '$file' is not a path inside the export folder")
            }
            return file
        }

        /** The lowercase hex SHA-256 under key `sha256` of `o` (named `where`). */
        private fun sha256(o: JSONObject, where: String): String {
            val sha = string(o, "sha256", where)
            if (sha.length != 64 || !sha.all { it in '0'..'9' || it in 'a'..'f' }) {
                fail("type", "$where '$sha' is not a lowercase hex SHA-256")
            }
            return sha
        }

        /** `o.shape` (named `where` in errors): a JSON array of positive integers. */
        private fun shape(o: JSONObject, where: String): List<Int> {
            val shape = array(o, "shape", where)
            val dims = ArrayList<Int>()
            for (i in 0 until shape.length()) {
                val d = shape.opt(i)
                if (d !is Number || d.toDouble() != d.toInt().toDouble() || d.toInt() < 1) {
                    fail("type", "$where[$i] is ${describe(d)}, expected a positive integer")
                }
                dims.add(d.toInt())
            }
            return dims
        }

        private fun tensor(o: JSONObject, where: String): TensorSpec {
            val dims = shape(o, "$where.shape")
            val dtype = string(o, "dtype", "$where.dtype")
            if (dtype != "float32") fail("dtype", "$where.dtype is '$dtype'; the app feeds and reads float32")
            return TensorSpec(string(o, "name", "$where.name"), dims, dtype)
        }

        fun obj(o: JSONObject, key: String, where: String = key): JSONObject {
            val v = o.opt(key)
            if (v is JSONObject) return v
            fail(if (v == null) "missing" else "type", "$where is ${describe(v)}, expected an object")
        }

        fun array(o: JSONObject, key: String, where: String = key): JSONArray {
            val v = o.opt(key)
            if (v is JSONArray) return v
            fail(if (v == null) "missing" else "type", "$where is ${describe(v)}, expected a list")
        }

        fun string(o: JSONObject, key: String, where: String = key): String {
            val v = o.opt(key)
            if (v is String) return v
            fail(if (v == null) "missing" else "type", "$where is ${describe(v)}, expected a string")
        }

        fun positiveInt(o: JSONObject, where: String, key: String): Int {
            val v = o.opt(key)
            if (v is Number && v.toDouble() == v.toInt().toDouble() && v.toInt() > 0) return v.toInt()
            fail(if (v == null) "missing" else "type", "$where is ${describe(v)}, expected a positive integer")
        }

        fun describe(v: Any?): String = when (v) {
            null -> "missing"
            JSONObject.NULL -> "null"
            is String -> "the string '$v'"
            is Number -> "the number $v"
            is Boolean -> "$v"
            is JSONArray -> "a list"
            is JSONObject -> "an object"
            else -> v.javaClass.simpleName
        }

        fun fail(reason: String, message: String): Nothing = throw ManifestException(reason, "$source: $message")
    }
}

/**
 * An export folder on the device: the manifest plus its artifact files, checked before a runtime maps them.
 * [verify] streams each file through SHA-256 (a 3-5 MB prefix takes tens of milliseconds on a phone), so a
 * truncated or swapped push is refused instead of loading a model the manifest does not describe.
 */
class ExportFolder(val dir: File, val manifest: ExportManifest) {
    /** The file of `artifact`, which must exist. */
    fun fileOf(artifact: ArtifactEntry): File {
        val f = File(dir, artifact.file)
        if (!f.isFile) {
            throw ManifestException("missing_file", "${f.path}: artifact listed in manifest.json is missing")
        }
        return f
    }

    /** Check size and SHA-256 of `artifact` against the manifest. */
    fun verify(artifact: ArtifactEntry): File {
        val f = fileOf(artifact)
        if (f.length() != artifact.sizeBytes) {
            throw ManifestException("size_mismatch", "${f.path}: ${f.length()} bytes, manifest.json says " +
                "${artifact.sizeBytes} (an incomplete copy? push the export again)")
        }
        val sha = sha256Hex(f)
        if (sha != artifact.sha256) {
            throw ManifestException("sha256_mismatch",
                "${f.path}: sha256 differs from manifest.json (the file changed after export)")
        }
        return f
    }

    /**
     * The codebook of a vq bottleneck export, checked against the manifest (length, SHA-256, finite values), or
     * null when the export has none. The phone quantizes with it; see [PayloadEncoder].
     */
    fun codebook(): Codebook? {
        val entry = manifest.bottleneck?.codebook ?: return null
        val f = File(dir, entry.file)
        if (!f.isFile) {
            throw ManifestException("missing_file", "${f.path}: codebook listed in manifest.json is missing")
        }
        val bytes = f.readBytes()
        if (bytes.size.toLong() != entry.sizeBytes) {
            throw ManifestException("size_mismatch", "${f.path}: ${bytes.size} bytes is not a float32 codebook of " +
                "shape ${entry.shape} (${entry.sizeBytes} bytes; an incomplete copy? push the export again)")
        }
        if (sha256Hex(bytes) != entry.sha256) {
            throw ManifestException("sha256_mismatch",
                "${f.path}: sha256 differs from manifest.json (the codebook changed after export)")
        }
        val buf = ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN)
        val values = FloatArray(bytes.size / 4) { buf.float }
        val codebook = Codebook(entry.shape[0], entry.shape[1], entry.shape[2], values)
        try {
            codebook.checkFinite()
        } catch (e: PayloadException) {
            throw ManifestException(e.reason, "${f.path}: ${e.message}")
        }
        return codebook
    }

    companion object {
        @JvmStatic
        fun open(dir: File): ExportFolder = ExportFolder(dir, ExportManifest.read(dir))

        /** SHA-256 of `bytes` as lowercase hex. */
        @JvmStatic
        fun sha256Hex(bytes: ByteArray): String = hex(MessageDigest.getInstance("SHA-256").digest(bytes))

        @JvmStatic
        fun sha256Hex(file: File): String {
            val digest = MessageDigest.getInstance("SHA-256")
            FileInputStream(file).use { input ->
                val buffer = ByteArray(1 shl 16)
                var n = input.read(buffer)
                while (n >= 0) {
                    digest.update(buffer, 0, n)
                    n = input.read(buffer)
                }
            }
            return hex(digest.digest())
        }

        private fun hex(digest: ByteArray): String {
            val hex = StringBuilder()
            for (b in digest) hex.append(String.format(java.util.Locale.ROOT, "%02x", b.toInt() and 0xFF))
            return hex.toString()
        }
    }
}
