package veil.core

import java.io.File
import org.json.JSONObject

/** Paths the tests share: the repository root (Surefire passes -Dveil.repo) and test resources. */
object TestFiles {
    val repo: File by lazy {
        val configured = System.getProperty("veil.repo")
        val dir = if (configured != null) File(configured) else File("../..")
        dir.canonicalFile
    }

    fun resourceText(name: String): String {
        val stream = TestFiles::class.java.getResourceAsStream("/$name") ?: throw IllegalStateException("no resource $name")
        return stream.use { String(it.readBytes(), Charsets.UTF_8) }
    }

    fun tempDir(prefix: String): File {
        val dir = java.nio.file.Files.createTempDirectory(prefix).toFile()
        dir.deleteOnExit()
        return dir
    }

    /** An export folder of [manifestText] whose artifact files are small real files matching their sizes and
     *  sha256 digests (the manifest is rewritten with them). */
    fun exportFolder(manifestText: String): File {
        val dir = tempDir("veil-export")
        val o = JSONObject(manifestText)
        val list = o.getJSONArray("artifacts")
        for (i in 0 until list.length()) {
            val entry = list.getJSONObject(i)
            val f = File(dir, entry.getString("file"))
            f.writeBytes(ByteArray(1000 + i) { (it * 7 + i).toByte() })
            entry.put("size_bytes", f.length())
            entry.put("sha256", ExportFolder.sha256Hex(f))
        }
        File(dir, "manifest.json").writeText(o.toString(1))
        return dir
    }
}
