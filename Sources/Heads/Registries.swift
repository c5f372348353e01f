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
        RPNHead.register(in: r)
        return r
    }()
    /// `model.roi_head` of two-stage detectors.
    public static let roiHeads: Registry<any RoIHead, RoIHeadContext> = {
        let r = Registry<any RoIHead, RoIHeadContext>(kind: "RoI head")
        StandardRoIHead.register(in: r)
        CascadeRoIHead.register(in: r)
        return r
    }()
    /// `bbox_head` of RoI heads (context: the neck's channels).
    public static let bboxHeads: Registry<Shared2FCBBoxHead, Int> = {
        let r = Registry<Shared2FCBBoxHead, Int>(kind: "bbox head")
        Shared2FCBBoxHead.register(in: r)
        return r
    }()
    /// `mask_head` of RoI heads (context: the neck's channels).
    public static let maskHeads: Registry<FCNMaskHead, Int> = {
        let r = Registry<FCNMaskHead, Int>(kind: "mask head")
        FCNMaskHead.register(in: r)
        return r
    }()
    /// `bbox_roi_extractor` / `mask_roi_extractor` of RoI heads (context: the neck's channels).
    public static let roiExtractors: Registry<SingleRoIExtractor, Int> = {
        let r = Registry<SingleRoIExtractor, Int>(kind: "RoI extractor")
        SingleRoIExtractor.register(in: r)
        return r
    }()
    /// `assigner` of a head's `train_cfg`.
    public static let assigners: Registry<MaxIoUAssigner, Void> = {
        let r = Registry<MaxIoUAssigner, Void>(kind: "assigner")
        MaxIoUAssigner.register(in: r)
        return r
    }()
    /// `sampler` of a head's `train_cfg`.
    public static let samplers: Registry<RandomSampler, Void> = {
        let r = Registry<RandomSampler, Void>(kind: "sampler")
        RandomSampler.register(in: r)
        return r
    }()
    /// `bbox_coder` of heads.
    public static let bboxCoders: Registry<DeltaXYWHBBoxCoder, Void> = {
        let r = Registry<DeltaXYWHBBoxCoder, Void>(kind: "bbox coder")
        DeltaXYWHBBoxCoder.register(in: r)
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

/// A `train_cfg` / `test_cfg` section validated against a head's fields and filled with their defaults (an empty
/// section, filled, when the detector has none).
func settings(_ section: Config?, _ fields: [ConfigSchema.Field]) throws -> Config {
    let schema = ConfigSchema.object(fields)
    guard let section else { return try Config(json: .object([])).filled(schema) }
    try section.validate(schema)
    return section.filled(schema)
}

extension Config {
    /// A part's channel key (`in_channels`, `out_channels`), when given, must be what the neck gives.
    func checkChannels(_ key: String, _ channels: Int) throws {
        if has(key), try int(key) != channels { throw fail(key, "\(try int(key)) but the neck gives \(channels)") }
    }
}

/// β of a validated `loss_bbox` section that may name `SmoothL1Loss` (mmdet's default β 1.0), nil for `L1Loss`.
func smoothL1BetaSetting(_ loss: Config) throws -> Float? {
    if try loss.string("type") == "SmoothL1Loss" { return Float(try loss.double("beta", default: 1)) }
    if loss.has("beta") { throw loss.fail("beta", "is for SmoothL1Loss") }
    return nil
}
