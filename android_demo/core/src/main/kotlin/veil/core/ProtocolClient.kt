package veil.core

/**
 * How a session ended badly: the protocol's typed code (from an ERROR frame, the HTTP status of a refused upgrade,
 * or the WebSocket close code), its name, and one line for a person. [retry] is PROTOCOL.md §5's advice.
 */
class SessionError(val code: Int, val name: String, val message: String) {
    val retry: String get() = ErrorCodes.byCode(code)?.retry ?: if (code == CONNECTION_LOST) "new session" else "no"

    override fun toString(): String = "$code $name: $message"

    companion object {
        /** RFC 6455's "abnormal closure": the connection broke without a close frame. */
        const val CONNECTION_LOST = 1006
        const val MESSAGE_TOO_BIG = 1009
    }
}

/** What a session reports, in order: ready, one partial per chunk, then final, or failed (at most once). */
interface SessionListener {
    fun onReady(ready: Message.Ready)

    /** The transcript after chunk `partial.seq`; `roundTripMs`: from sending that chunk to this reply. */
    fun onPartial(partial: Message.Partial, roundTripMs: Double)

    /** The transcript of the utterance; `roundTripMs`: from sending END to this reply. */
    fun onFinal(final: Message.Final, roundTripMs: Double)

    fun onFailed(error: SessionError)
}

/**
 * One utterance over the WebSocket transport of `veil serve` (docs/PROTOCOL.md), the phone twin of the Python
 * reference client (toolkit/serve/client.py): HELLO on open, CHUNKs as the prefix produces them (pipelined:
 * queued until READY, then sent without waiting for their PARTIALs), END with the chunk count, FINAL. Every
 * refusal surfaces once through [SessionListener.onFailed] with the typed code. Thread-safe; callbacks run on the
 * transport's thread, never while the client's lock is held.
 */
