// Export folders on the phone (Android: ExportStore.kt). Shared by the app and its benchmark.
import Foundation
import VeilCore

/**
 * Where exports are found: the app's Documents/exports/NAME/ (copied over with Finder or the Files app: the app
 * shares its Documents folder) and, for development, the bundle's Exports/NAME/ (ios_demo/VeilDemo/Exports, added
 * to the app and to the benchmark as a folder reference, so the .mlpackage is copied as it is and compiled on the
 * phone). An export is `export-prefix --target ios` output: manifest.json and the .mlpackage it lists. Before use
 * the Core ML artifact is verified against manifest.json (size and SHA-256 of the package's files).
 */
enum ExportStore {
    static let EXPORTS = "exports"
    static let BUNDLED = "Exports"

    /** Folders holding a manifest.json: Documents/exports/ first, then the bundle's; by name. */
    static func folders(_ bundle: Bundle = .main) -> [URL] {
        var roots: [URL] = []
        if let documents = FileManager.default.urls(for: .documentDirectory, in: .userDomainMask).first {
            roots.append(documents.appendingPathComponent(EXPORTS, isDirectory: true))
        }
        if let bundled = bundle.url(forResource: BUNDLED, withExtension: nil) { roots.append(bundled) }
        var found: [URL] = []
        var names = Set<String>()
        for root in roots {
            let children = (try? FileManager.default.contentsOfDirectory(at: root, includingPropertiesForKeys: nil)) ?? []
            for dir in children.sorted(by: { $0.lastPathComponent < $1.lastPathComponent })
            where FileManager.default.fileExists(atPath: dir.appendingPathComponent(ExportManifest.FILE_NAME).path)
                && !names.contains(dir.lastPathComponent) {
                names.insert(dir.lastPathComponent)
                found.append(dir)
            }
        }
        return found
    }

    /** The export at `dir` and its Core ML artifact, verified. Blocking (hashes the package): off the main thread. */
    static func open(_ dir: URL) throws -> (ExportFolder, ArtifactEntry, URL) {
        let export = try ExportFolder.open(dir)
        let artifact = try export.manifest.artifact("coreml")
        let package = try export.verify(artifact)
        return (export, artifact, package)
    }
}
