// Mirrors android_demo/core/src/main/kotlin/veil/core/Transport.kt
import Foundation

/**
 * A WebSocket as the protocol client needs it, whatever implements it: URLSessionWebSocketTask here
 * (URLSessionTransport, in the app and in the tests), OkHttp in the Android app, java.net.http in the Kotlin
 * tests. Events may arrive on any thread, one at a time, in order.
 */
public protocol Transport: AnyObject {
    /** Open `url` (ws:// or wss://) with extra request `headers`; events go to `listener`. */
    func connect(_ url: String, _ headers: [String: String], _ listener: TransportListener)

    /** Queue one binary message; false when the socket is closed or its send buffer is full. */
    func sendBinary(_ bytes: [UInt8]) -> Bool

    /** Start the closing handshake (RFC 6455 status `code`). */
    func close(_ code: Int, _ reason: String)

    /** Drop the connection without a handshake. */
    func cancel()
}

/** What a `Transport` reports. */
public protocol TransportListener: AnyObject {
    func onOpen()

    func onBinary(_ bytes: [UInt8])

    /** A text message: not part of the Veil protocol (the client refuses it). */
    func onText(_ text: String)

    /** The peer closed (or the closing handshake finished) with `code` and `reason`. */
    func onClosed(_ code: Int, _ reason: String)

    /** The connection could not be opened or broke; no further events follow. */
    func onFailure(_ failure: TransportFailure)
}

/**
 * A connection that failed: at the upgrade the server's HTTP status and body (Veil answers a refused upgrade
 * with an ERROR frame as body: 401, 429, 503), else only the cause.
 */
public final class TransportFailure: Error, CustomStringConvertible, @unchecked Sendable {
    public let message: String
    public let httpStatus: Int?
    public let body: [UInt8]?
    public let cause: Error?

    public init(_ message: String, _ httpStatus: Int?, _ body: [UInt8]?, _ cause: Error?) {
        self.message = message
        self.httpStatus = httpStatus
        self.body = body
        self.cause = cause
    }

    public var description: String { message }
}
