package veil.core

/**
 * A WebSocket as the protocol client needs it, whatever implements it: OkHttp in the Android app,
 * java.net.http in the JVM tests. Events may arrive on any thread, one at a time, in order.
 */
interface Transport {
    /** Open `url` (ws:// or wss://) with extra request `headers`; events go to `listener`. */
    fun connect(url: String, headers: Map<String, String>, listener: TransportListener)

    /** Queue one binary message; false when the socket is closed or its send buffer is full. */
    fun sendBinary(bytes: ByteArray): Boolean

    /** Start the closing handshake (RFC 6455 status `code`). */
    fun close(code: Int, reason: String)

    /** Drop the connection without a handshake. */
    fun cancel()
}

/** What a [Transport] reports. */
interface TransportListener {
    fun onOpen()

    fun onBinary(bytes: ByteArray)

    /** A text message: not part of the Veil protocol (the client refuses it). */
    fun onText(text: String)

    /** The peer closed (or the closing handshake finished) with `code` and `reason`. */
    fun onClosed(code: Int, reason: String)

    /** The connection could not be opened or broke; no further events follow. */
    fun onFailure(failure: TransportFailure)
}

/**
 * A connection that failed: at the upgrade the server's HTTP status and body (Veil answers a refused upgrade
 * with an ERROR frame as body: 401, 429, 503), else only the cause.
 */
class TransportFailure(message: String, val httpStatus: Int?, val body: ByteArray?, cause: Throwable?) :
    Exception(message, cause)
