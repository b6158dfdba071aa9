package veil.core

import java.io.File

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
}
