// Mirrors android_demo/core/src/main/kotlin/veil/core/PayloadEncoder.kt
import Foundation

/**
 * The one place that decides what the phone sends for an export: the prefix output z of each chunk's valid frames
 * -> one payload message. A plain export sends z with the chosen continuous codec (int8, fp16, fp32). An export
 * whose prefix ends in an information bottleneck (`ExportManifest.bottleneck`) must send through it, or the
 * privacy it buys is lost and the cloud's suffix, trained on bottlenecked input, gets the wrong input:
 *  - vq bottleneck: only codebook indices (`PayloadCodec.encodeVq` with the export's codebook); any other codec
 *    is refused (`codec_bypasses_bottleneck`), since the continuous vectors carry what the indices drop;
 *  - noise bottleneck (`noise_std` S > 0): i.i.d. N(0, S²) added to every value of z on the phone, from
 *    `GaussianNoise` (SystemRandomNumberGenerator by default), then the chosen continuous codec.
 * `hello` carries the codec actually sent. Not thread-safe: one encoder per session.
 */
public final class PayloadEncoder {
    /** The continuous codecs, the default first: what a plain export may send. */
    public static let CONTINUOUS_CODECS: [Codec] = [.int8, .fp16, .fp32]

    public let manifest: ExportManifest
    private let codebook: Codebook?
    /** The codec every message of this encoder uses. */
    public let codec: Codec
    private let noise: GaussianNoise
    /** Standard deviation of the noise added before encoding (0: none). */
    public let noiseStd: Double

    public init(_ manifest: ExportManifest, _ codebook: Codebook?, _ codec: Codec,
                _ noise: GaussianNoise = GaussianNoise()) throws {
        self.manifest = manifest
        self.codebook = codebook
        self.codec = codec
        self.noise = noise
        noiseStd = manifest.bottleneck?.noiseStd ?? 0.0
        if let b = manifest.bottleneck, b.isVq {
            if codec != .vq {
                throw PayloadException("codec_bypasses_bottleneck", "this export's prefix ends in a vq bottleneck: " +
                    "it sends codebook indices (vq); \(codec.wireName) would send the vectors and bypass it")
            }
            guard let codebook = codebook else {
                throw PayloadException("needs_codebook", "a vq bottleneck export encodes with its codebook " +
                    "(\(b.codebook?.file ?? "nil")); load it with ExportFolder.codebook()")
            }
            if codebook.groups != b.groups || codebook.size != b.codes || codebook.dim != b.dim {
                throw PayloadException("bad_codebook", "codebook (\(codebook.groups), \(codebook.size), " +
                    "\(codebook.groupDim)) is not the manifest's (\(b.groups), \(b.codes), \(b.dim / b.groups))")
            }
        } else if codec == .vq {
            throw PayloadException("needs_codebook",
                "this export has no vq bottleneck to take indices from; send int8, fp16 or fp32")
        }
    }

    /** The HELLO of a session that sends this encoder's messages. */
    public func hello(_ token: String = "") -> Message.Hello { Message.Hello.forExport(manifest, codec, token) }

    /** One chunk's (frames, embedding_dim) prefix output -> one payload message. */
    public func encode(_ z: Embeddings) throws -> [UInt8] {
        if z.dim != manifest.embeddingDim {
            throw PayloadException("bad_shape",
                "prefix output of dim \(z.dim), the export's embedding_dim is \(manifest.embeddingDim)")
        }
        if codec == .vq, let codebook = codebook { return try PayloadCodec.encodeVq(z, codebook) }
        return try PayloadCodec.encode(try noise.addTo(z, noiseStd), codec)
    }

    /** Codecs the phone may send for `manifest`, the default first: vq alone for a vq bottleneck. */
    public static func codecsFor(_ manifest: ExportManifest) -> [Codec] {
        if let b = manifest.bottleneck, b.isVq { return [.vq] }
        let first = manifest.bottleneck?.payloadCodec ?? .int8
        return [first] + CONTINUOUS_CODECS.filter { $0 != first }
    }

    /** The encoder of `folder`'s export sending `codec` (its codebook loaded and checked when it has one). */
    public static func forExport(_ folder: ExportFolder, _ codec: Codec) throws -> PayloadEncoder {
        try PayloadEncoder(folder.manifest, try folder.codebook(), codec)
    }
}
