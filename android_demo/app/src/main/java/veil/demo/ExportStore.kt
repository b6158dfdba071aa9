package veil.demo

import android.content.Context
import java.io.File
import veil.core.ExportFolder
import veil.core.ExportManifest
import veil.core.ManifestException

/**
 * Export folders on the phone. `adb push` (android_demo/push_export.sh, `veil bench --app`) writes them to the
 * app's external files dir, /sdcard/Android/data/veil.demo/files/exports/NAME/, which adb may write without
 * root and the app reads without a permission. Before use an export is *installed*: its manifest.json and its
 * ExecuTorch/LiteRT artifacts are copied into the app's private files dir, each checked against manifest.json
 * (size, SHA-256), and moved into place as a whole; the runtimes then memory-map the artifact from there. An
 * export already installed with the same manifest is not copied again. No model is bundled in the APK.
 */
class ExportStore(context: Context) {
    val incoming = File(context.getExternalFilesDir(null), EXPORTS)
    val installed = File(context.filesDir, EXPORTS)

    /** Names of the exports pushed or installed, sorted. */
    fun names(): List<String> {
        val names = sortedSetOf<String>()
        for (root in listOf(incoming, installed)) {
            root.listFiles()?.filter { File(it, ExportManifest.FILE_NAME).isFile }?.forEach { names.add(it.name) }
        }
        return names.toList()
    }

    /** The installed, verified export `name` (installing a newly pushed one first). Blocking: call off the UI thread. */
    fun open(name: String): ExportFolder {
        require(name.isNotEmpty() && !name.contains('/') && name != "." && name != "..") { "bad export name '$name'" }
        val pushed = File(incoming, name)
        val target = File(installed, name)
        val pushedManifest = File(pushed, ExportManifest.FILE_NAME)
        val installedManifest = File(target, ExportManifest.FILE_NAME)
        if (pushedManifest.isFile &&
            (!installedManifest.isFile || !pushedManifest.readBytes().contentEquals(installedManifest.readBytes()))) {
            install(pushed, target)
        }
        if (!installedManifest.isFile) {
            throw ManifestException("missing", "export '$name' is not on the phone (push it: android_demo/push_export.sh)")
        }
        val folder = ExportFolder.open(target)
        for (artifact in folder.manifest.artifacts) {
            if (artifact.backend in APP_BACKENDS) folder.fileOf(artifact)
        }
        return folder
    }

    private fun install(from: File, to: File) {
        val source = ExportFolder.open(from)
        val tmp = File(installed, ".${to.name}.installing")
        tmp.deleteRecursively()
        check(tmp.mkdirs()) { "$tmp: cannot create" }
        try {
            File(from, ExportManifest.FILE_NAME).copyTo(File(tmp, ExportManifest.FILE_NAME))
            for (artifact in source.manifest.artifacts) {
                if (artifact.backend !in APP_BACKENDS) continue
                val dest = File(tmp, artifact.file)
                dest.parentFile?.mkdirs()
                source.fileOf(artifact).copyTo(dest)
            }
            val copy = ExportFolder.open(tmp)
            for (artifact in copy.manifest.artifacts) if (artifact.backend in APP_BACKENDS) copy.verify(artifact)
            val old = File(installed, ".${to.name}.old")
            old.deleteRecursively()
            if (to.exists() && !to.renameTo(old)) error("$to: cannot replace")
            if (!tmp.renameTo(to)) error("$to: cannot move the installed export into place")
            old.deleteRecursively()
        } catch (e: Exception) {
            tmp.deleteRecursively()
            throw e
        }
    }

    companion object {
        const val EXPORTS = "exports"
        val APP_BACKENDS = setOf("executorch", "litert")
    }
}
