// Mirrors android_demo/core/src/main/kotlin/veil/core/ProtocolClient.kt
//
// Kotlin's `synchronized(lock) { ... }` is an NSLock taken and released explicitly; where the Kotlin block
// returns from the enclosing function, the Swift code unlocks before returning. Callbacks run after the lock
// is released, as in Kotlin.
import Foundation

/**
 * How a session ended badly: the protocol's typed code (from an ERROR frame, the HTTP status of a refused upgrade,
 * or the WebSocket close code), its name, and one line for a person. `retry` is PROTOCOL.md §5's advice.
 */
public final class SessionError: CustomStringConvertible {
    /** RFC 6455's "abnormal closure": the connection broke without a close frame. */
    public static let CONNECTION_LOST = 1006
    public static let MESSAGE_TOO_BIG = 1009

    public let code: Int
    public let name: String
    public let message: String

    public init(_ code: Int, _ name: String, _ message: String) {
        self.code = code
        self.name = name
        self.message = message
    }

    public var retry: String {
        ErrorCodes.byCode(code)?.retry ?? (code == SessionError.CONNECTION_LOST ? "new session" : "no")
    }

    public var description: String { "\(code) \(name): \(message)" }
}

/** What a session reports, in order: ready, one partial per chunk, then final, or failed (at most once). */
public protocol SessionListener: AnyObject {
    func onReady(_ ready: Message.Ready)

    /** The transcript after chunk `partial.seq`; `roundTripMs`: from sending that chunk to this reply. */
    func onPartial(_ partial: Message.Partial, _ roundTripMs: Double)

    /** The transcript of the utterance; `roundTripMs`: from sending END to this reply. */
    func onFinal(_ message: Message.Final, _ roundTripMs: Double)

    func onFailed(_ error: SessionError)
}

/**
 * One utterance over the WebSocket transport of `veil serve` (docs/PROTOCOL.md), the phone twin of the Python
 * reference client (toolkit/serve/client.py): HELLO on open, CHUNKs as the prefix produces them (pipelined:
 * queued until READY, then sent without waiting for their PARTIALs), END with the chunk count, FINAL. Every
 * refusal surfaces once through `SessionListener.onFailed` with the typed code. Thread-safe; callbacks run on the
 * transport's thread, never while the client's lock is held.
 */
public final class ProtocolClient {
    public enum State { case NEW, CONNECTING, OPEN, READY, ENDING, DONE, FAILED }

    /** ws(s)://host:port/v1/stream, from `server`: ws(s)://host:port/v1/stream, or http(s)://host:port. */
    public let url: String
    private let transport: Transport
    private let hello: Message.Hello
    /** The HELLO frame, encoded up front: a HELLO that cannot be encoded is refused by `init`. */
    private let helloFrame: [UInt8]
    private let listener: SessionListener
    private let lock = NSLock()
    private var current = State.NEW
    private var pending: [[UInt8]] = []
    private var sentAtNs: [Int: UInt64] = [:]
    private var endSentAtNs: UInt64 = 0
    private var endRequested = false
    private var chunksSent = 0
    private var ready: Message.Ready?

    public init(_ transport: Transport, _ server: String, _ hello: Message.Hello, _ token: String?,
                _ listener: SessionListener) throws {
        self.url = try ProtocolClient.websocketUrl(server)
        self.transport = transport
        // the bearer token travels in the HELLO (unless it already carries one), never in a header: URLSession
        // reserves `Authorization`, and the server takes the token from either
        if let token = token, !token.isEmpty, hello.token.isEmpty {
            self.hello = Message.Hello(hello.checkpointSha256, hello.splitLayer, hello.codec, hello.sampleRate,
                                       hello.chunkSamples, hello.frameSamples, hello.dim, token)
        } else {
            self.hello = hello
        }
        self.helloFrame = try VeilProtocol.encode(self.hello)
        self.listener = listener
    }

    /** The state now. */
    public func state() -> State {
        lock.lock()
        defer { lock.unlock() }
        return current
    }

    /** Open the connection; HELLO goes out as soon as it is open. */
    public func start() throws {
        lock.lock()
        if current != .NEW {
            lock.unlock()
            throw IllegalStateException(message: "session already started")
        }
        current = .CONNECTING
        lock.unlock()
        transport.connect(url, [:], Events(self))
    }

