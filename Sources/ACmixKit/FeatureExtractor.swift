import Backbones
import Engine
import Foundation
import NN
import Tasks
import Training

/// `classification`: the authors' fixed-size classifier; `dense`: mmdetection's any-size backbone (per-stage output
/// norms on Swin; ResNet is the same in both).
public enum FeatureMode: String, CaseIterable, Sendable { case classification, dense }

/// A backbone's multi-scale features (ResNet's C2–C5, Swin's stage1–4; float32 NCHW) for tools that consume them,
/// as export-features writes them: a backbone arch with the authors' (or mmdet's `backbone.`) weights, or the
/// backbone of a trained detector or segmentor.
///
/// ```swift
/// let extractor = try FeatureExtractor(arch: "acmix_resnet50", weights: "acmix_r50.safetensors")
/// for f in try extractor.features(imageAt: "photo.jpg") { print(f.name, f.tensor.shape) }
/// let trained = try FeatureExtractor(config: "retinanet-shapes", checkpoint: "work_dirs/shapes/latest.safetensors")
/// ```
public final class FeatureExtractor: QuantizableModel {
    /// The backbone's arch (the config's `model.backbone.arch` for the config form).
    public let arch: String
    public let mode: FeatureMode
    public let precision: Precision
    /// The classes of the weights' classification head (fc / head), when they have one.
    public let numClasses: Int?
    /// Whether the last call ran a dense Swin whose per-output norms the weights lacked (weight 1, bias 0 used, as
    /// mmdetection starts them).
    public private(set) var usedDefaultNorms = false
    let weights: String
    let state: [String: Tensor]
    /// The trained model's backbone (config form), weights loaded; nil: built per input from `state`.
    let trained: (any Backbone)?
    /// With precision int8 (config form only): the backbone's calibrated convolutions.
    public var int8: Int8Model?
    public var checkpointPath: String { weights }
    public var quantizedModule: Module { trained ?? Module() }

    public func calibrationForward(_ image: Image) throws {
        guard let trained else { return }
        let x = FeatureExtractor.input(image)
        try trained.validate(height: x.shape[2], width: x.shape[3])
        _ = withNoGrad { trained.features(x) }
    }

    /// Reads `weights` (.safetensors with the authors' state-dict keys, with or without a "backbone." prefix).
    public init(arch: String, weights: String, mode: FeatureMode = .dense, precision: Precision = .fp32) throws {
        guard BackboneRegistry.allArchs.contains(arch) else {
            throw KitError.usage("unknown arch '\(arch)'; known: \(BackboneRegistry.allArchs.joined(separator: ", "))")
        }
        try MixedPrecision.checkSupport(precision, option: "precision")
        if precision == .int8 {
            throw KitError.usage("precision int8 needs a trained model's backbone (the config form: --config and --checkpoint), "
                                 + "which calibration runs")
        }
        self.arch = arch; self.mode = mode; self.precision = precision; self.weights = weights
        state = try SafeTensors.read(path: weights).tensors
        numClasses = BackboneRegistry.numClasses(in: state)
        trained = nil
    }

    /// The backbone of a detection or segmentation config's model with `checkpoint` loaded (dense mode: any size).
    public init(config: ModelConfig, checkpoint: String, overrides: [String] = [], precision: Precision = .fp32) throws {
        try MixedPrecision.checkSupport(precision, option: "precision")
        let (model, cfg) = try TaskModel.build(config: config.path, overrides: overrides)
        try Checkpoint.loadForInference(from: checkpoint, into: model.module)
        model.module.eval()
        arch = try cfg.string("model.backbone.arch")   // the backbone registry's tag: a validated config has it
        mode = .dense; self.precision = precision; weights = checkpoint; state = [:]; numClasses = nil
        trained = model.backbone
    }

    /// Features of the image file `path`: decoded as RGB and normalised with the ImageNet mean/std at its own size
    /// (mmcv's Normalize with to_rgb), a batch of one.
    public func features(imageAt path: String, logits: Bool = false) throws -> [(name: String, tensor: Tensor)] {
        let image = try readImage(path)
        do { return try features(image, logits: logits) } catch let e as KitError { throw e.prefixed("\(path) (\(image.width)x\(image.height)): ") }
    }

