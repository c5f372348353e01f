// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "DetectFolder",
    dependencies: [.package(name: "ACmixKit", path: "../acmix-kit")],
    targets: [
        .executableTarget(name: "detect-folder", dependencies: [.product(name: "ACmixKit", package: "ACmixKit")]),
    ]
)
