package veil.core

/**
 * What the core refuses, with a one-line message naming the input and the problem. `kind` is a stable
 * machine-readable name (the cross-language test vectors compare it; the UI shows the message).
 */
open class VeilException(val kind: String, message: String) : Exception(message)

/** A payload that cannot be decoded, or embeddings that cannot be encoded. */
class PayloadException(kind: String, message: String) : VeilException(kind, message)

/** An export folder or manifest.json that the app cannot use. */
class ManifestException(kind: String, message: String) : VeilException(kind, message)
