package veil.core

/**
 * The states of one streaming session (toolkit/serve/lifecycle.py is the reference; testvectors/lifecycle.json
 * holds every transition). FINISHED, FAILED and INTERRUPTED are terminal: nothing is held there.
 */
enum class SessionState(val wireName: String, val terminal: Boolean) {
    IDLE("idle", false),
    /** The microphone is open; the model loads and the socket connects while audio piles up in the ring. */
    STARTING("starting", false),
    /** READY received: chunks stream. */
    RUNNING("running", false),
    /** Stop pressed: the microphone is released, the backlog and END go out, FINAL is awaited. */
    STOPPING("stopping", false),
    FINISHED("finished", true),
    FAILED("failed", true),
    /** The system took the microphone (a call, another app) or the screen went away. */
    INTERRUPTED("interrupted", true);

    companion object {
        @JvmStatic
        fun byName(name: String): SessionState = values().firstOrNull { it.wireName == name }
            ?: throw IllegalArgumentException("unknown session state '$name'")
    }
}

/** What happens to a session, in the words of testvectors/lifecycle.json. */
enum class LifecycleEvent(val wireName: String) {
    /** The microphone is being opened (it is held from here on, even if opening fails). */
    START("start"),
    /** The WebSocket was created (held from here on). */
    CONNECTED("connected"),
    READY("ready"),
    STOP("stop"),
    FINAL("final"),
    FAIL("fail"),
    INTERRUPT("interrupt");

    companion object {
        @JvmStatic
        fun byName(name: String): LifecycleEvent = values().firstOrNull { it.wireName == name }
            ?: throw IllegalArgumentException("unknown lifecycle event '$name'")
    }
}

/** What a session holds and must give back. */
enum class SessionResource(val wireName: String) {
    MICROPHONE("microphone"),
    SOCKET("socket")
}

/** Gives a resource back (stop and release the recorder; cancel the WebSocket). Must not throw. */
interface SessionReleaser {
    fun release(resource: SessionResource)
}

/** One step of the lifecycle: the next state and what is acquired and released, in order. */
class LifecycleStep(val state: SessionState, val microphone: Boolean, val socket: Boolean,
                    val acquired: List<SessionResource>, val released: List<SessionResource>)

/**
 * The lifecycle of one streaming session, shared by the Android and iOS apps: it holds the microphone from START and
 * the socket from CONNECTED, and releases each exactly once, the microphone first: at STOP (the microphone), at
 * FINAL, FAIL and INTERRUPT (everything still held). A socket created after the session ended is released at once.
 * Events that do not apply to the state are ignored. Thread-safe; [releaser] runs outside the lock, on the thread
 * that brought the event.
 */
class SessionLifecycle(private val releaser: SessionReleaser) {
    private val lock = Any()
    private var state = SessionState.IDLE
    private var microphone = false
    private var socket = false

    fun state(): SessionState = synchronized(lock) { state }

    fun holds(resource: SessionResource): Boolean = synchronized(lock) {
        if (resource == SessionResource.MICROPHONE) microphone else socket
    }

    /** Apply `event`; true when it changed the state. What it releases is released before this returns. */
    fun on(event: LifecycleEvent): Boolean {
        val (changed, released) = synchronized(lock) {
            val s = step(state, microphone, socket, event)
            val changed = s.state != state
            state = s.state
            microphone = s.microphone
            socket = s.socket
            Pair(changed, s.released)
        }
        var failure: RuntimeException? = null
        for (r in released) {
            try {
                releaser.release(r)
            } catch (e: RuntimeException) {
                if (failure == null) failure = e  // the socket is still released after a failing microphone
            }
        }
        if (failure != null) throw failure
        return changed
    }

    companion object {
        /** The transition table itself (toolkit/serve/lifecycle.py's `step`). */
        @JvmStatic
        fun step(state: SessionState, microphone: Boolean, socket: Boolean, event: LifecycleEvent): LifecycleStep {
            val none = emptyList<SessionResource>()
            fun stay() = LifecycleStep(state, microphone, socket, none, none)
            if (state.terminal) {
                return if (event == LifecycleEvent.CONNECTED) {
                    LifecycleStep(state, microphone, socket, none, listOf(SessionResource.SOCKET))
                } else {
                    stay()
                }
            }
            when (event) {
                LifecycleEvent.FINAL, LifecycleEvent.FAIL, LifecycleEvent.INTERRUPT -> {
                    if (state == SessionState.IDLE && event == LifecycleEvent.FINAL) return stay()
                    val released = ArrayList<SessionResource>()
                    if (microphone) released.add(SessionResource.MICROPHONE)
                    if (socket) released.add(SessionResource.SOCKET)
                    val next = when (event) {
                        LifecycleEvent.FINAL -> SessionState.FINISHED
                        LifecycleEvent.FAIL -> SessionState.FAILED
                        else -> SessionState.INTERRUPTED
                    }
                    return LifecycleStep(next, false, false, none, released)
                }
                LifecycleEvent.START -> return if (state == SessionState.IDLE) {
                    LifecycleStep(SessionState.STARTING, true, socket, listOf(SessionResource.MICROPHONE), none)
                } else {
                    stay()
                }
                else -> if (state == SessionState.IDLE) return stay()
            }
            return when (event) {
                LifecycleEvent.CONNECTED -> if (socket) stay() else LifecycleStep(state, microphone, true,
                    listOf(SessionResource.SOCKET), none)
                LifecycleEvent.READY -> if (state == SessionState.STARTING) {
                    LifecycleStep(SessionState.RUNNING, microphone, socket, none, none)
                } else {
                    stay()
                }
                else -> if (state == SessionState.STARTING || state == SessionState.RUNNING) {
                    LifecycleStep(SessionState.STOPPING, false, socket, none,
                        if (microphone) listOf(SessionResource.MICROPHONE) else none)
                } else {
                    stay()
                }
            }
        }
    }
}
