package veil.demo

import android.Manifest
import android.content.Context
import android.content.pm.PackageManager
import android.graphics.Color
import android.os.Bundle
import android.view.View
import android.view.WindowManager
import android.widget.AdapterView
import android.widget.ArrayAdapter
import android.widget.Button
import android.widget.EditText
import android.widget.Spinner
import android.widget.TextView
import androidx.activity.ComponentActivity
import androidx.activity.result.contract.ActivityResultContracts
import androidx.activity.viewModels
import androidx.core.content.ContextCompat
import androidx.lifecycle.Lifecycle
import androidx.lifecycle.lifecycleScope
import androidx.lifecycle.repeatOnLifecycle
import kotlinx.coroutines.launch
import veil.core.Codec
import veil.core.PayloadEncoder

/**
 * The demo screen: pick an export (pushed with push_export.sh), the runtime, the payload codec and the thread count,
 * point at a `veil serve`, press Start and speak. The codec list follows the export: a vq bottleneck export offers
 * only vq (its codebook indices), since sending its continuous vectors would bypass the bottleneck. Shows the partial then final transcript and, per 2-s chunk, the
 * prefix latency, its real-time factor and the payload size. Errors (native library, export, network, server
 * refusals) appear in red; the app does not crash on them.
 */
class MainActivity : ComponentActivity() {
    private val model: MainViewModel by viewModels()
    private lateinit var server: EditText
    private lateinit var token: EditText
    private lateinit var export: Spinner
    private lateinit var backend: Spinner
    private lateinit var codec: Spinner
    private lateinit var threads: Spinner
    private lateinit var start: Button
    private var pending: SessionSettings? = null

    private val microphone = registerForActivityResult(ActivityResultContracts.RequestPermission()) { granted ->
        val settings = pending
        pending = null
        if (granted && settings != null) startSession(settings)
        if (!granted) findViewById<TextView>(R.id.status).setText(R.string.need_microphone)
    }

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        setContentView(R.layout.activity_main)
        server = findViewById(R.id.server)
        token = findViewById(R.id.token)
        export = findViewById(R.id.export)
        backend = findViewById(R.id.backend)
        codec = findViewById(R.id.codec)
        threads = findViewById(R.id.threads)
        start = findViewById(R.id.start)
        val prefs = getSharedPreferences(PREFS, Context.MODE_PRIVATE)
        server.setText(prefs.getString(KEY_SERVER, ""))
        token.setText(prefs.getString(KEY_TOKEN, ""))
        backend.adapter = adapter(listOf("executorch", "litert"))
        codec.adapter = adapter(PayloadEncoder.CONTINUOUS_CODECS.map { it.wireName })
        threads.adapter = adapter(listOf("2", "1", "4"))
        export.onItemSelectedListener = object : AdapterView.OnItemSelectedListener {
            override fun onItemSelected(parent: AdapterView<*>?, view: View?, position: Int, id: Long) =
                showCodecs(model.state.value)

            override fun onNothingSelected(parent: AdapterView<*>?) = showCodecs(model.state.value)
        }
        findViewById<Button>(R.id.refresh).setOnClickListener { model.refreshExports() }
        start.setOnClickListener { onStartStop() }
        lifecycleScope.launch {
            repeatOnLifecycle(Lifecycle.State.STARTED) {
                model.state.collect { render(it) }
            }
        }
    }

    /**
     * Leaving the screen ends a running session as interrupted (the microphone and the socket are released): a
     * background app records silence on Android 9+, and the demo has no microphone foreground service.
     */
    override fun onStop() {
        super.onStop()
        if (!isChangingConfigurations && model.state.value.running) {
            model.interrupt("the app left the screen: Android gives a background app silence, not the microphone")
        }
    }

    private fun adapter(items: List<String>) =
        ArrayAdapter(this, android.R.layout.simple_spinner_dropdown_item, items)

    private fun onStartStop() {
        if (model.state.value.running) {
            model.stop()
            return
        }
        val name = export.selectedItem as? String
        if (name == null) {
            findViewById<TextView>(R.id.status).setText(R.string.no_export)
            return
        }
        getSharedPreferences(PREFS, Context.MODE_PRIVATE).edit()
            .putString(KEY_SERVER, server.text.toString().trim())
            .putString(KEY_TOKEN, token.text.toString().trim())
            .apply()
        val settings = SessionSettings(server.text.toString().trim(), token.text.toString().trim(), name,
            backend.selectedItem as String, Codec.named(codec.selectedItem as String),
            (threads.selectedItem as String).toInt())
        if (ContextCompat.checkSelfPermission(this, Manifest.permission.RECORD_AUDIO) == PackageManager.PERMISSION_GRANTED) {
            startSession(settings)
        } else {
            pending = settings
            microphone.launch(Manifest.permission.RECORD_AUDIO)
        }
    }

    private fun startSession(settings: SessionSettings) {
        if (ContextCompat.checkSelfPermission(this, Manifest.permission.RECORD_AUDIO) == PackageManager.PERMISSION_GRANTED) {
            model.start(settings)
        }
    }

    private fun render(s: UiState) {
        val current = export.selectedItem as? String
        if ((0 until export.count).map { export.getItemAtPosition(it) as String } != s.exports) {
            export.adapter = adapter(s.exports)
            val keep = s.exports.indexOf(current)
            if (keep >= 0) export.setSelection(keep)
        }
        showCodecs(s)
        start.setText(if (s.running) R.string.stop else R.string.start)
        // the screen stays on while a session runs: when it times out the app goes to the background, where
        // Android 9+ hands AudioRecord silence and the cached-app freezer stalls the pipeline and the pings
        if (s.running) {
            window.addFlags(WindowManager.LayoutParams.FLAG_KEEP_SCREEN_ON)
        } else {
            window.clearFlags(WindowManager.LayoutParams.FLAG_KEEP_SCREEN_ON)
        }
        findViewById<TextView>(R.id.status).text = if (s.exports.isEmpty()) getString(R.string.no_export) else s.status
        val error = findViewById<TextView>(R.id.error)
        error.visibility = if (s.error != null) View.VISIBLE else View.GONE
        error.text = s.error ?: ""
        val transcript = findViewById<TextView>(R.id.transcript)
        transcript.text = s.transcript
        transcript.setTextColor(if (s.isFinal) Color.BLACK else Color.GRAY)
        findViewById<TextView>(R.id.chunks).text = s.chunkLines.joinToString("\n")
    }

    /** The codec spinner offers what the selected export may send (only vq for a vq bottleneck), keeping the pick. */
    private fun showCodecs(s: UiState) {
        val name = export.selectedItem as? String
        val names = (s.codecs[name] ?: PayloadEncoder.CONTINUOUS_CODECS).map { it.wireName }
        if ((0 until codec.count).map { codec.getItemAtPosition(it) as String } == names) return
        val current = codec.selectedItem as? String
        codec.adapter = adapter(names)
        val keep = names.indexOf(current)
        if (keep >= 0) codec.setSelection(keep)
    }

    companion object {
        private const val PREFS = "veil"
        private const val KEY_SERVER = "server"
        private const val KEY_TOKEN = "token"
    }
}
