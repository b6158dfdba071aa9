package veil.core

/**
 * What the core refuses, with a one-line message naming the input and the problem. `reason` is a stable
 * machine-readable name (snake_case, the names docs/PROTOCOL.md and the cross-language test vectors use where
 * they define one); apps act on it, people read the message.
 */
open class VeilException(val reason: String, message: String) : Exception(message)

/** A payload that cannot be decoded, or embeddings that cannot be encoded (reasons: PROTOCOL.md §2). */
class PayloadException(reason: String, message: String) : VeilException(reason, message)

/** An export folder or manifest.json that the app cannot use. */
class ManifestException(reason: String, message: String) : VeilException(reason, message)
