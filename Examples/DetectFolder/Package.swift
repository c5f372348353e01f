// swift-tools-version:6.0
// An app that uses ACmixKit from a checkout of this repository (a path dependency).
import PackageDescription

let package = Package(
    name: "DetectFolder",
    platforms: [.macOS(.v13)],
    dependencies: [.package(name: "ACmixKit", path: "../..")],
    targets: [
        .executableTarget(name: "detect-folder", dependencies: [.product(name: "ACmixKit", package: "ACmixKit")]),
    ],
    swiftLanguageModes: [.v5]
)
