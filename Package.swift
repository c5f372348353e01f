// swift-tools-version:6.0
// ACmix detection and segmentation toolkit. Dependencies run one way:
// Engine → NN → Config → {Data, Backbones, Heads} → Evaluation → Training → Tasks → Tools (docs/ARCHITECTURE.md);
// Distributed (Open MPI) sits beside the engine and is imported from Training up: models never see it.
import PackageDescription

/// The engine and the models are built without bounds/overflow checks in release (their hot loops are pointer code
/// over sizes validated on entry); everything is built, on x86-64, for Haswell (AVX2 + FMA: every machine OpenBLAS's
/// Haswell kernels run on), so loops vectorise 8-wide.
#if arch(x86_64)
let cpu = ["-target-cpu", "haswell"]
#else
let cpu: [String] = []
#endif
let fast: [SwiftSetting] = [.unsafeFlags(["-Ounchecked", "-wmo"] + cpu, .when(configuration: .release))]
/// Code that reads configs and files keeps Swift's bounds and overflow checks (-O); only the engine's measured kernels
/// and the models built on them drop them.
let checked: [SwiftSetting] = [.unsafeFlags(["-O", "-wmo"] + cpu, .when(configuration: .release))]
let argumentParser = Target.Dependency.product(name: "ArgumentParser", package: "swift-argument-parser")