    /** Queue chunk `seq` (0, 1, ... in order; resending an earlier seq with the same bytes is allowed). */
    public func sendChunk(_ seq: Int, _ validSamples: Int, _ payload: [UInt8]) throws {
        let frame = try VeilProtocol.encode(Message.Chunk(seq, validSamples, payload))
        lock.lock()
        if endRequested {
            lock.unlock()
            throw IllegalStateException(message: "chunk after END")
        }
        if current == .FAILED {
            lock.unlock()
            return
        }
        let error: SessionError?
        if let limit = ready?.maxMessageBytes, frame.count > limit {
            error = fail(SessionError(4413, "message_too_big", "chunk \(seq) is \(frame.count) bytes; the server takes \(limit)"))
        } else {
            chunksSent = max(chunksSent, seq + 1)
            if sentAtNs[seq] == nil { sentAtNs[seq] = ProtocolClient.nanoTime() }
            error = enqueue(frame)
        }
        lock.unlock()
        if let error = error { listener.onFailed(error) }
    }

    /** No more chunks: END with the count sent; FINAL follows. */
    public func end() throws {
        lock.lock()
        if current == .FAILED || current == .DONE || endRequested {
            lock.unlock()
            return
        }
        endRequested = true
        let frame: [UInt8]
        do {
            frame = try VeilProtocol.encode(Message.End(chunksSent))
        } catch {
            lock.unlock()
            throw error
        }
        let e = enqueue(frame)
        if e == nil && current == .READY {
            endSentAtNs = ProtocolClient.nanoTime()
            current = .ENDING
        }
        lock.unlock()
        if let e = e { listener.onFailed(e) }
    }

    /** Give up the session (no callback follows). */
    public func cancel() {
        lock.lock()
        if current == .DONE || current == .FAILED {
            lock.unlock()
            return
        }
        current = .FAILED
        lock.unlock()
        transport.cancel()
    }

    /** Send now if READY, else keep for READY; a full send buffer fails the session. Called under the lock. */
    private func enqueue(_ frame: [UInt8]) -> SessionError? {
        if current != .READY {
            pending.append(frame)
            return nil
        }
        if !transport.sendBinary(frame) {
            return fail(SessionError(SessionError.CONNECTION_LOST, "send_failed",
                "the connection is closed or its send buffer is full"))
        }
        return nil
    }

    /** Mark the session failed once; returns the error to report (nil if it had already ended). Under the lock. */
    private func fail(_ error: SessionError) -> SessionError? {
        if current == .DONE || current == .FAILED { return nil }
        current = .FAILED
        transport.cancel()
        return error
    }

    /** `body` under the lock. */
    private func locked<T>(_ body: () -> T) -> T {
        lock.lock()
        defer { lock.unlock() }
        return body()
    }

    private func onMessage(_ bytes: [UInt8]) {
        let message: Message
        do {
            message = try VeilProtocol.decode(bytes)
        } catch let e as ProtocolException {
            report(locked { fail(SessionError(e.code, e.error.name, "server frame: \(e.message)")) })
            return
        } catch {
            preconditionFailure("VeilProtocol.decode throws only ProtocolException, not \(error)")
        }
        switch message {
        case let m as Message.Error:
            report(locked { fail(SessionError(m.code, m.name, m.message)) })
        case let m as Message.Ready:
            let error: SessionError? = locked {
                if current != .OPEN { return fail(unexpected("READY")) }
                current = .READY
                ready = m
                var sendError: SessionError? = nil
                for frame in pending where sendError == nil {
                    sendError = enqueue(frame)
                }
                pending.removeAll()
                if sendError == nil && endRequested {
                    endSentAtNs = ProtocolClient.nanoTime()
                    current = .ENDING
                }
                return sendError
            }
            if error == nil && state() != .FAILED { listener.onReady(m) } else { report(error) }
        case let m as Message.Partial:
            let sentAt: UInt64? = locked {
                (current != .READY && current != .ENDING) ? nil : sentAtNs[m.seq]
            }
            if let sentAt = sentAt {
                listener.onPartial(m, Double(ProtocolClient.nanoTime() - sentAt) / 1e6)
            } else {
                report(locked { fail(unexpected("PARTIAL for chunk \(m.seq)")) })
            }
        case let m as Message.Final:
            let at: UInt64? = locked {
                if current != .ENDING { return nil }
                current = .DONE
                return endSentAtNs
            }
            if let at = at {
                listener.onFinal(m, Double(ProtocolClient.nanoTime() - at) / 1e6)
                transport.close(1000, "")
            } else {
                report(locked { fail(unexpected("FINAL")) })
            }
        default:
            report(locked { fail(unexpected(message.type.name)) })
        }
    }

