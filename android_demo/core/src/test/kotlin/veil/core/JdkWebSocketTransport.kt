package veil.core

import java.net.URI
import java.net.http.HttpClient
import java.net.http.WebSocket
import java.net.http.WebSocketHandshakeException
import java.nio.ByteBuffer
import java.time.Duration
import java.util.concurrent.CompletableFuture
import java.util.concurrent.CompletionException
import java.util.concurrent.CompletionStage

/**
 * The core's [Transport] over the JDK's java.net.http WebSocket (JDK 11+), for JVM tests against a real
 * `veil serve`; java.net.http does not exist on Android, where the app's OkHttpTransport plays this part.
 * Sends are chained (java.net.http allows one outstanding send), fragmented binary messages are joined.
 */
class JdkWebSocketTransport(private val client: HttpClient = HttpClient.newHttpClient()) : Transport {
    private val lock = Any()
    private var socket: WebSocket? = null
    private var sends: CompletableFuture<*> = CompletableFuture.completedFuture(null)

    override fun connect(url: String, headers: Map<String, String>, listener: TransportListener) {
        val builder = client.newWebSocketBuilder().connectTimeout(Duration.ofSeconds(10))
        for ((k, v) in headers) builder.header(k, v)
        builder.buildAsync(URI(url), Events(listener)).whenComplete { ws, error ->
            if (error != null) {
                val cause = if (error is CompletionException && error.cause != null) error.cause!! else error
                var status: Int? = null
                var body: ByteArray? = null
                if (cause is WebSocketHandshakeException) {
                    status = cause.response.statusCode()
                    val b = cause.response.body()
                    body = when (b) {
                        is ByteArray -> b
                        is String -> b.toByteArray(Charsets.ISO_8859_1)
                        else -> null
                    }
                }
                listener.onFailure(TransportFailure("$url: ${cause.message ?: cause.javaClass.simpleName}", status, body,
                    cause))
            } else {
                synchronized(lock) { socket = ws }
            }
        }
    }

    override fun sendBinary(bytes: ByteArray): Boolean {
        synchronized(lock) {
            val ws = socket ?: return false
            if (ws.isOutputClosed) return false
            sends = sends.thenCompose { ws.sendBinary(ByteBuffer.wrap(bytes), true) }
            return true
        }
    }

    override fun close(code: Int, reason: String) {
        synchronized(lock) {
            val ws = socket ?: return
            sends = sends.thenCompose { ws.sendClose(code, reason) }
        }
    }

    override fun cancel() {
        synchronized(lock) { socket?.abort() }
    }

    private inner class Events(private val listener: TransportListener) : WebSocket.Listener {
        private var partial = java.io.ByteArrayOutputStream()

        override fun onOpen(webSocket: WebSocket) {
            synchronized(lock) { socket = webSocket }
            listener.onOpen()
            webSocket.request(1)
        }

        override fun onBinary(webSocket: WebSocket, data: ByteBuffer, last: Boolean): CompletionStage<*>? {
            val chunk = ByteArray(data.remaining())
            data.get(chunk)
            partial.write(chunk)
            if (last) {
                val message = partial.toByteArray()
                partial = java.io.ByteArrayOutputStream()
                listener.onBinary(message)
            }
            webSocket.request(1)
            return null
        }

        override fun onText(webSocket: WebSocket, data: CharSequence, last: Boolean): CompletionStage<*>? {
            if (last) listener.onText(data.toString())
            webSocket.request(1)
            return null
        }

        override fun onClose(webSocket: WebSocket, statusCode: Int, reason: String): CompletionStage<*>? {
            listener.onClosed(statusCode, reason)
            return null
        }

        override fun onError(webSocket: WebSocket, error: Throwable) {
            listener.onFailure(TransportFailure(error.message ?: error.javaClass.simpleName, null, null, error))
        }
    }
}