class ProtocolClient(
    private val transport: Transport,
    /** ws(s)://host:port/v1/stream, or http(s)://host:port (the path is added). */
    server: String,
    hello: Message.Hello,
    /**
     * Bearer token, sent in the HELLO (unless the HELLO already carries one), never in a header: Apple's URLSession
     * reserves `Authorization`, and the server takes the token from either.
     */
    token: String?,
    private val listener: SessionListener
) {
    enum class State { NEW, CONNECTING, OPEN, READY, ENDING, DONE, FAILED }

    val url: String = websocketUrl(server)
    private val hello: Message.Hello = if (token == null || token.length == 0 || hello.token.length > 0) hello else
        Message.Hello(hello.checkpointSha256, hello.splitLayer, hello.codec, hello.sampleRate, hello.chunkSamples,
            hello.frameSamples, hello.dim, token)
    private val lock = Any()
    private var state = State.NEW
    private val pending = ArrayList<ByteArray>()
    private val sentAtNs = HashMap<Long, Long>()
    private var endSentAtNs = 0L
    private var endRequested = false
    private var chunksSent = 0L
    private var ready: Message.Ready? = null

    /** The state now. */
    fun state(): State = synchronized(lock) { state }

    /** Open the connection; HELLO goes out as soon as it is open. */
    fun start() {
        synchronized(lock) {
            check(state == State.NEW) { "session already started" }
            state = State.CONNECTING
        }
        transport.connect(url, emptyMap(), Events())
    }

    /** Queue chunk `seq` (0, 1, ... in order; resending an earlier seq with the same bytes is allowed). */
    fun sendChunk(seq: Long, validSamples: Long, payload: ByteArray) {
        val frame = Protocol.encode(Message.Chunk(seq, validSamples, payload))
        val error = synchronized(lock) {
            check(!endRequested) { "chunk after END" }
            if (state == State.FAILED) return
            val limit = ready?.maxMessageBytes
            if (limit != null && frame.size > limit) {
                fail(SessionError(4413, "message_too_big", "chunk $seq is ${frame.size} bytes; the server takes $limit"))
            } else {
                chunksSent = Math.max(chunksSent, seq + 1)
                if (!sentAtNs.containsKey(seq)) sentAtNs[seq] = System.nanoTime()
                enqueue(frame)
            }
        }
        if (error != null) listener.onFailed(error)
    }

    /** No more chunks: END with the count sent; FINAL follows. */
    fun end() {
        val error = synchronized(lock) {
            if (state == State.FAILED || state == State.DONE || endRequested) return
            endRequested = true
            val e = enqueue(Protocol.encode(Message.End(chunksSent)))
            if (e == null && state == State.READY) {
                endSentAtNs = System.nanoTime()
                state = State.ENDING
            }
            e
        }
        if (error != null) listener.onFailed(error)
    }

    /** Give up the session (no callback follows). */
    fun cancel() {
        synchronized(lock) {
            if (state == State.DONE || state == State.FAILED) return
            state = State.FAILED
        }
        transport.cancel()
    }

    /** Send now if READY, else keep for READY; a full send buffer fails the session. Called under the lock. */
    private fun enqueue(frame: ByteArray): SessionError? {
        if (state != State.READY) {
            pending.add(frame)
            return null
        }
        if (!transport.sendBinary(frame)) {
            return fail(SessionError(SessionError.CONNECTION_LOST, "send_failed",
                "the connection is closed or its send buffer is full"))
        }
        return null
    }

    /** Mark the session failed once; returns the error to report (null if it had already ended). */
    private fun fail(error: SessionError): SessionError? {
        if (state == State.DONE || state == State.FAILED) return null
        state = State.FAILED
        transport.cancel()
        return error
    }

    private fun onMessage(bytes: ByteArray) {
        val message = try {
            Protocol.decode(bytes)
        } catch (e: ProtocolException) {
            report(synchronized(lock) { fail(SessionError(e.code, e.error.name, "server frame: ${e.message}")) })
            return
        }
        when (message) {
            is Message.Error -> report(synchronized(lock) { fail(SessionError(message.code, message.name, message.message)) })
            is Message.Ready -> {
                val ok = synchronized(lock) {
                    if (state != State.OPEN) {
                        fail(unexpected("READY"))
                    } else {
                        state = State.READY
                        ready = message
                        var error: SessionError? = null
                        for (frame in pending) {
                            if (error == null) error = enqueue(frame)
                        }
                        pending.clear()
                        if (error == null && endRequested) {
                            endSentAtNs = System.nanoTime()
                            state = State.ENDING
                        }
                        error
                    }
                }
                if (ok == null && state() != State.FAILED) listener.onReady(message) else report(ok)
            }
            is Message.Partial -> {
                val rtt = synchronized(lock) {
                    if (state != State.READY && state != State.ENDING) null else sentAtNs[message.seq]
                }
                if (rtt == null) {
                    report(synchronized(lock) { fail(unexpected("PARTIAL for chunk ${message.seq}")) })
                } else {
                    listener.onPartial(message, (System.nanoTime() - rtt) / 1e6)
                }
            }
            is Message.Final -> {
                val at = synchronized(lock) {
                    if (state != State.ENDING) {
                        null
                    } else {
                        state = State.DONE
                        endSentAtNs
                    }
                }
                if (at == null) {
                    report(synchronized(lock) { fail(unexpected("FINAL")) })
                } else {
                    listener.onFinal(message, (System.nanoTime() - at) / 1e6)
                    transport.close(1000, "")
                }
            }
            else -> report(synchronized(lock) { fail(unexpected(message.type.name)) })
        }
    }

    private fun unexpected(what: String) = SessionError(4405, "unexpected_message", "the server sent $what in state $state")

    private fun report(error: SessionError?) {
        if (error != null) listener.onFailed(error)
    }

    private inner class Events : TransportListener {
        override fun onOpen() {
            val error = synchronized(lock) {
                if (state != State.CONNECTING) {
                    transport.cancel()  // cancelled while connecting: the socket that opened is not kept
                    null
                } else {
                    state = State.OPEN
                    if (transport.sendBinary(Protocol.encode(hello))) null else fail(SessionError(
                        SessionError.CONNECTION_LOST, "send_failed", "could not send HELLO"))
                }
            }
            report(error)
        }

        override fun onBinary(bytes: ByteArray) = onMessage(bytes)

        override fun onText(text: String) {
            report(synchronized(lock) { fail(SessionError(4400, "bad_frame", "the server sent a text message; not a Veil server?")) })
        }

        override fun onClosed(code: Int, reason: String) {
            val error = synchronized(lock) {
                if (state == State.DONE || state == State.FAILED) {
                    null
                } else {
                    val known = ErrorCodes.byCode(code)
                    fail(when {
                        known != null -> SessionError(code, known.name, reason)
                        code == SessionError.MESSAGE_TOO_BIG -> SessionError(code, "message_too_big",
                            "a message exceeded the server's limit (closed before it was read)")
                        else -> SessionError(code, "closed", "the server closed the session before FINAL ($code $reason)")
                    })
                }
            }
            report(error)
        }

        override fun onFailure(failure: TransportFailure) {
            val error = synchronized(lock) { fail(refusal(failure)) }
            report(error)
        }
    }

    companion object {
        /** ws(s)://host:port/v1/stream from any of http(s)://host:port, ws(s)://host:port[/v1/stream]. */
        @JvmStatic
        fun websocketUrl(server: String): String {
            var base = server.trimEnd('/')
            if (base.startsWith("http://")) base = "ws://" + base.substring("http://".length)
            if (base.startsWith("https://")) base = "wss://" + base.substring("https://".length)
            require(base.startsWith("ws://") || base.startsWith("wss://")) {
                "server '$server' is not an http(s):// or ws(s):// address"
            }
            return if (base.endsWith("/v1/stream")) base else "$base/v1/stream"
        }

        /** A failed connection -> the typed error: the ERROR frame of a refused upgrade, else its HTTP status. */
        @JvmStatic
        fun refusal(failure: TransportFailure): SessionError {
            val body = failure.body
            if (body != null && body.isNotEmpty()) {
                try {
                    val m = Protocol.decode(body)
                    if (m is Message.Error) return SessionError(m.code, m.name, m.message)
                } catch (e: ProtocolException) {
                    // not a Veil error frame: fall through to the status
                }
            }
            val status = failure.httpStatus
            val code = when (status) {
                401 -> 4401
                429 -> 4430
                503 -> 4503
                else -> null
            }
            if (code != null) {
                return SessionError(code, ErrorCodes.byCode(code)!!.name, "HTTP $status at the upgrade")
            }
            val what = if (status != null) "HTTP $status at the upgrade" else (failure.message ?: "connection failed")
            return SessionError(SessionError.CONNECTION_LOST, "connection_lost", what)
        }
    }
}