    private func unexpected(_ what: String) -> SessionError {
        SessionError(4405, "unexpected_message", "the server sent \(what) in state \(current)")
    }

    private func report(_ error: SessionError?) {
        if let error = error { listener.onFailed(error) }
    }

    private static func nanoTime() -> UInt64 { DispatchTime.now().uptimeNanoseconds }

    /** The transport's events, for this client (Kotlin's inner class Events). */
    private final class Events: TransportListener {
        private let client: ProtocolClient

        init(_ client: ProtocolClient) {
            self.client = client
        }

        func onOpen() {
            let c = client
            let error: SessionError? = c.locked {
                if c.current != .CONNECTING {
                    c.transport.cancel()  // cancelled while connecting: the socket that opened is not kept
                    return nil
                }
                c.current = .OPEN
                return c.transport.sendBinary(c.helloFrame) ? nil : c.fail(SessionError(SessionError.CONNECTION_LOST, "send_failed", "could not send HELLO"))
            }
            c.report(error)
        }

        func onBinary(_ bytes: [UInt8]) { client.onMessage(bytes) }

        func onText(_ text: String) {
            let c = client
            c.report(c.locked { c.fail(SessionError(4400, "bad_frame", "the server sent a text message; not a Veil server?")) })
        }

        func onClosed(_ code: Int, _ reason: String) {
            let c = client
            let error: SessionError? = c.locked {
                if c.current == .DONE || c.current == .FAILED { return nil }
                if let known = ErrorCodes.byCode(code) {
                    return c.fail(SessionError(code, known.name, reason))
                }
                if code == SessionError.MESSAGE_TOO_BIG {
                    return c.fail(SessionError(code, "message_too_big",
                        "a message exceeded the server's limit (closed before it was read)"))
                }
                return c.fail(SessionError(code, "closed", "the server closed the session before FINAL (\(code) \(reason))"))
            }
            c.report(error)
        }

        func onFailure(_ failure: TransportFailure) {
            let c = client
            c.report(c.locked { c.fail(ProtocolClient.refusal(failure)) })
        }
    }

    /** ws(s)://host:port/v1/stream from any of http(s)://host:port, ws(s)://host:port[/v1/stream]. */
    public static func websocketUrl(_ server: String) throws -> String {
        var base = server
        while base.hasSuffix("/") { base.removeLast() }
        if base.hasPrefix("http://") { base = "ws://" + base.dropFirst("http://".count) }
        if base.hasPrefix("https://") { base = "wss://" + base.dropFirst("https://".count) }
        try require(base.hasPrefix("ws://") || base.hasPrefix("wss://"),
                    "server '\(server)' is not an http(s):// or ws(s):// address")
        return base.hasSuffix("/v1/stream") ? base : base + "/v1/stream"
    }

    /** A failed connection -> the typed error: the ERROR frame of a refused upgrade, else its HTTP status. */
    public static func refusal(_ failure: TransportFailure) -> SessionError {
        if let body = failure.body, !body.isEmpty {
            // not a Veil error frame: fall through to the status
            if let m = (try? VeilProtocol.decode(body)) as? Message.Error {
                return SessionError(m.code, m.name, m.message)
            }
        }
        let status = failure.httpStatus
        let code: Int?
        switch status ?? 0 {
        case 401: code = 4401
        case 429: code = 4430
        case 503: code = 4503
        default: code = nil
        }
        if let code = code, let known = ErrorCodes.byCode(code), let status = status {
            return SessionError(code, known.name, "HTTP \(status) at the upgrade")
        }
        let what = status != nil ? "HTTP \(status!) at the upgrade" : failure.message
        return SessionError(SessionError.CONNECTION_LOST, "connection_lost", what)
    }
}