    public func features(_ image: Image, logits: Bool = false) throws -> [(name: String, tensor: Tensor)] {
        try features(FeatureExtractor.input(image), logits: logits)
    }

    /// `image` as the network's input [1, 3, H, W].
    public static func input(_ image: Image) -> Tensor {
        let img = Normalize()(image)
        return Tensor(img.data, shape: [1, 3, img.height, img.width])
    }

    /// Features (and with `logits`, the classifier's logits, named "logits") of `x` [N, 3, H, W].
    public func features(_ x: Tensor, logits: Bool = false) throws -> [(name: String, tensor: Tensor)] {
        guard x.rank == 4, x.shape[1] == 3, x.shape[0] >= 1 else { throw KitError.usage("input has shape \(x.shape), expected (N, 3, H, W)") }
        let dense = mode == .dense
        if logits && numClasses == nil { throw KitError.usage("\(weights): logits need a classification head (fc.weight or head.weight), none found") }
        if logits && dense && BackboneRegistry.swinArchs.contains(arch) { throw KitError.usage("logits need the classification mode (dense models have no classifier)") }
        if let trained {
            try trained.validate(height: x.shape[2], width: x.shape[3])
            return try withPrecision(precision) { withNoGrad { zip(trained.featureNames, trained.features(x)).map { (name: $0, tensor: $1) } } }
        }
        if !dense, BackboneRegistry.swinArchs.contains(arch) { try checkSwinClassificationSize(x.shape) }
        let model = try BackboneRegistry.make(arch: arch, numClasses: logits ? numClasses : nil, dense: dense, imageSize: x.shape[2])
        try model.validate(height: x.shape[2], width: x.shape[3])
        let prefix = state.keys.contains { $0.hasPrefix("backbone.") } ? "backbone." : nil
        // Heads in the file but not requested are fine; so are the dense per-output norms missing from a classifier's
        // weights. Everything else the model needs must be there.
        var report = try model.load(stateDict: state, strict: false, stripPrefix: prefix, source: weights)
        let classifierKeys: Set<String> = ["fc.weight", "fc.bias", "head.weight", "head.bias", "norm.weight", "norm.bias"]
        report.unexpected = report.unexpected.filter { !classifierKeys.contains($0) }
        usedDefaultNorms = false
        if dense {
            let missingNorms = report.missing.filter { $0.range(of: #"^norm\d+\.(weight|bias)$"#, options: .regularExpression) != nil }
            usedDefaultNorms = !missingNorms.isEmpty
            report.missing = report.missing.filter { !missingNorms.contains($0) }
        }
        if !report.isClean {
            throw KitError.checkpoint("\(weights): weights do not match \(arch): " + report.problems(limit: 6).joined(separator: "; "))
        }
        model.eval()
        return try withPrecision(precision) {
            withNoGrad {
                var outputs = zip(model.featureNames, model.features(x)).map { (name: $0, tensor: $1) }
                if logits, let l = model.logits(x) { outputs.append((name: "logits", tensor: l)) }
                return outputs
            }
        }
    }

    /// Writes `features` as one safetensors file (float32, by name; written atomically), as export-features does.
    public static func save(_ features: [(name: String, tensor: Tensor)], metadata: [String: String] = [:], to path: String) throws {
        try SafeTensors.write(features.map { ($0.name, $0.tensor) }, metadata: metadata, to: path)
    }

    /// The authors' classification Swin shrinks a window that does not fit a stage's patch grid, which changes the
    /// shape of its position table: their weights (7×7 windows) only fit square inputs whose grid every window tiles.
    func checkSwinClassificationSize(_ shape: [Int]) throws {
        let c = SwinConfig(), unit = (c.patchSize << (c.depths.count - 1)) * c.windowSize
        let (h, w) = (shape[2], shape[3])
        guard h != w || h % unit != 0 else { return }
        throw KitError.usage("classification mode runs \(arch) on square inputs whose side is a multiple of \(unit) (so that its "
                             + "\(c.windowSize)x\(c.windowSize) windows tile every stage, as the weights were trained); got \(h)x\(w). "
                             + "Use --mode dense for other sizes")
    }
}