let package = Package(
    name: "ACmixKit",
    platforms: [.macOS(.v13)],
    products: [
        .library(name: "Engine", targets: ["Engine"]),
        .library(name: "Distributed", targets: ["Distributed"]),
        .library(name: "NN", targets: ["NN"]),
        .library(name: "Config", targets: ["Config"]),
        .library(name: "Data", targets: ["Data"]),
        .library(name: "Evaluation", targets: ["Evaluation"]),
        .library(name: "Backbones", targets: ["Backbones"]),
        .library(name: "Heads", targets: ["Heads"]),
        .library(name: "Training", targets: ["Training"]),
        .library(name: "Tasks", targets: ["Tasks"]),
        // What an app needs, in one import: detectors, segmentors and feature extractors from a config and a checkpoint.
        .library(name: "ACmixKit", targets: ["ACmixKit"]),
        .executable(name: "bench", targets: ["bench"]),
        .executable(name: "make-shapes", targets: ["make-shapes"]),
        .executable(name: "seg-train", targets: ["seg-train"]),
        .executable(name: "det-train", targets: ["det-train"]),
        .executable(name: "det-eval", targets: ["det-eval"]),
        .executable(name: "seg-eval", targets: ["seg-eval"]),
        .executable(name: "export-features", targets: ["export-features"]),
        .executable(name: "quantize", targets: ["quantize"]),
        .executable(name: "det-infer", targets: ["det-infer"]),
        .executable(name: "seg-infer", targets: ["seg-infer"]),
        // Analysis tools (mmdetection's tools/analysis_tools).
        .executable(name: "get-flops", targets: ["get-flops"]),
        .executable(name: "analyze-logs", targets: ["analyze-logs"]),
        .executable(name: "confusion-matrix", targets: ["confusion-matrix"]),
        .executable(name: "browse-dataset", targets: ["browse-dataset"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        // `swift package generate-documentation --target ACmixKit` (DocC); a plugin, not linked into anything.
        .package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.4.0"),
    ],
    targets: [
        // C libraries (Debian packages, installed by scripts/setup.sh).
        .systemLibrary(name: "CBLAS", path: "Sources/CBLAS"),
        .systemLibrary(name: "CDNNL", path: "Sources/CDNNL"),
        .systemLibrary(name: "CJSONC", path: "Sources/CJSONC"),
        // Open MPI (libopenmpi-dev) for data-parallel training.
        .systemLibrary(name: "CMPI", path: "Sources/CMPI", pkgConfig: "ompi-c", providers: [.apt(["libopenmpi-dev"])]),
        // simdjson behind a small C API, for large annotation/results files.
        .target(name: "CSimdJSON", path: "Sources/CSimdJSON",
                cxxSettings: [.unsafeFlags(["-O2", "-std=c++17"])],
                linkerSettings: [.linkedLibrary("simdjson"), .linkedLibrary("stdc++")]),
        // libpng/libjpeg behind setjmp-safe C shims: their errors come back as return codes, never longjmp through Swift.
        .target(name: "CImageCodecs", path: "Sources/CImageCodecs",
                cSettings: [.unsafeFlags(["-O2"])],
                linkerSettings: [.linkedLibrary("png16"), .linkedLibrary("jpeg")]),

        // The tensor + autograd engine on OpenBLAS and oneDNN.
        .target(name: "Engine", dependencies: ["CBLAS", "CDNNL"], path: "Sources/Engine", swiftSettings: fast),
        // Data-parallel jobs on Open MPI: ranks, collectives with deadlines, gradient buckets, SyncBN's reducer.
        .target(name: "Distributed", dependencies: ["Engine", "CMPI"], path: "Sources/Distributed", swiftSettings: checked),
        // Modules, layers, optimizers, schedules, safetensors, JSON.
        .target(name: "NN", dependencies: ["Engine", "CJSONC"], path: "Sources/NN", swiftSettings: checked),
        // JSON configs (_base_, --set, schemas, sections) and the component registry.
        .target(name: "Config", dependencies: ["Engine", "NN"], path: "Sources/Config", swiftSettings: checked),
        // Image decoding, COCO annotations, RLE masks, augmentation pipelines, loaders, the synthetic dataset.
        // The pipelines' pixel loops, unchecked; Data validates every size before calling them.
        .target(name: "PixelKernels", path: "Sources/PixelKernels", swiftSettings: fast),
        .target(name: "Data", dependencies: ["Engine", "CJSONC", "CSimdJSON", "CImageCodecs", "PixelKernels"], path: "Sources/Data", swiftSettings: checked),
        // Models: backbones, then necks, heads, detectors and segmentors (engine, NN and Config only).
        .target(name: "Backbones", dependencies: ["Engine", "NN", "Config"], path: "Sources/Backbones", swiftSettings: fast),
        .target(name: "Heads", dependencies: ["Engine", "NN", "Config", "Backbones"], path: "Sources/Heads", swiftSettings: fast),
        // COCO bbox/segm mAP (pycocotools) and mIoU (mmsegmentation).
        .target(name: "Evaluation", dependencies: ["Data"], path: "Sources/Evaluation", swiftSettings: checked),
        // The generic training loop with hooks, trainer settings, checkpoints, plots.
        .target(name: "Training", dependencies: ["Engine", "NN", "Config", "Data", "Distributed"], path: "Sources/Training", swiftSettings: checked),
        // Detection and segmentation tasks: datasets from config, loaders, evaluators, result files.
        .target(name: "Tasks", dependencies: ["Engine", "NN", "Config", "Data", "Evaluation", "Backbones", "Heads", "Training", "Distributed"],
                path: "Sources/Tasks", swiftSettings: checked),

        // The app-facing library: ObjectDetector, Segmenter, FeatureExtractor (docs in ACmixKit.docc).
        .target(name: "ACmixKit", dependencies: ["Engine", "NN", "Config", "Data", "Backbones", "Heads", "Training", "Tasks"],
                path: "Sources/ACmixKit", swiftSettings: checked),

        // Tools.
        .target(name: "ToolSupport", dependencies: ["Engine", "Config", "Data", "Distributed", "Training", "Tasks", argumentParser], path: "Sources/Tools/ToolSupport",
                swiftSettings: checked),
        .executableTarget(name: "bench", dependencies: ["Engine", "NN", "Data", "Evaluation", "Backbones", "Heads", "Training", "Tasks", "ToolSupport", argumentParser],
                          path: "Sources/Tools/bench", swiftSettings: fast),
        .executableTarget(name: "det-train", dependencies: ["Heads", "Tasks", "ToolSupport", argumentParser],
                          path: "Sources/Tools/det-train", swiftSettings: checked),
        .executableTarget(name: "seg-train", dependencies: ["Heads", "Tasks", "ToolSupport", argumentParser],
                          path: "Sources/Tools/seg-train", swiftSettings: checked),
        .executableTarget(name: "det-infer", dependencies: ["ACmixKit", "Engine", "NN", "Data", "Heads", "Training", "Tasks", "ToolSupport", argumentParser],
                          path: "Sources/Tools/det-infer", swiftSettings: checked),
        .executableTarget(name: "seg-infer", dependencies: ["ACmixKit", "Engine", "Data", "Heads", "Training", "Tasks", "ToolSupport", argumentParser],
                          path: "Sources/Tools/seg-infer", swiftSettings: checked),
        .executableTarget(name: "make-shapes", dependencies: ["Data", "ToolSupport", argumentParser], path: "Sources/Tools/make-shapes"),
        .executableTarget(name: "det-eval", dependencies: ["Engine", "Data", "Evaluation", "Heads", "Training", "Tasks", "ToolSupport", argumentParser],
                          path: "Sources/Tools/det-eval"),
        .executableTarget(name: "seg-eval", dependencies: ["Engine", "Data", "Evaluation", "Heads", "Training", "Tasks", "ToolSupport", argumentParser],
                          path: "Sources/Tools/seg-eval"),
        .executableTarget(name: "quantize", dependencies: ["ACmixKit", "Config", "Engine", "Heads", "Tasks", "ToolSupport", argumentParser],
                          path: "Sources/Tools/quantize", swiftSettings: checked),
        .executableTarget(name: "export-features", dependencies: ["ACmixKit", "Engine", "NN", "Data", "Backbones", "Training", "ToolSupport", argumentParser],
                          path: "Sources/Tools/export-features", swiftSettings: checked),
        .executableTarget(name: "get-flops", dependencies: ["Backbones", "Engine", "NN", "Tasks", "ToolSupport", argumentParser],
                          path: "Sources/Tools/get-flops", swiftSettings: checked),
        .executableTarget(name: "analyze-logs", dependencies: ["Data", "Engine", "NN", "Training", "ToolSupport", argumentParser],
                          path: "Sources/Tools/analyze-logs", swiftSettings: checked),
        .executableTarget(name: "confusion-matrix", dependencies: ["Data", "Engine", "Evaluation", "NN", "Tasks", "ToolSupport", argumentParser],
                          path: "Sources/Tools/confusion-matrix", swiftSettings: checked),
        .executableTarget(name: "browse-dataset", dependencies: ["Data", "Engine", "Heads", "Tasks", "Training", "ToolSupport", argumentParser],
                          path: "Sources/Tools/browse-dataset", swiftSettings: checked),

        .target(name: "TestSupport", dependencies: ["Engine"], path: "Tests/TestSupport"),
        .testTarget(name: "EngineTests", dependencies: ["Engine", "NN", "TestSupport"], path: "Tests/EngineTests"),
        .testTarget(name: "NNTests", dependencies: ["Engine", "NN"], path: "Tests/NNTests"),
        .testTarget(name: "DataTests", dependencies: ["Data"], path: "Tests/DataTests"),
        .testTarget(name: "EvaluationTests", dependencies: ["Evaluation", "Data", "TestSupport"], path: "Tests/EvaluationTests"),
        .testTarget(name: "HeadsTests", dependencies: ["Engine", "NN", "Config", "Data", "Backbones", "Heads", "Training", "Tasks",
                                                     "ToolSupport", "TestSupport"], path: "Tests/HeadsTests"),
        .testTarget(name: "BackbonesTests", dependencies: ["Backbones", "NN", "Data", "TestSupport"], path: "Tests/BackbonesTests"),
        .testTarget(name: "DistributedTests", dependencies: ["Distributed", "Engine", "NN", "Config", "Data", "Heads", "Training", "Tasks",
                                                         "TestSupport"], path: "Tests/DistributedTests"),
        .testTarget(name: "KitTests", dependencies: ["ACmixKit", "Backbones", "Config", "Heads", "NN", "Tasks", "Training", "TestSupport"],
                    path: "Tests/KitTests"),
        .testTarget(name: "SegmentationTests", dependencies: ["Heads", "Backbones", "NN", "Engine", "Config", "Data", "Evaluation", "Training",
                                                            "Tasks", "TestSupport"], path: "Tests/SegmentationTests",
                    exclude: ["Reference"]),
    ],
    swiftLanguageModes: [.v5]
)
