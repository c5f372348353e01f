import Backbones
import Config
import Data
import Engine
import Heads
import NN
import Training

/// A detector run on users' images through a config's test pipeline (mmdet's `inference_detector`): resize,
/// normalise, pad, predict; boxes come back in each image's original pixels.
public struct DetectionPredictor {
    public let detector: any Detector
    public let pipeline: DetectionPipeline

    public init(detector: any Detector, pipeline: DetectionPipeline) {
        precondition(!pipeline.training, "a predictor runs the test pipeline")
        self.detector = detector; self.pipeline = pipeline
        detector.eval()
    }

    /// Detections of each image, in order. Images of one call are padded to a common size (batch them by size for
    /// results identical to one at a time, as mmdet's batch of one gives).
    public func callAsFunction(_ images: [Image]) -> [ImageDetections] {
        var rng = SplitMix64(seed: 0)   // the test pipeline draws nothing
        let inputs = images.map { pipeline(DetectionSample(filename: "", image: $0, annotations: []), rng: &rng) }
        let batch = Batch(indices: Array(inputs.indices), items: inputs)
        return detector.predict(Tensor(batch.images, shape: batch.shape), imgShapes: inputs.map { $0.meta.imgShape },
                                scaleFactors: inputs.map { $0.meta.scaleFactor }, oriShapes: inputs.map { $0.meta.oriShape })
    }
}

/// A segmentor run on users' images through a config's test pipeline (mmseg's `inference_model`): logits at the
/// resized input, resized bilinearly back to the image, argmax. With `augment`, mmseg 1.x's "ms+flip" test-time
/// augmentation (`SegTTAModel`): the image rescaled by each of `ratios` (keep ratio), each with and without a
/// horizontal flip, every prediction's logits flipped back and resized to the image, softmax, averaged; argmax.
public struct SegmentationPredictor {
    public let segmentor: any Segmentor
    public let pipeline: SegmentationPipeline
    /// mmseg's `img_ratios` of its TTA pipelines.
    public static let ratios = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]

    public init(segmentor: any Segmentor, pipeline: SegmentationPipeline) {
        precondition(!pipeline.training, "a predictor runs the test pipeline")
        self.segmentor = segmentor; self.pipeline = pipeline
        segmentor.eval()
    }

    public func callAsFunction(_ image: Image, augment: Bool = false) -> LabelMap {
        let (w, h) = (image.width, image.height)
        let scores: Tensor
        if augment {
            var sum: Tensor?
            for r in Self.ratios {
                // mmcv Resize(scale_factor=r, keep_ratio=True): the target (w·r, h·r) rounded, then a keep-ratio rescale.
                let target = (Int(Double(w) * r + 0.5), Int(Double(h) * r + 0.5))
                let size = rescaleSize(width: w, height: h, scale: target)
                let resized = image.resized(width: size.width, height: size.height)
                for flip in [false, true] {
                    let input = pipeline.normalize(flip ? resized.flippedHorizontally() : resized)
                    var logits = logitsAt(input)
                    if flip { logits = logits.flippedHorizontally() }
                    let p = withNoGrad { logits.resizeBilinear(h, w).softmax(axis: 1) }
                    if let s = sum { sum = withNoGrad { s + p } } else { sum = p }   // the mean's argmax is the sum's
                }
            }
            scores = sum!
        } else {
            var rng = SplitMix64(seed: 0)
            let input = pipeline(SegmentationSample(filename: "", image: image, label: LabelMap(width: w, height: h, fill: 255)),
                                 rng: &rng)
            scores = withNoGrad { logitsAt(input.image).resizeBilinear(h, w) }
        }
        return LabelMap(width: w, height: h, labels: scores.argmax(axis: 1).map { UInt8(clamping: $0) })
    }

    /// Throws when the model cannot take the input an image becomes: `height`×`width` after the test resize, or with
    /// `augment` the smallest rescaled copy of the `original` image (a slide window never exceeds the image).
    public func validate(height: Int, width: Int, augment: Bool, original: (height: Int, width: Int)) throws {
        var sizes = [(height, width, "")]
        if augment {
            let r = Self.ratios.min()!
            let s = rescaleSize(width: original.width, height: original.height,
                                scale: (Int(Double(original.width) * r + 0.5), Int(Double(original.height) * r + 0.5)))
            sizes.append((s.height, s.width, "at --aug-test's smallest scale (\(r): \(s.width)x\(s.height)), "))
        }
        for (h, w, context) in sizes {
            do {
                if case let .slide(crop, _) = segmentor.testMode {
                    try segmentor.validate(height: min(h, crop.height), width: min(w, crop.width))
                } else {
                    try segmentor.validate(height: h, width: w)
                }
            } catch let e as KitError { throw e.prefixed(context) }
        }
    }

    /// Logits [1, C, h, w] of one normalised CHW image at its own size, inferred as the model's test mode says.
    func logitsAt(_ image: FloatImage) -> Tensor {
        segmentor.inference(Tensor(image.data, shape: [1, 3, image.height, image.width]), mode: segmentor.testMode, outputSize: nil)
    }
}

extension Tensor {
    /// [N, C, H, W] mirrored along W (no gradient).
    func flippedHorizontally() -> Tensor {
        let (rows, w) = (shape[0] * shape[1] * shape[2], shape[3])
        let out = Tensor(zeros: shape), s = data, d = out.data
        for r in 0..<rows {
            for x in 0..<w { d[r * w + x] = s[r * w + w - 1 - x] }
        }
        return out
    }
}

/// One line for an image the model cannot take: the file (when there is one), the image's own size and the size the
/// test pipeline made of it, then the model's reason.
public func inputSizeProblem(_ file: String?, image: Image, resized: (height: Int, width: Int), _ error: KitError) -> String {
    (file.map { "\($0): " } ?? "") + "the \(image.width)x\(image.height) image becomes \(resized.width)x\(resized.height) "
        + "(width x height) after the test pipeline's resize, which the model cannot take: \(error)"
}

/// A detection or segmentation config's model (random weights), picked by its `model.type`, with the validated
/// config: what a tool that takes either kind builds (get-flops, a trained model's feature extractor).
public enum TaskModel {
    case detector(any Detector)
    case segmentor(any Segmentor)

    public static func build(config path: String, overrides: [String]) throws -> (model: TaskModel, config: Config) {
        let type = try Config.load(path: path, overrides: overrides).string("model.type")
        if Registries.detectors.names.contains(type) {
            let c = try DetectionConfig.loadForInference(path: path, overrides: overrides)
            return (.detector(try DetectionConfig.buildModel(c)), c)
        }
        if Registries.segmentors.names.contains(type) {
            let c = try SegmentationConfig.loadForInference(path: path, overrides: overrides)
            return (.segmentor(try SegmentationConfig.buildModel(c)), c)
        }
        throw KitError.config("\(path): model.type: '\(type)' is neither a detector (\(Registries.detectors.names.joined(separator: ", "))) "
                              + "nor a segmentor (\(Registries.segmentors.names.joined(separator: ", ")))")
    }

    public var module: Module {
        switch self {
        case let .detector(d): d
        case let .segmentor(s): s
        }
    }

    public var backbone: any Backbone {
        switch self {
        case let .detector(d): d.backbone
        case let .segmentor(s): s.backbone
        }
    }
}
