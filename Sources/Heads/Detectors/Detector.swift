import Backbones
import Config
import Engine
import NN

/// What training and evaluation need from any detector.
public protocol Detector: Module {
    /// Named loss terms for a batch [N, 3, H, W] (targets in input-pixel coordinates).
    func lossTerms(_ images: Tensor, targets: [DetectionTarget]) -> [(String, Tensor)]
    /// Detections per image in original-image coordinates (boxes divided by each image's scale factor; masks, from
    /// detectors that predict them, at each image's original `oriShapes` size).
    func predict(_ images: Tensor, imgShapes: [(height: Int, width: Int)], scaleFactors: [[Float]],
                 oriShapes: [(height: Int, width: Int)]) -> [ImageDetections]
    /// The backbone, for checks of the input sizes a config asks for.
    var backbone: any Backbone { get }
    /// Object classes it detects (labels 0..<numClasses).
    var numClasses: Int { get }
    /// Whether `predict` returns masks (and training needs the ground truth's instance masks).
    var predictsMasks: Bool { get }
}

extension Neck {
    /// The neck's maps of `backbone`'s features: through the chain when both run on it (bf16 or int8 inference), leaving it
    /// once per map, else as float32 NCHW tensors throughout.
    public func features(of backbone: any Backbone, _ images: Tensor) -> [Tensor] {
        if let maps = chainedFeatures(of: backbone, images) { return maps.map { $0.tensor() } }
        return self(backbone.features(images))
    }

    /// The neck's maps of `backbone`'s features as chained activations, or nil when either does not chain. At int8 a
    /// backbone that does not chain (ACmix, Swin) hands its float32 features over once per map, in float32 nhwc, which
    /// each quantized convolution rounds once, to u8 (`ConvChain.int8Input`): ACmix-ResNet-50 RetinaNet at 800×1333
    /// 2.32–2.44 → 2.26–2.27 s (minima, Zen 4). Not at bf16, where the neck's 3×3 convolutions per convolution run
    /// float32 Winograd on CPUs without AMX (`ConvPolicy.winogradOverBF16`): chained, 2.36–2.44 → 2.49–2.54 s.
    public func chainedFeatures(of backbone: any Backbone, _ images: Tensor) -> [ChainTensor]? {
        guard ConvChain.chaining, chains else { return nil }
        if let feats = backbone.chainedFeatures(images) { return chained(feats) }
        guard ConvChain.int8Mixed else { return nil }
        return chained(backbone.features(images).map { ConvChain.enter($0, type: .f32, layout: .nhwc) })
    }
}

extension Detector {
    public var predictsMasks: Bool { false }
}

/// mmdet `SingleStageDetector` (RetinaNet, ...): backbone → neck → dense head. Keys backbone.*, neck.*, bbox_head.*.
public final class SingleStageDetector: Module, Detector {
    public let backbone: any Backbone
    public let neck: any Neck
    public let bbox_head: any DenseHead
    public var numClasses: Int { bbox_head.numClasses }

    public init(backbone: any Backbone, neck: any Neck, head: any DenseHead) {
        self.backbone = backbone; self.neck = neck; bbox_head = head
    }

    public override func children() -> [(String, Module)] { [("backbone", backbone), ("neck", neck), ("bbox_head", bbox_head)] }

    public func features(_ images: Tensor) -> [Tensor] { neck.features(of: backbone, images) }

    public func lossTerms(_ images: Tensor, targets: [DetectionTarget]) -> [(String, Tensor)] {
        bbox_head.loss(features(images), targets: targets)
    }

    public func predict(_ images: Tensor, imgShapes: [(height: Int, width: Int)], scaleFactors: [[Float]],
                        oriShapes: [(height: Int, width: Int)]) -> [ImageDetections] {
        withNoGrad {
            // bf16 inference: backbone, neck and head on chained activations when all three run on them.
            if bbox_head.predictsChained, let feats = neck.chainedFeatures(of: backbone, images) {
                return bbox_head.predict(chained: feats, imgShapes: imgShapes, scaleFactors: scaleFactors)
            }
            return bbox_head.predict(features(images), imgShapes: imgShapes, scaleFactors: scaleFactors)
        }
    }

    /// `model` of type RetinaNet / SingleStageDetector: the parts come from their registries; `train_cfg` and
    /// `test_cfg` are handed to the dense head, which owns their schema (as mmdet's `bbox_head.update(train_cfg=...)`).
    static func register(in r: Registry<any Detector, Void>) {
        r.register(["RetinaNet", "SingleStageDetector"], fields: [
            .init("backbone", Registries.backbones.schema, required: true),
            .init("neck", Registries.necks.schema, required: true),
            .init("bbox_head", Registries.denseHeads.schema, required: true),
            .init("train_cfg", .any), .init("test_cfg", .any),
        ]) { c, _ in
            let backbone = try Registries.backbones.build(c.section("backbone"))
            let neck = try Registries.necks.build(c.section("neck"), NeckContext(inChannels: backbone.featureChannels))
            let head = try Registries.denseHeads.build(c.section("bbox_head"), DenseHeadContext(
                inChannels: neck.outChannels, levels: neck.levelCount, trainCfg: c.has("train_cfg") ? c.section("train_cfg") : nil,
                testCfg: c.has("test_cfg") ? c.section("test_cfg") : nil))
            return SingleStageDetector(backbone: backbone, neck: neck, head: head)
        }
    }
}
