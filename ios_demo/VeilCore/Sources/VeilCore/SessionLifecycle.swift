// Mirrors android_demo/core/src/main/kotlin/veil/core/SessionLifecycle.kt
import Foundation

/**
 * The states of one streaming session (toolkit/serve/lifecycle.py is the reference; testvectors/lifecycle.json
 * holds every transition). `finished`, `failed` and `interrupted` are terminal: nothing is held there.
 */
public enum SessionState: String, CaseIterable, Sendable {
    case idle
    /** The microphone is open; the model loads and the socket connects while audio piles up in the ring. */
    case starting
    /** READY received: chunks stream. */
    case running
    /** Stop pressed: the microphone is released, the backlog and END go out, FINAL is awaited. */
    case stopping
    case finished
    case failed
    /** The system took the microphone (a call, Siri, another app) or the screen went away. */
    case interrupted

    public var wireName: String { rawValue }

    public var terminal: Bool { self == .finished || self == .failed || self == .interrupted }

    public static func byName(_ name: String) throws -> SessionState {
        guard let s = SessionState(rawValue: name) else {
            throw IllegalArgumentException(message: "unknown session state '\(name)'")
        }
        return s
    }
}

/** What happens to a session, in the words of testvectors/lifecycle.json. */
public enum LifecycleEvent: String, CaseIterable, Sendable {
    /** The microphone is being opened (it is held from here on, even if opening fails). */
    case start
    /** The WebSocket was created (held from here on). */
    case connected
    case ready
    case stop
    case `final`
    case fail
    case interrupt

    public var wireName: String { rawValue }

    public static func byName(_ name: String) throws -> LifecycleEvent {
        guard let e = LifecycleEvent(rawValue: name) else {
            throw IllegalArgumentException(message: "unknown lifecycle event '\(name)'")
        }
        return e
    }
}

/** What a session holds and must give back. */
public enum SessionResource: String, CaseIterable, Sendable {
    case microphone
    case socket

    public var wireName: String { rawValue }
}

/** Gives a resource back (stop the engine and deactivate the audio session; cancel the WebSocket). */
public protocol SessionReleaser: AnyObject {
    func release(_ resource: SessionResource)
}

/** One step of the lifecycle: the next state and what is acquired and released, in order. */
public struct LifecycleStep: Sendable {
    public let state: SessionState
    public let microphone: Bool
    public let socket: Bool
    public let acquired: [SessionResource]
    public let released: [SessionResource]
}

/**
 * The lifecycle of one streaming session, shared by the Android and iOS apps: it holds the microphone from `start`
 * and the socket from `connected`, and releases each exactly once, the microphone first: at `stop` (the microphone),
 * at `final`, `fail` and `interrupt` (everything still held). A socket created after the session ended is released
 * at once. Events that do not apply to the state are ignored. Thread-safe; the releaser runs outside the lock, on
 * the thread that brought the event.
 */
public final class SessionLifecycle: @unchecked Sendable {
    private let releaser: SessionReleaser
    private let lock = NSLock()
    private var current = SessionState.idle
    private var microphone = false
    private var socket = false

    public init(_ releaser: SessionReleaser) {
        self.releaser = releaser
    }

    public func state() -> SessionState {
        lock.lock()
        defer { lock.unlock() }
        return current
    }

    public func holds(_ resource: SessionResource) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        return resource == .microphone ? microphone : socket
    }

    /** Apply `event`; true when it changed the state. What it releases is released before this returns. */
    @discardableResult
    public func on(_ event: LifecycleEvent) -> Bool {
        lock.lock()
        let s = SessionLifecycle.step(current, microphone, socket, event)
        let changed = s.state != current
        current = s.state
        microphone = s.microphone
        socket = s.socket
        lock.unlock()
        for r in s.released { releaser.release(r) }
        return changed
    }

    /** The transition table itself (toolkit/serve/lifecycle.py's `step`). */
    public static func step(_ state: SessionState, _ microphone: Bool, _ socket: Bool,
                            _ event: LifecycleEvent) -> LifecycleStep {
        let stay = LifecycleStep(state: state, microphone: microphone, socket: socket, acquired: [], released: [])
        if state.terminal {
            return event == .connected
                ? LifecycleStep(state: state, microphone: microphone, socket: socket, acquired: [], released: [.socket])
                : stay
        }
        switch event {
        case .final, .fail, .interrupt:
            if state == .idle && event == .final { return stay }
            var released: [SessionResource] = []
            if microphone { released.append(.microphone) }
            if socket { released.append(.socket) }
            let next: SessionState = event == .final ? .finished : event == .fail ? .failed : .interrupted
            return LifecycleStep(state: next, microphone: false, socket: false, acquired: [], released: released)
        case .start:
            return state == .idle
                ? LifecycleStep(state: .starting, microphone: true, socket: socket, acquired: [.microphone], released: [])
                : stay
        case .connected:
            if state == .idle || socket { return stay }
            return LifecycleStep(state: state, microphone: microphone, socket: true, acquired: [.socket], released: [])
        case .ready:
            return state == .starting
                ? LifecycleStep(state: .running, microphone: microphone, socket: socket, acquired: [], released: [])
                : stay
        case .stop:
            guard state == .starting || state == .running else { return stay }
            return LifecycleStep(state: .stopping, microphone: false, socket: socket, acquired: [],
                                 released: microphone ? [.microphone] : [])
        }
    }
}
