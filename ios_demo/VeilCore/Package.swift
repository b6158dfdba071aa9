// swift-tools-version:5.9
// VeilCore: the phone half of Veil's protocol in Swift, Foundation only, mirroring the Kotlin core
// (android_demo/core) one file per concept. `swift test` here runs its XCTests over the shared testvectors/.
import PackageDescription

let package = Package(
    name: "VeilCore",
    platforms: [.iOS(.v17), .macOS(.v13)],
    products: [
        .library(name: "VeilCore", targets: ["VeilCore"]),
    ],
    targets: [
        .target(name: "VeilCore", path: "Sources/VeilCore"),
        .testTarget(name: "VeilCoreTests", dependencies: ["VeilCore"], path: "Tests/VeilCoreTests"),
    ]
)
