// Export folders on the phone (Android: ExportStore.kt). Shared by the app and its benchmark.
import Foundation
import VeilCore

/**
 * Where exports are found: the app's Documents/exports/NAME/ (copied over with Finder or the Files app: the app
 * shares its Documents folder) and, for development, the bundle's Exports/NAME/ (ios_demo/VeilDemo/Exports, added
 * to the app and to the benchmark as a folder reference, so the .mlpackage is copied as it is and compiled on the
 * phone). An export is `export-prefix --target ios` output: manifest.json and the .mlpackage it lists (and, for a
 * vq bottleneck, its codebook.f32). Before use the Core ML artifact is verified against manifest.json (size and
 * SHA-256 of the package's files), and so is the codebook.
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
        _ = try export.codebook()
        return (export, artifact, package)
    }

    /**
     * The codecs the phone may send for the export at `dir`, the default first (PayloadEncoder.codecsFor): only vq
     * for a vq bottleneck. An export whose manifest cannot be read lists int8, fp16, fp32 (preparing it then shows
     * why it cannot be used).
     */
    static func codecs(_ dir: URL) -> [Codec] {
        guard let manifest = try? ExportManifest.read(dir) else { return PayloadEncoder.CONTINUOUS_CODECS }
        return PayloadEncoder.codecsFor(manifest)
    }
}
