// Mirrors android_demo/core/src/test/kotlin/veil/core/TestFiles.kt
import Foundation
import VeilCore
import XCTest

/** Paths the tests share: the repository root (VEIL_REPO, else found from this file) and the shared test resources. */
enum TestFiles {
    /**
     * The repository root: $VEIL_REPO when set (Kotlin: -Dveil.repo), else four folders above this file
     * (ios_demo/VeilCore/Tests/VeilCoreTests/TestFiles.swift), so `swift test` works from ios_demo/VeilCore.
     */
    static let repo: URL = {
        if let configured = ProcessInfo.processInfo.environment["VEIL_REPO"], !configured.isEmpty {
            return URL(fileURLWithPath: configured).standardizedFileURL
        }
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<5 { url = url.deletingLastPathComponent() }
        return url.standardizedFileURL
    }()

    /**
     * A test resource shared with the Kotlin core's tests (android_demo/core/src/test/resources), read from there
     * so that both languages test the very same file.
     */
    static func resourceText(_ name: String) throws -> String {
        let file = repo.appendingPathComponent("android_demo/core/src/test/resources").appendingPathComponent(name)
        guard let data = FileManager.default.contents(atPath: file.path) else {
            throw IllegalStateException(message: "no resource \(name) (\(file.path))")
        }
        return String(decoding: data, as: UTF8.self)
    }

    static func tempDir(_ prefix: String) throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("\(prefix)-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }

    /** The repository's Python (.venv/bin/python), or nil when `make setup` has not made it. */
    static func python() -> URL? {
        let python = repo.appendingPathComponent(".venv/bin/python")
        return FileManager.default.isExecutableFile(atPath: python.path) ? python : nil
    }
}
