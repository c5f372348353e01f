import Config
import Engine
import Foundation
import Heads
import NN
import Tasks
import Training

/// One detected object, in the pixels of the image it was found in.
public struct Detection: Sendable, Equatable {
    /// Corners x1, y1, x2, y2 (mmdet's xyxy).
    public var box: (x1: Float, y1: Float, x2: Float, y2: Float) {
        get { (corners[0], corners[1], corners[2], corners[3]) }
        set { corners = [newValue.x1, newValue.y1, newValue.x2, newValue.y2] }
    }
    var corners: [Float]
    public var score: Float
    /// The model's 0-based class.
    public var label: Int
    /// The class's name (from the config's dataset, else the checkpoint's metadata, else "class N").
    public var name: String
    /// The dataset's category id (COCO's 1...90 for COCO models).
    public var categoryID: Int
    /// The instance mask (COCO's uncompressed RLE at the image's size), from detectors that predict masks.
    public var mask: RLE?

    public init(box: (x1: Float, y1: Float, x2: Float, y2: Float), score: Float, label: Int, name: String, categoryID: Int,
                mask: RLE? = nil) {
        corners = [box.x1, box.y1, box.x2, box.y2]
        self.score = score; self.label = label; self.name = name; self.categoryID = categoryID; self.mask = mask
    }

    /// The mask as one byte per pixel (0 or 1), row-major, or nil without a mask.
    public var maskBitmap: [UInt8]? { mask.map { MaskRuns(width: $0.w, height: $0.h, counts: $0.counts).bitmap() } }
}

/// A trained detector (RetinaNet, Faster / Mask / Cascade Mask R-CNN) made from a config and a checkpoint, run on
/// images through the config's test pipeline, as det-infer runs it.
///
/// ```swift
/// let detector = try ObjectDetector(config: "retinanet-shapes", checkpoint: "work_dirs/shapes/latest.safetensors")
/// for d in try detector.predict(imageAt: "photo.jpg", scoreThreshold: 0.3) { print(d.name, d.score, d.box) }
/// ```
public final class ObjectDetector: QuantizableModel {
    public let model: any Detector
    let predictor: DetectionPredictor
    /// Class names, by label.
    public let classes: [String]
    /// Dataset category ids, by label.
    public let categoryIDs: [Int]
    public let precision: Precision
    /// With precision int8: the calibrated convolutions (`calibrateInt8`, `loadInt8`).
    public var int8: Int8Model?
    public let checkpointPath: String
    public var quantizedModule: Module { model }

    /// Builds the config's model and loads `checkpoint` (a training checkpoint or a state dict, e.g. converted from
    /// mmdet by scripts/convert_pth.py). `overrides` are `--set` keys ("model.test_cfg.score_thr=0.1"). bf16 on a
    /// CPU without AVX512-BF16 / AMX-BF16 is refused, int8 on one without VNNI; int8 needs `calibrateInt8` or
    /// `loadInt8` before `predict`.
    public init(config: ModelConfig, checkpoint: String, overrides: [String] = [], precision: Precision = .fp32) throws {
        try MixedPrecision.checkSupport(precision, option: "precision")
        let cfg = try DetectionConfig.loadForInference(path: config.path, overrides: overrides)
        model = try DetectionConfig.buildModel(cfg)
        let loaded = try Checkpoint.loadForInference(from: checkpoint, into: model)
        predictor = DetectionPredictor(detector: model, pipeline: try DetectionDatasets.testPipeline(cfg.section("data")))
        let stored = loaded.metadata["classes"].flatMap { try? JSON.parse($0, source: "classes") }?.arrayValue?.compactMap(\.stringValue)
        let c = try DetectionDatasets.categories(cfg.section("data"), numClasses: model.numClasses, checkpointClasses: stored)
        (classes, categoryIDs) = (c.names, c.categoryIDs)
        self.precision = precision
        checkpointPath = checkpoint
    }

    public func calibrationForward(_ image: Image) throws {
        try checkInputs([image])
        _ = predictor([image])
    }

    /// Detections in the image file `path` scoring at least `scoreThreshold`, best first per class as the model
    /// returns them.
    public func predict(imageAt path: String, scoreThreshold: Float = 0) throws -> [Detection] {
        let image = try readImage(path)
        do { return try predict(image, scoreThreshold: scoreThreshold) } catch let e as KitError { throw e.prefixed("\(path): ") }
    }

    public func predict(_ image: Image, scoreThreshold: Float = 0) throws -> [Detection] {
        try predict([image], scoreThreshold: scoreThreshold)[0]
    }

    /// Detections of each image, in order. Images of one call are padded to a common size: batch images of one size
    /// to get what one at a time gives (up to float rounding).
    public func predict(_ images: [Image], scoreThreshold: Float = 0) throws -> [[Detection]] {
        guard !images.isEmpty else { return [] }
        try checkInputs(images)
        let raw = try withPrecision(precision) { predictor(images) }
        return raw.map { detections($0.scoring(atLeast: scoreThreshold)) }
    }

    /// Throws, naming the sizes, when the model cannot take an image the test pipeline makes of `images`.
    public func checkInputs(_ images: [Image]) throws {
        for image in images {
            let size = predictor.pipeline.inputSize(width: image.width, height: image.height)
            do { try model.backbone.validate(height: size.height, width: size.width) } catch let e as KitError {
                throw KitError.model(inputSizeProblem(nil, image: image, resized: size, e))
            }
        }
    }

    /// The model's raw output for one image as typed detections.
    public func detections(_ d: ImageDetections) -> [Detection] {
        (0..<d.count).map { k in
            let b = d.boxes[(4 * k)..<(4 * k + 4)].map { $0 }, label = d.labels[k]
            let known = label < classes.count
            return Detection(box: (b[0], b[1], b[2], b[3]), score: d.scores[k], label: label,
                             name: known ? classes[label] : "class \(label)", categoryID: known ? categoryIDs[label] : label + 1,
                             mask: d.masks.map { RLE(runs: $0[k]) })
        }
    }
}
