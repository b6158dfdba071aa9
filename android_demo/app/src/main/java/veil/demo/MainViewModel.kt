package veil.demo

import android.Manifest
import android.app.Application
import androidx.annotation.RequiresPermission
import androidx.lifecycle.AndroidViewModel
import androidx.lifecycle.viewModelScope
import java.io.File
import java.io.IOException
import java.util.Locale
import java.util.concurrent.TimeUnit
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.flow.MutableStateFlow
import kotlinx.coroutines.flow.StateFlow
import kotlinx.coroutines.flow.update
import kotlinx.coroutines.launch
import okhttp3.OkHttpClient
import veil.core.Codec
import veil.core.SessionEvent
import veil.core.StreamingPipeline
import veil.core.VeilException

/** Everything the screen shows. */
data class UiState(
    val exports: List<String> = emptyList(),
    /** Per export, the payload codecs the phone may send (default first): only vq for a vq bottleneck. */
    val codecs: Map<String, List<Codec>> = emptyMap(),
    val running: Boolean = false,
    val status: String = "",
    val error: String? = null,
    val transcript: String = "",
    val isFinal: Boolean = false,
    val chunkLines: List<String> = emptyList()
)

/** What the user picked. */
data class SessionSettings(
    val server: String,
    val token: String,
    val export: String,
    val backend: String,
    val codec: Codec,
    val threads: Int
)

/**
 * Owns the streaming session so that it survives rotation; turns its events into [UiState]. The export is
 * installed and checked on a background dispatcher before the session starts.
 */
class MainViewModel(application: Application) : AndroidViewModel(application) {
    private val store = ExportStore(application)
    // NPU libraries a benchmark run installed (BenchmarkActivity.installNpuLibs), for an NPU artifact
    private val npuLibs = File(application.filesDir, BenchmarkActivity.NPU_LIBS)
    private val http = OkHttpClient.Builder()
        .connectTimeout(10, TimeUnit.SECONDS)
        .pingInterval(20, TimeUnit.SECONDS)
        .build()
    private val _state = MutableStateFlow(UiState())
    val state: StateFlow<UiState> = _state
    // set on the IO dispatcher, read on main (Stop, onCleared) and by the pipeline's threads
    @Volatile
    private var session: StreamingPipeline? = null
    /** Stop or leave pressed while the export was still installing: the session must not start. */
    @Volatile
    private var cancelled = false

    init {
        refreshExports()
    }

    fun refreshExports() {
        viewModelScope.launch(Dispatchers.IO) {
            val names = store.names()
            val codecs = names.associateWith { store.codecs(it) }
            _state.update { it.copy(exports = names, codecs = codecs) }
        }
    }

    /**
     * Install the export and start a session (StreamingPipeline: the microphone and the socket are released on every
     * ending). What can fail before the session exists is caught here and shown: a bad export or manifest
     * (VeilException), a disk that is full while installing (IOException), an unknown backend or recipe
     * (IllegalArgumentException); anything else is an internal error, never a crash.
     */
    @RequiresPermission(Manifest.permission.RECORD_AUDIO)
    fun start(settings: SessionSettings) {
        if (session != null || _state.value.running) return
        cancelled = false
        _state.update { it.copy(running = true, error = null, transcript = "", isFinal = false, chunkLines = emptyList(),
            status = "installing export ${settings.export} ...") }
        viewModelScope.launch(Dispatchers.IO) {
            try {
                val export = store.open(settings.export)
                val artifact = export.manifest.artifact(settings.backend)
                val s = StreamingPipeline(export, artifact, loaderFor(artifact, npuLibs), settings.threads,
                    settings.codec, settings.server, settings.token.ifEmpty { null }, { OkHttpTransport(http) },
                    AudioCapture(), ::onEvent)
                if (cancelled) {
                    _state.update { it.copy(running = false, status = "stopped before the session started") }
                    return@launch
                }
                session = s
                s.start()
            } catch (e: VeilException) {
                onEvent(SessionEvent.Failed(e.reason, e.message ?: e.reason))
            } catch (e: IOException) {
                onEvent(SessionEvent.Failed("install", "installing ${settings.export} failed: ${e.message}"))
            } catch (e: IllegalArgumentException) {
                onEvent(SessionEvent.Failed("bad_export", e.message ?: "the export cannot be used"))
            } catch (e: RuntimeException) {
                onEvent(SessionEvent.Failed("internal", "${e.javaClass.simpleName}: ${e.message}"))
            }
        }
    }

    fun stop() {
        cancelled = true
        session?.stop()
        _state.update { it.copy(status = "stopping: the last chunk and the final transcript ...") }
    }

    /** End the session without a transcript (the app left the screen). */
    fun interrupt(why: String) {
        cancelled = true
        val s = session
        if (s != null) s.interrupt(why) else onEvent(SessionEvent.Interrupted(why))
    }

    private fun onEvent(event: SessionEvent) {
        _state.update { s ->
            when (event) {
                is SessionEvent.Status -> s.copy(status = event.text)
                is SessionEvent.ModelLoaded -> s.copy(status = String.format(Locale.ROOT, "%s loaded in %.0f ms %s; listening",
                    event.runtime, event.loadMs, event.details["backends"] ?: ""))
                is SessionEvent.Ready -> s.copy(status = "connected (session ${event.sessionId.take(8)}); listening")
                is SessionEvent.ChunkDone -> s.copy(chunkLines = (s.chunkLines + String.format(Locale.ROOT,
                    "chunk %3d  prefix %6.1f ms  RTF %.3f  %5d B  behind live %5.0f ms", event.seq, event.prefixMs,
                    event.rtf, event.payloadBytes, event.behindMs)).takeLast(MAX_LINES))
                is SessionEvent.Partial -> if (s.isFinal) s else s.copy(transcript = event.text,
                    chunkLines = (s.chunkLines + String.format(Locale.ROOT, "partial %3d after %6.1f ms", event.seq,
                        event.roundTripMs)).takeLast(MAX_LINES))
                is SessionEvent.Final -> s.copy(transcript = event.text, isFinal = true, running = false,
                    status = String.format(Locale.ROOT, "final after %.0f ms", event.roundTripMs))
                is SessionEvent.Failed -> s.copy(error = "${event.reason}: ${event.message}", running = false)
                is SessionEvent.Interrupted -> s.copy(error = "interrupted: ${event.message}", running = false)
            }
        }
        if (event is SessionEvent.Final || event is SessionEvent.Failed || event is SessionEvent.Interrupted) {
            session = null
        }
    }

    override fun onCleared() {
        cancelled = true
        session?.interrupt("the screen went away")
        session = null
    }

    companion object {
        const val MAX_LINES = 40
    }
}
