package veil.demo

import android.content.Context
import java.io.File
import veil.core.Codec
import veil.core.ExportFolder
import veil.core.ExportManifest
import veil.core.ManifestException
import veil.core.PayloadEncoder

/**
 * Export folders on the phone. `adb push` (android_demo/push_export.sh, `veil bench --app`) writes them to the
 * app's external files dir, /sdcard/Android/data/veil.demo/files/exports/NAME/, which adb may write without
 * root and the app reads without a permission. Before use an export is *installed*: its manifest.json and its
 * ExecuTorch/LiteRT artifacts are copied into the app's private files dir, each checked against manifest.json
 * (size, SHA-256), and moved into place as a whole; the runtimes then memory-map the artifact from there. The
 * codebook of a vq bottleneck export (codebook.f32) travels and is checked the same way. An export already
 * installed with the same manifest is not copied again. No model is bundled in the APK.
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
        folder.codebook()
        return folder
    }

    /**
     * The codecs the phone may send for export `name`, the default first (PayloadEncoder.codecsFor): only vq for a
     * vq bottleneck. Read from the pushed manifest if there is one, else the installed one; an export whose
     * manifest cannot be read lists int8, fp16, fp32 (opening it then shows why it cannot be used).
     */
    fun codecs(name: String): List<Codec> {
        for (root in listOf(incoming, installed)) {
            val dir = File(root, name)
            if (!File(dir, ExportManifest.FILE_NAME).isFile) continue
            return try {
                PayloadEncoder.codecsFor(ExportManifest.read(dir))
            } catch (e: ManifestException) {
                PayloadEncoder.CONTINUOUS_CODECS
            }
        }
        return PayloadEncoder.CONTINUOUS_CODECS
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
            val codebook = source.manifest.bottleneck?.codebook
            if (codebook != null) {
                source.codebook()  // present and intact before it is copied (typed errors otherwise)
                val dest = File(tmp, codebook.file)
                dest.parentFile?.mkdirs()
                File(from, codebook.file).copyTo(dest)
            }
            val copy = ExportFolder.open(tmp)
            for (artifact in copy.manifest.artifacts) if (artifact.backend in APP_BACKENDS) copy.verify(artifact)
            copy.codebook()
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
