// Mirrors android_demo/core/src/main/kotlin/veil/core/VeilException.kt
//
// Kotlin's exception classes become Swift classes conforming to Error, with the same names and the same
// (reason, message) pair, so `catch let e as PayloadException` reads as the Kotlin `catch (e: PayloadException)`.
// Kotlin's `require(...)` and `check(...)` throw IllegalArgumentException / IllegalStateException; Swift throws the
// structs of the same names below (through `require` / `check`) instead of trapping, so an app can show them.
import Foundation

/**
 * What the core refuses, with a one-line message naming the input and the problem. `reason` is a stable
 * machine-readable name (snake_case, the names docs/PROTOCOL.md and the cross-language test vectors use where
 * they define one); apps act on it, people read the message.
 */
public class VeilException: Error, CustomStringConvertible, @unchecked Sendable {
    public let reason: String
    public let message: String

    public init(_ reason: String, _ message: String) {
        self.reason = reason
        self.message = message
    }

    public var description: String { message }
}

extension VeilException: LocalizedError {
    public var errorDescription: String? { message }
}

/** A payload that cannot be decoded, or embeddings that cannot be encoded (reasons: PROTOCOL.md §2). */
public final class PayloadException: VeilException {}

/** An export folder or manifest.json that the app cannot use. */
public final class ManifestException: VeilException {}

/** Kotlin's `require(condition) { message }` failing: the caller passed something out of range. */
public struct IllegalArgumentException: Error, CustomStringConvertible, LocalizedError {
    public let message: String
    public init(message: String) { self.message = message }
    public var description: String { message }
    public var errorDescription: String? { message }
}

/** Kotlin's `check(condition) { message }` failing: the object is in the wrong state for the call. */
public struct IllegalStateException: Error, CustomStringConvertible, LocalizedError {
    public let message: String
    public init(message: String) { self.message = message }
    public var description: String { message }
    public var errorDescription: String? { message }
}

/** Kotlin's `require`: throws IllegalArgumentException(message) unless `condition`. */
public func require(_ condition: Bool, _ message: @autoclosure () -> String) throws {
    if !condition { throw IllegalArgumentException(message: message()) }
}

/** Kotlin's `check`: throws IllegalStateException(message) unless `condition`. */
public func check(_ condition: Bool, _ message: @autoclosure () -> String) throws {
    if !condition { throw IllegalStateException(message: message()) }
}
