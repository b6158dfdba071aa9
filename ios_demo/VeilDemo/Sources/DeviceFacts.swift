// The phone and the app build, as the bench JSON records them (Android: DeviceFacts.kt). Shared by the app and its
// benchmark.
import Foundation
import UIKit
import VeilCore

enum DeviceFacts {
    /** The hardware model identifier, e.g. "iPhone15,2" (UIDevice only says "iPhone"). */
    static func machine() -> String {
        var info = utsname()
        uname(&info)
        return withUnsafeBytes(of: &info.machine) { raw in
            String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
        }
    }

    static func device() -> DeviceInfo {
        let device = UIDevice.current
        return DeviceInfo("Apple", machine(), "arm64", device.systemName, device.systemVersion, nil,
                          ProcessInfo.processInfo.activeProcessorCount, Int(ProcessInfo.processInfo.physicalMemory))
    }

    /** The build that measured: a Debug build (unoptimized Swift) is refused by the benchmark. */
    static func app(_ bundle: Bundle = .main) -> AppInfo {
        #if DEBUG
        let buildType = "debug"
        #else
        let buildType = "release"
        #endif
        let version = bundle.object(forInfoDictionaryKey: "CFBundleShortVersionString") as? String ?? "unknown"
        return AppInfo(bundle.bundleIdentifier ?? "veil.demo", version, buildType, buildType == "debug")
    }
}

/**
 * The memory iOS accounts to the process (phys_footprint: what jetsam limits and Xcode's memory gauge shows), in
 * the bench JSON's pss_* keys, as Android's PSS is there.
 */
struct FootprintProbe: PssProbe {
    func pssBytes() -> Int? {
        var info = task_vm_info_data_t()
        var count = mach_msg_type_number_t(MemoryLayout<task_vm_info_data_t>.size / MemoryLayout<natural_t>.size)
        let result = withUnsafeMutablePointer(to: &info) { pointer in
            pointer.withMemoryRebound(to: integer_t.self, capacity: Int(count)) { raw in
                task_info(mach_task_self_, task_flavor_t(TASK_VM_INFO), raw, &count)
            }
        }
        return result == KERN_SUCCESS ? Int(info.phys_footprint) : nil
    }
}
