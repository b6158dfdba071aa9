package veil.core

/**
 * A WebSocket as the protocol client needs it, whatever implements it: OkHttp in the Android app,
 * java.net.http in the JVM tests. Callbacks may arrive on any thread, one at a time, in order.
 */
interface Transport {
    /** Open `url` (ws:// or wss://) with extra request `headers`; events go to `listener`. */
    fun connect(url: String, headers: Map<String, String>, listener: TransportListener)

    /** Queue one text frame; false when the socket is closed or its send buffer is full. */
    fun sendText(text: String): Boolean

    /** Queue one binary frame; false when the socket is closed or its send buffer is full. */
    fun sendBinary(bytes: ByteArray): Boolean

    /** Start the closing handshake (RFC 6455 status `code`). */
    fun close(code: Int, reason: String)

    /** Drop the connection without a handshake. */
    fun cancel()
}

/** What a [Transport] reports. */
interface TransportListener {
    fun onOpen()

    fun onText(text: String)

    fun onBinary(bytes: ByteArray)

    /** The server closed (or the closing handshake finished) with `code` and `reason`. */
    fun onClosed(code: Int, reason: String)

    /** The connection failed or broke; no further events follow. */
    fun onFailure(error: Throwable)
}
