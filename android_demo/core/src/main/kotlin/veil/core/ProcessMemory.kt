package veil.core

import java.io.File
import java.io.FileWriter

/**
 * This process's resident memory from the kernel (`/proc/self/status`), on Linux and on Android alike, measured
 * the way `toolkit.bench.worker` measures the host: RSS now (VmRSS), peak RSS (VmHWM), and a reset of the peak
 * through `/proc/self/clear_refs` where the kernel (and on Android, SELinux) allows it.
 */
object ProcessMemory {
    private val STATUS = File("/proc/self/status")

    /** Current resident set in bytes, or null where /proc is not readable. */
    @JvmStatic
    fun rssBytes(): Long? = statusKib("VmRSS")?.let { it * 1024L }

    /** Peak resident set in bytes since start or since the last successful [resetPeak]. */
    @JvmStatic
    fun peakRssBytes(): Long? = statusKib("VmHWM")?.let { it * 1024L }

    /** Reset VmHWM to the current RSS (Linux >= 4.0); false where that is not allowed. */
    @JvmStatic
    fun resetPeak(): Boolean {
        return try {
            FileWriter("/proc/self/clear_refs").use { it.write("5") }
            true
        } catch (e: java.io.IOException) {
            false
        } catch (e: SecurityException) {
            false
        }
    }

    private fun statusKib(field: String): Long? {
        return try {
            STATUS.bufferedReader().use { reader ->
                var line = reader.readLine()
                while (line != null) {
                    if (line.startsWith("$field:")) {
                        val parts = line.substring(field.length + 1).trim().split(Regex("\\s+"))
                        return parts[0].toLong()
                    }
                    line = reader.readLine()
                }
                null
            }
        } catch (e: java.io.IOException) {
            null
        }
    }
}
