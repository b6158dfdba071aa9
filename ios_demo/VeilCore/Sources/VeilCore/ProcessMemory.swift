// Mirrors android_demo/core/src/main/kotlin/veil/core/ProcessMemory.kt
//
// Linux (and Android) read /proc/self/status as the Kotlin core does; Apple platforms have no /proc, so there the
// same two numbers come from the Mach kernel's task info: resident_size (VmRSS) and resident_size_max (VmHWM),
// which cannot be reset.
import Foundation
#if canImport(Darwin)
import Darwin
#endif

/**
 * This process's resident memory from the kernel, measured the way `toolkit.bench.worker` measures the host: RSS
 * now (VmRSS), peak RSS (VmHWM), and a reset of the peak through `/proc/self/clear_refs` where the kernel allows
 * it (Linux >= 4.0; never on Apple platforms).
 */
public enum ProcessMemory {
    /** Current resident set in bytes, or nil where the kernel does not tell. */
    public static func rssBytes() -> Int? {
        #if canImport(Darwin)
        return basicInfo().map { Int($0.resident_size) }
        #else
        return statusKib("VmRSS").map { $0 * 1024 }
        #endif
    }

    /** Peak resident set in bytes since start or since the last successful `resetPeak`. */
    public static func peakRssBytes() -> Int? {
        #if canImport(Darwin)
        return basicInfo().map { Int($0.resident_size_max) }
        #else
        return statusKib("VmHWM").map { $0 * 1024 }
        #endif
    }

    /** Reset VmHWM to the current RSS (Linux >= 4.0); false where that is not allowed. */
    public static func resetPeak() -> Bool {
        #if canImport(Darwin)
        return false
        #else
        guard let handle = FileHandle(forWritingAtPath: "/proc/self/clear_refs") else { return false }
        defer { try? handle.close() }
        do {
            try handle.write(contentsOf: Data("5".utf8))
            return true
        } catch {
            return false
        }
        #endif
    }

    #if canImport(Darwin)
    /** MACH_TASK_BASIC_INFO of this task, or nil when task_info refuses. */
    private static func basicInfo() -> mach_task_basic_info? {
        var info = mach_task_basic_info()
        var count = mach_msg_type_number_t(MemoryLayout<mach_task_basic_info>.size / MemoryLayout<natural_t>.size)
        let result = withUnsafeMutablePointer(to: &info) { pointer in
            pointer.withMemoryRebound(to: integer_t.self, capacity: Int(count)) { raw in
                task_info(mach_task_self_, task_flavor_t(MACH_TASK_BASIC_INFO), raw, &count)
            }
        }
        return result == KERN_SUCCESS ? info : nil
    }
    #else
    private static func statusKib(_ field: String) -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix("\(field):") {
            let parts = line.dropFirst(field.count + 1).split(whereSeparator: { $0 == " " || $0 == "\t" })
            return parts.first.flatMap { Int($0) }
        }
        return nil
    }
    #endif
}
