import Config
import Engine
import Foundation
import Heads
import Tasks
import Training

/// A trained segmentor (UPerNet, FCN, Semantic FPN) made from a config and a checkpoint, run on images through the
/// config's test pipeline (whole or slide inference, as the config says), as seg-infer runs it.
///
/// ```swift
/// let segmenter = try Segmenter(config: "upernet-shapes", checkpoint: "work_dirs/seg/latest.safetensors")
/// let labels = try segmenter.predict(imageAt: "photo.png")   // labels[y, x] is a class index
/// ```
public final class Segmenter: QuantizableModel {
    public let model: any Segmentor
    let predictor: SegmentationPredictor
    /// Class names by index (the config's dataset's, else "class N").
    public let classes: [String]
    /// Colours by class, as seg-infer draws them.
    public let palette: [RGB]
    public let precision: Precision
    /// With precision int8: the calibrated convolutions (`calibrateInt8`, `loadInt8`).
    public var int8: Int8Model?
    public let checkpointPath: String
    public var quantizedModule: Module { model }

    /// Builds the config's model and loads `checkpoint`; see `ObjectDetector.init`.
    public init(config: ModelConfig, checkpoint: String, overrides: [String] = [], precision: Precision = .fp32) throws {
        try MixedPrecision.checkSupport(precision, option: "precision")
        let cfg = try SegmentationConfig.loadForInference(path: config.path, overrides: overrides)
        model = try SegmentationConfig.buildModel(cfg)
        try Checkpoint.loadForInference(from: checkpoint, into: model)
        let test = try SegmentationDatasets.testPipeline(cfg.section("data"))
        predictor = SegmentationPredictor(segmentor: model, pipeline: test.pipeline)
        let n = model.numClasses
        classes = test.classNames.flatMap { $0.count == n ? $0 : nil } ?? (0..<n).map { "class \($0)" }
        palette = Palette.colours(n, background: test.background)
        self.precision = precision
        checkpointPath = checkpoint
    }

    public func calibrationForward(_ image: Image) throws { _ = withNoGrad { predictor(image) } }

    /// The label map of the image file `path` (one class index per pixel, at the image's size).
    public func predict(imageAt path: String, augment: Bool = false) throws -> LabelMap {
        let image = try readImage(path)
        do { return try predict(image, augment: augment) } catch let e as KitError { throw e.prefixed("\(path): ") }
    }

    /// With `augment`, mmseg's ms+flip test-time augmentation.
    public func predict(_ image: Image, augment: Bool = false) throws -> LabelMap {
        let size = predictor.pipeline.inputSize(width: image.width, height: image.height)
        do {
            try predictor.validate(height: size.height, width: size.width, augment: augment, original: (image.height, image.width))
        } catch let e as KitError {
            throw KitError.model(inputSizeProblem(nil, image: image, resized: size, e))
        }
        return try withPrecision(precision) { predictor(image, augment: augment) }
    }

    public func predict(_ images: [Image], augment: Bool = false) throws -> [LabelMap] {
        try images.map { try predict($0, augment: augment) }
    }
}
