// Swift only: the Transport of the app and the tests. It plays the part of OkHttpTransport.kt (the Android app)
// and JdkWebSocketTransport.kt (the Kotlin tests) over Foundation's URLSessionWebSocketTask. On Linux URLSession
// lives in FoundationNetworking; its WebSocket support needs a libcurl built with WebSockets (7.86+), which some
// swift.org Linux toolchains lack (swift-corelibs-foundation issue 5431): the connection then fails with
// onFailure, never silently. The completion-handler forms of send and receive are public in corelibs only from
// Swift 6.1 (swift-corelibs-foundation #5030); older Linux toolchains build the async fallback below.
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/**
 * A `Transport` over URLSessionWebSocketTask. Events are delivered one at a time, in order, on the session's
 * serial delegate queue, never while this object's lock is held (the protocol client cancels the transport from
 * inside its callbacks). Sends are queued by URLSession in order; `sendBinary` refuses once `MAX_QUEUED_BYTES` are
 * waiting (OkHttp's limit), so a stalled connection fails the session instead of growing memory.
 */
public final class URLSessionTransport: NSObject, Transport, URLSessionWebSocketDelegate {
    /** Bytes queued for sending at most (OkHttp's 16 MiB). */
    public static let MAX_QUEUED_BYTES = 16 << 20
    /** Largest message accepted from the server (a PARTIAL or FINAL carries at most 1 MiB of text). */
    public static let MAX_MESSAGE_BYTES = 4 << 20

    private let lock = NSLock()
    private let timeoutSeconds: Double
    private var session: URLSession?
    private var task: URLSessionWebSocketTask?
    private var listener: TransportListener?
    private var open = false
    private var finished = false
    private var queuedBytes = 0
    #if !(canImport(Darwin) || compiler(>=6.1))
    private var lastSend: Task<Void, Never>?
    #endif

    /** `timeoutSeconds`: how long the opening handshake may take. */
    public init(timeoutSeconds: Double = 10) {
        self.timeoutSeconds = timeoutSeconds
        super.init()
    }

    public func connect(_ url: String, _ headers: [String: String], _ listener: TransportListener) {
        guard let target = URL(string: url) else {
            listener.onFailure(TransportFailure("\(url): not a URL", nil, nil, nil))
            return
        }
        var request = URLRequest(url: target, timeoutInterval: timeoutSeconds)
        for (key, value) in headers { request.setValue(value, forHTTPHeaderField: key) }
        let queue = OperationQueue()
        queue.maxConcurrentOperationCount = 1
        queue.name = "veil-websocket"
        let session = URLSession(configuration: .default, delegate: self, delegateQueue: queue)
        let task = session.webSocketTask(with: request)
        task.maximumMessageSize = URLSessionTransport.MAX_MESSAGE_BYTES
        lock.lock()
        self.session = session
        self.task = task
        self.listener = listener
        lock.unlock()
        task.resume()
    }

    public func sendBinary(_ bytes: [UInt8]) -> Bool {
        lock.lock()
        guard let task = task, open, !finished, queuedBytes + bytes.count <= URLSessionTransport.MAX_QUEUED_BYTES else {
            lock.unlock()
            return false
        }
        queuedBytes += bytes.count
        lock.unlock()
        let count = bytes.count
        #if canImport(Darwin) || compiler(>=6.1)
        task.send(.data(Data(bytes))) { [weak self] _ in
            // a failed send ends the task: didCompleteWithError reports it
            self?.sent(count)
        }
        #else
        // swift-corelibs-foundation before 6.1 keeps the completion-handler send private; its public async send
        // runs in a Task, each one after the previous, so that frames leave in order
        lock.lock()
        let previous = lastSend
        lastSend = Task { [weak self] in
            await previous?.value
            do {
                try await task.send(.data(Data(bytes)))
            } catch {
                // a failed send ends the task: didCompleteWithError reports it
            }
            self?.sent(count)
        }
        lock.unlock()
        #endif
        return true
    }

    private func sent(_ count: Int) {
        lock.lock()
        queuedBytes -= count
        lock.unlock()
    }

    public func close(_ code: Int, _ reason: String) {
        lock.lock()
        let task = self.task
        lock.unlock()
        let closeCode = URLSessionWebSocketTask.CloseCode(rawValue: code) ?? .normalClosure
        task?.cancel(with: closeCode, reason: Data(reason.utf8))
    }

    public func cancel() {
        lock.lock()
        finished = true
        let task = self.task
        let session = self.session
        listener = nil
        lock.unlock()
        task?.cancel()
        session?.invalidateAndCancel()
    }

    /** The listener, unless the connection already reported its end (then nil: no further events). */
    private func current() -> TransportListener? {
        lock.lock()
        defer { lock.unlock() }
        return finished ? nil : listener
    }

    /** The last event: the listener (if not already finished), after which no event follows. */
    private func finish() -> TransportListener? {
        lock.lock()
        let l = finished ? nil : listener
        finished = true
        listener = nil
        let session = self.session
        lock.unlock()
        session?.finishTasksAndInvalidate()
        return l
    }

    private func deliver(_ message: URLSessionWebSocketTask.Message) {
        switch message {
        case .data(let data):
            current()?.onBinary([UInt8](data))
        case .string(let text):
            current()?.onText(text)
        @unknown default:
            current()?.onText("")
        }
    }

    private func receiveNext(_ task: URLSessionWebSocketTask) {
        #if canImport(Darwin) || compiler(>=6.1)
        task.receive { [weak self] result in
            guard let self = self else { return }
            switch result {
            case .success(let message):
                self.deliver(message)
                self.receiveNext(task)
            case .failure:
                // the end of the connection is reported once, by didCloseWith or didCompleteWithError
                break
            }
        }
        #else
        // corelibs before 6.1: the public async receive, one message at a time, handed to the delegate queue so that
        // messages and the close arrive in order, as the completion handlers do
        Task { [weak self] in
            while true {
                let message: URLSessionWebSocketTask.Message
                do {
                    message = try await task.receive()
                } catch {
                    return  // the end is reported by didCloseWith or didCompleteWithError
                }
                guard let self = self, let queue = self.session?.delegateQueue else { return }
                queue.addOperation { self.deliver(message) }
            }
        }
        #endif
    }

    public func urlSession(_ session: URLSession, webSocketTask: URLSessionWebSocketTask,
                           didOpenWithProtocol negotiated: String?) {
        lock.lock()
        open = true
        lock.unlock()
        current()?.onOpen()
        receiveNext(webSocketTask)
    }

    public func urlSession(_ session: URLSession, webSocketTask: URLSessionWebSocketTask,
                           didCloseWith closeCode: URLSessionWebSocketTask.CloseCode, reason: Data?) {
        let text = reason.map { String(decoding: $0, as: UTF8.self) } ?? ""
        finish()?.onClosed(closeCode.rawValue, text)
    }

    public func urlSession(_ session: URLSession, task: URLSessionTask, didCompleteWithError error: Error?) {
        guard let listener = finish() else { return }
        if let ws = task as? URLSessionWebSocketTask, ws.closeCode != .invalid {
            listener.onClosed(ws.closeCode.rawValue, ws.closeReason.map { String(decoding: $0, as: UTF8.self) } ?? "")
            return
        }
        let status = (task.response as? HTTPURLResponse)?.statusCode
        let what = error.map { String(describing: $0) } ?? "the connection closed without a close frame"
        let url = task.originalRequest?.url?.absoluteString ?? "websocket"
        listener.onFailure(TransportFailure("\(url): \(what)", status, nil, error))
    }
}
