package veil.core

import java.io.BufferedReader
import java.io.File
import java.io.InputStreamReader
import java.security.MessageDigest
import java.util.concurrent.LinkedBlockingQueue
import java.util.concurrent.TimeUnit

/**
 * A real `veil serve` of the shipped model on 127.0.0.1 (an ephemeral port), started from the repository's .venv
 * as `python -m toolkit.cli serve --port 0 ...`, accepting the test vectors' token. Its address is read from the
 * "listening on" line it prints; [close] stops it (SIGTERM, then kill).
 */
class VeilServer private constructor(private val process: Process, val url: String, val output: List<String>) :
    AutoCloseable {
    override fun close() {
        process.destroy()
        if (!process.waitFor(20, TimeUnit.SECONDS)) process.destroyForcibly().waitFor(10, TimeUnit.SECONDS)
    }

    companion object {
        private val LISTENING = Regex("listening on (http://127\\.0\\.0\\.1:\\d+)")

        fun start(token: String, startupSeconds: Long = 300): VeilServer {
            val repo = TestFiles.repo
            val python = File(repo, ".venv/bin/python")
            check(python.canExecute()) { "$python not found: run `make setup` (the live test starts `veil serve`)" }
            val tokens = File(TestFiles.tempDir("veil-serve"), "tokens")
            val digest = MessageDigest.getInstance("SHA-256").digest(token.toByteArray(Charsets.UTF_8))
            tokens.writeText("sha256:${Protocol.bytesToHex(digest)}\n")
            val builder = ProcessBuilder(python.path, "-m", "toolkit.cli", "serve", "--host", "127.0.0.1", "--port", "0",
                "--checkpoint", File(repo, "models/normalized.safetensors").path, "--token-file", tokens.path,
                "--threads", "1", "--max-wait-ms", "1", "--log-level", "warning")
                .directory(repo).redirectErrorStream(true)
            builder.environment()["PYTHONPATH"] = repo.path
            val process = builder.start()
            val lines = LinkedBlockingQueue<String>()
            val output = java.util.Collections.synchronizedList(ArrayList<String>())
            val reader = Thread(Runnable {
                BufferedReader(InputStreamReader(process.inputStream, Charsets.UTF_8)).use { r ->
                    var line = r.readLine()
                    while (line != null) {
                        output.add(line)
                        lines.add(line)
                        line = r.readLine()
                    }
                }
            }, "veil-serve-output")
            reader.isDaemon = true
            reader.start()
            val deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(startupSeconds)
            while (System.nanoTime() < deadline) {
                val line = lines.poll(1, TimeUnit.SECONDS)
                if (line != null) {
                    val m = LISTENING.find(line)
                    if (m != null) return VeilServer(process, m.groupValues[1], output)
                }
                if (!process.isAlive && lines.isEmpty()) {
                    throw IllegalStateException("veil serve exited with ${process.exitValue()}: ${output.joinToString("\n")}")
                }
            }
            process.destroyForcibly()
            throw IllegalStateException("veil serve did not listen within $startupSeconds s: ${output.joinToString("\n")}")
        }
    }
}
