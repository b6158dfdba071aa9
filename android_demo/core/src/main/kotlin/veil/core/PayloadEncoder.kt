package veil.core

/**
 * The one place that decides what the phone sends for an export: the prefix output z of each chunk's valid frames
 * -> one payload message. A plain export sends z with the chosen continuous codec (int8, fp16, fp32). An export
 * whose prefix ends in an information bottleneck ([ExportManifest.bottleneck]) must send through it, or the
 * privacy it buys is lost and the cloud's suffix, trained on bottlenecked input, gets the wrong input:
 *  - vq bottleneck: only codebook indices ([PayloadCodec.encodeVq] with the export's codebook); any other codec
 *    is refused (`codec_bypasses_bottleneck`), since the continuous vectors carry what the indices drop;
 *  - noise bottleneck (`noise_std` S > 0): i.i.d. N(0, S²) added to every value of z on the phone, from
 *    [GaussianNoise] (SecureRandom by default), then the chosen continuous codec.
 * [hello] carries the codec actually sent. Not thread-safe: one encoder per session.
 */
class PayloadEncoder @JvmOverloads constructor(
    val manifest: ExportManifest,
    private val codebook: Codebook?,
    /** The codec every message of this encoder uses. */
    val codec: Codec,
    private val noise: GaussianNoise = GaussianNoise()
) {
    /** Standard deviation of the noise added before encoding (0: none). */
    val noiseStd: Double = manifest.bottleneck?.noiseStd ?: 0.0

    init {
        val b = manifest.bottleneck
        if (b != null && b.isVq) {
            if (codec != Codec.VQ) {
                throw PayloadException("codec_bypasses_bottleneck", "this export's prefix ends in a vq bottleneck: " +
                    "it sends codebook indices (vq); ${codec.wireName} would send the vectors and bypass it")
            }
            if (codebook == null) {
                throw PayloadException("needs_codebook", "a vq bottleneck export encodes with its codebook " +
                    "(${b.codebook?.file}); load it with ExportFolder.codebook()")
            }
            if (codebook.groups != b.groups || codebook.size != b.codes || codebook.dim != b.dim) {
                throw PayloadException("bad_codebook", "codebook (${codebook.groups}, ${codebook.size}, " +
                    "${codebook.groupDim}) is not the manifest's (${b.groups}, ${b.codes}, ${b.dim / b.groups})")
            }
        } else if (codec == Codec.VQ) {
            throw PayloadException("needs_codebook",
                "this export has no vq bottleneck to take indices from; send int8, fp16 or fp32")
        }
    }

    /** The HELLO of a session that sends this encoder's messages. */
    @JvmOverloads
    fun hello(token: String = ""): Message.Hello = Message.Hello.forExport(manifest, codec, token)

    /** One chunk's (frames, embedding_dim) prefix output -> one payload message. */
    fun encode(z: Embeddings): ByteArray {
        if (z.dim != manifest.embeddingDim) {
            throw PayloadException("bad_shape",
                "prefix output of dim ${z.dim}, the export's embedding_dim is ${manifest.embeddingDim}")
        }
        if (codec == Codec.VQ) return PayloadCodec.encodeVq(z, codebook!!)
        return PayloadCodec.encode(noise.addTo(z, noiseStd), codec)
    }

    companion object {
        /** The continuous codecs, the default first: what a plain export may send. */
        @JvmField
        val CONTINUOUS_CODECS: List<Codec> = listOf(Codec.INT8, Codec.FP16, Codec.FP32)

        /** Codecs the phone may send for `manifest`, the default first: vq alone for a vq bottleneck. */
        @JvmStatic
        fun codecsFor(manifest: ExportManifest): List<Codec> {
            val b = manifest.bottleneck
            if (b != null && b.isVq) return listOf(Codec.VQ)
            val first = b?.payloadCodec ?: Codec.INT8
            return listOf(first) + CONTINUOUS_CODECS.filter { it != first }
        }

        /** The encoder of `folder`'s export sending `codec` (its codebook loaded and checked when it has one). */
        @JvmStatic
        fun forExport(folder: ExportFolder, codec: Codec): PayloadEncoder =
            PayloadEncoder(folder.manifest, folder.codebook(), codec)
    }
}
