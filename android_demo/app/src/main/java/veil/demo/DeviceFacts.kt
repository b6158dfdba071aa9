package veil.demo

import android.app.ActivityManager
import android.content.Context
import android.content.pm.ApplicationInfo
import android.os.Build
import veil.core.AppInfo
import veil.core.DeviceInfo

/** The phone and the app build, as the bench JSON records them. */
object DeviceFacts {
    fun device(context: Context): DeviceInfo {
        val memory = ActivityManager.MemoryInfo()
        (context.getSystemService(Context.ACTIVITY_SERVICE) as ActivityManager).getMemoryInfo(memory)
        val soc = if (Build.VERSION.SDK_INT >= Build.VERSION_CODES.S) "${Build.SOC_MANUFACTURER} ${Build.SOC_MODEL}" else Build.HARDWARE
        return DeviceInfo(Build.MANUFACTURER, Build.MODEL, Build.SUPPORTED_ABIS.firstOrNull() ?: "unknown",
            Build.VERSION.SDK_INT, Build.VERSION.RELEASE, soc, Runtime.getRuntime().availableProcessors(),
            memory.totalMem)
    }

    /** Debuggable is the runtime's own flag (a debug build type sets it; so can a manifest). */
    fun app(context: Context): AppInfo {
        val debuggable = (context.applicationInfo.flags and ApplicationInfo.FLAG_DEBUGGABLE) != 0
        val version = context.packageManager.getPackageInfo(context.packageName, 0).versionName ?: "unknown"
        return AppInfo(context.packageName, version, BuildConfig.BUILD_TYPE, debuggable)
    }
}
