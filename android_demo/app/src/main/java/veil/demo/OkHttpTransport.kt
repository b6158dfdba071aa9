package veil.demo

import okhttp3.OkHttpClient
import okhttp3.Request
import okhttp3.Response
import okhttp3.WebSocket
import okhttp3.WebSocketListener
import okio.ByteString
import okio.ByteString.Companion.toByteString
import veil.core.Transport
import veil.core.TransportFailure
import veil.core.TransportListener

/**
 * The core's [Transport] over OkHttp's WebSocket. OkHttp queues sends (up to 16 MiB) and answers the server's
 * pings; a refused upgrade reaches onFailure with the HTTP response, whose body is Veil's ERROR frame.
 */
class OkHttpTransport(private val client: OkHttpClient) : Transport {
    @Volatile
    private var socket: WebSocket? = null

    override fun connect(url: String, headers: Map<String, String>, listener: TransportListener) {
        val request = Request.Builder().url(url).apply { headers.forEach { (k, v) -> header(k, v) } }.build()
        socket = client.newWebSocket(request, object : WebSocketListener() {
            override fun onOpen(webSocket: WebSocket, response: Response) = listener.onOpen()

            override fun onMessage(webSocket: WebSocket, bytes: ByteString) = listener.onBinary(bytes.toByteArray())

            override fun onMessage(webSocket: WebSocket, text: String) = listener.onText(text)

            override fun onClosing(webSocket: WebSocket, code: Int, reason: String) {
                webSocket.close(1000, null)
                listener.onClosed(code, reason)
            }

            override fun onFailure(webSocket: WebSocket, t: Throwable, response: Response?) {
                val body = try {
                    response?.body?.bytes()
                } catch (e: java.io.IOException) {
                    null
                }
                listener.onFailure(TransportFailure("$url: ${t.message ?: t.javaClass.simpleName}", response?.code,
                    body, t))
            }
        })
    }

    override fun sendBinary(bytes: ByteArray): Boolean = socket?.send(bytes.toByteString()) ?: false

    override fun close(code: Int, reason: String) {
        socket?.close(code, reason)
    }

    override fun cancel() {
        socket?.cancel()
    }
}
