@_exported import Data
@_exported import Engine
import Foundation

// ACmixKit: what an app needs to run the toolkit's models, in one import (mmdet's `init_detector` /
// `inference_detector`, mmseg's `init_model` / `inference_model`). `Image`, `LabelMap`, `RLE`, `Tensor`, `Precision`
// and `KitError` come with it; every failure is thrown as a `KitError` whose message names the file, key or argument.
//
// Thread safety: a model instance is not safe to call from two threads at once, and the engine keeps process-wide
// state (its thread pool, the precision of the current call, the autograd mode). Call the kit from one thread, task
// or actor at a time; each call already uses the engine's threads (`ACMIX_NUM_THREADS`, default: all cores).

/// The built-in shapes demos: their configs ship with the package, so an app names them instead of a path.
public enum BuiltInModel: String, CaseIterable, Sendable {
    case retinanetShapes = "retinanet-shapes"
    case fasterRCNNShapes = "faster-rcnn-shapes"
    case maskRCNNShapes = "mask-rcnn-shapes"
    case cascadeMaskRCNNShapes = "cascade-mask-rcnn-shapes"
    case upernetShapes = "upernet-shapes"

    /// The config, relative to the package root.
    public var configFile: String {
        switch self {
        case .retinanetShapes: "configs/retinanet/retinanet_acmix_resnet26_fpn_shapes.json"
        case .fasterRCNNShapes: "configs/faster_rcnn/faster_rcnn_acmix_resnet26_fpn_shapes.json"
        case .maskRCNNShapes: "configs/mask_rcnn/mask_rcnn_acmix_resnet26_fpn_shapes.json"
        case .cascadeMaskRCNNShapes: "configs/cascade_rcnn/cascade_mask_rcnn_acmix_resnet26_fpn_shapes.json"
        case .upernetShapes: "configs/upernet/upernet_acmix_resnet26_shapes.json"
        }
    }

    /// Detectors, or the segmentor.
    public var isDetector: Bool { self != .upernetShapes }

    /// The config's path: in the working directory when it is there, else in the ACmixKit checkout this library
    /// was built from (a path dependency keeps its sources).
    public var configPath: String {
        if FileManager.default.fileExists(atPath: configFile) { return configFile }
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        return root.appendingPathComponent(configFile).path
    }
}

/// Where a model's config comes from: a JSON file (mmdet-style, with `_base_`), or a built-in demo.
public enum ModelConfig: Sendable, ExpressibleByStringInterpolation {
    case file(String)
    case builtIn(BuiltInModel)

    /// A path, or a built-in name such as "retinanet-shapes".
    public init(_ pathOrName: String) {
        self = BuiltInModel(rawValue: pathOrName).map { .builtIn($0) } ?? .file(pathOrName)
    }

    public init(stringLiteral value: String) { self.init(value) }

    public var path: String {
        switch self {
        case let .file(p): p
        case let .builtIn(m): m.configPath
        }
    }
}
