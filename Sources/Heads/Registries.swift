import Backbones
import Config

/// Every kind of model component, by the config section that names it. A new backbone, neck, head, detector or
/// segmentor is a class plus a `register` call (here for the built-in ones; from anywhere for others):
///
///     Registries.denseHeads.register("MyHead", fields: [...]) { section, context in MyHead(...) }
public enum Registries {
    /// `model.backbone` (picked by `arch`).
    public static var backbones: Registry<any Backbone, Void> { BackboneRegistry.registry }
    /// `model.neck`.
    public static let necks: Registry<any Neck, NeckContext> = {
        let r = Registry<any Neck, NeckContext>(kind: "neck")
        FPN.register(in: r)
        return r
    }()
    /// `model.bbox_head` of single-stage detectors.
    public static let denseHeads: Registry<any DenseHead, DenseHeadContext> = {
        let r = Registry<any DenseHead, DenseHeadContext>(kind: "dense head")
        RetinaHead.register(in: r)
        return r
    }()
    /// `model.decode_head` and `model.auxiliary_head` of segmentors.
    public static let decodeHeads: Registry<any SegmentationDecodeHead, DecodeHeadContext> = {
        let r = Registry<any SegmentationDecodeHead, DecodeHeadContext>(kind: "decode head")
        UPerHead.register(in: r)
        SemanticFPNHead.register(in: r)
        FCNHead.register(in: r)
        return r
    }()
    /// `model` of det-train / det-eval configs.
    public static let detectors: Registry<any Detector, Void> = {
        let r = Registry<any Detector, Void>(kind: "detector")
        SingleStageDetector.register(in: r)
        TwoStageDetector.register(in: r)
        return r
    }()
    /// `model` of seg-train / seg-eval configs.
    public static let segmentors: Registry<any Segmentor, Void> = {
        let r = Registry<any Segmentor, Void>(kind: "segmentor")
        EncoderDecoder.register(in: r)
        return r
    }()
}
