import Config
import Engine
import Foundation
import NN

/// mmdet's `RPNHead` (one conv): `rpn_conv` 3×3 + ReLU shared over levels, then `rpn_cls` (A sigmoid objectness
/// logits) and `rpn_reg` (A·4 deltas), A = 3 anchors (scales [8], ratios 0.5, 1, 2) per location at strides 4–64.
///
/// Keys: rpn_conv.{weight,bias}, rpn_cls.{weight,bias}, rpn_reg.{weight,bias}. Init: normal(0, 0.01), bias 0.
public final class RPNHead: AnchorHead {
    public let rpn_conv: Conv2d
    public let rpn_cls: Conv2d
    public let rpn_reg: Conv2d

    /// mmdet's RPN `test_cfg` / `train_cfg.rpn_proposal`: per level the `nmsPre` best scores, boxes with a side
    /// ≤ `minBBoxSize` dropped, NMS at `iouThreshold` across levels kept apart (batched by level), at most `maxPerImage`.
    public struct ProposalConfig: Equatable {
        public var nmsPre = 1000
        public var minBBoxSize: Float = 0
        public var iouThreshold: Float = 0.7
        public var maxPerImage = 1000
        public init(nmsPre: Int = 1000, minBBoxSize: Float = 0, iouThreshold: Float = 0.7, maxPerImage: Int = 1000) {
            self.nmsPre = nmsPre; self.minBBoxSize = minBBoxSize; self.iouThreshold = iouThreshold; self.maxPerImage = maxPerImage
        }
        /// As the anchor head's settings (proposals have no score threshold).
        var dense: DenseTestConfig {
            DenseTestConfig(nmsPre: nmsPre, scoreThr: 0, iouThreshold: iouThreshold, maxPerImage: maxPerImage, minBBoxSize: minBBoxSize)
        }
    }

    /// mmdet's RPN `train_cfg` (MaxIoUAssigner 0.7 / 0.3 / min_pos 0.3 with low-quality matches, RandomSampler 256 at
    /// 0.5) and `test_cfg` (1000 proposals before and after NMS at 0.7).
    public init(inChannels: Int = 256, featChannels: Int = 256,
                anchorGenerator: AnchorGenerator = AnchorGenerator(strides: [4, 8, 16, 32, 64], ratios: [0.5, 1, 2],
                                                                   octaveBaseScale: 8, scalesPerOctave: 1)) {
        let a = anchorGenerator.numBaseAnchors
        rpn_conv = Conv2d(inChannels, featChannels, kernelSize: 3, padding: 1)
        rpn_cls = Conv2d(featChannels, a, kernelSize: 1)
        rpn_reg = Conv2d(featChannels, a * 4, kernelSize: 1)
        super.init(numClasses: 1, anchorGenerator: anchorGenerator,
                   assigner: MaxIoUAssigner(posIoUThr: 0.7, negIoUThr: 0.3, minPosIoU: 0.3, ignoreIoFThr: -1),
                   sampler: RandomSampler(num: 256, posFraction: 0.5), testConfig: ProposalConfig().dense, nmsByLevel: true)
        for c in [rpn_conv, rpn_cls, rpn_reg] { normalInit(c) }
    }

    /// Per level: objectness logits [N, A, H, W] and deltas [N, A·4, H, W].
    public override func forward(_ feats: [Tensor]) -> (cls: [Tensor], reg: [Tensor]) {
        var cls: [Tensor] = [], reg: [Tensor] = []
        for f in feats {
            let x = rpn_conv(f, relu: true)
            cls.append(rpn_cls(x))
            reg.append(rpn_reg(x))
        }
        return (cls, reg)
    }

    /// Sigmoid cross-entropy on objectness (every ground truth is one foreground class).
    public override func classificationLoss(_ logits: Tensor, _ targets: Tensor) -> Tensor {
        binaryCrossEntropyWithLogits(logits, targets, reduction: .none)
    }

    public override var lossNames: (cls: String, bbox: String) { ("loss_rpn_cls", "loss_rpn_bbox") }

    /// mmdet's `RPNHead._predict_by_feat_single`: no score threshold; sorted (lower index on ties) and cut to
    /// `nmsPre` only when the level has more anchors.
    public override func selectCandidates(_ logits: UnsafePointer<Float>, rows: Int, config cfg: DenseTestConfig) -> [(Float, Int)] {
        var order = (0..<rows).map { (1 / (1 + Foundation.exp(-logits[$0])), $0) }
        if cfg.nmsPre > 0 && cfg.nmsPre < rows {
            order.sort { $0.0 > $1.0 || ($0.0 == $1.0 && $0.1 < $1.1) }
            order.removeLast(rows - cfg.nmsPre)
        }
        return order
    }

    /// Proposals per image as mmdet's `RPNHead.predict_by_feat` (rescale off: input-pixel coordinates), boxes flat
    /// [x1, y1, x2, y2] with their objectness, best first.
    public func proposals(_ feats: [Tensor], imgShapes: [(height: Int, width: Int)], config cfg: ProposalConfig)
        -> [(boxes: [Float], scores: [Float])] {
        predictByFeat(feats, imgShapes: imgShapes, scaleFactors: nil, config: cfg.dense).map { ($0.boxes, $0.scores) }
    }
}

extension RPNHead {
    /// `test_cfg.rpn` and `train_cfg.rpn_proposal` keys, with mmdet's defaults (`nms_pre` 1000 at test time,
    /// 2000 for the proposals of a training step).
    static func proposalFields(nmsPre: Int) -> [ConfigSchema.Field] { testFields(nmsPre: nmsPre, iou: 0.7, scoreThr: false) }

    /// A validated proposal section as settings.
    static func proposalConfig(_ p: Config) throws -> ProposalConfig {
        ProposalConfig(nmsPre: try p.int("nms_pre"), minBBoxSize: Float(try p.double("min_bbox_size")),
                       iouThreshold: Float(try p.double("nms.iou_threshold")), maxPerImage: try p.int("max_per_img"))
    }

    /// `train_cfg.rpn` keys: mmdet's RPN assigner and sampler; `allowed_border`, `pos_weight` and `debug` at the one
    /// value implemented.
    static let trainCfgFields: [ConfigSchema.Field] = [
        .init("assigner", .object(MaxIoUAssigner.fields(pos: 0.7, neg: 0.3, minPos: 0.3, lowQuality: true, allowIgnore: false))),
        .init("sampler", .object(RandomSampler.fields(num: 256, fraction: 0.5, addGT: false))),
        .init("allowed_border", .intRange(-1...100_000), default: -1), .init("pos_weight", .exactly(-1), default: -1),
        .init("debug", .exactly(false), default: false),
    ]

    /// `rpn_head`: its `train_cfg` / `test_cfg` are the detector's `train_cfg.rpn` / `test_cfg.rpn` (the context's).
    static func register(in r: Registry<any DenseHead, DenseHeadContext>) {
        r.register("RPNHead", fields: [
            .init("in_channels", .positiveInt), .init("feat_channels", .positiveInt, default: 256),
            .init("anchor_generator", .object([
                .init("type", .oneOf(["AnchorGenerator"]), default: "AnchorGenerator"),
                .init("scales", .array(.positiveNumber, count: 1), default: [8]),
                .init("ratios", .array(.positiveNumber), default: [0.5, 1.0, 2.0]),
                .init("strides", .array(.positiveInt), default: [4, 8, 16, 32, 64]),
            ])),
            .init("bbox_coder", .object(DeltaXYWHBBoxCoder.fields(zeroMeans: true))),
            .init("loss_cls", .object([.init("type", .oneOf(["CrossEntropyLoss"]), default: "CrossEntropyLoss"),
                                       .init("use_sigmoid", .exactly(true), default: true), .init("loss_weight", .nonNegativeNumber, default: 1)])),
            .init("loss_bbox", .object([.init("type", .oneOf(["L1Loss", "SmoothL1Loss"]), default: "L1Loss"), .init("beta", .positiveNumber),
                                        .init("loss_weight", .nonNegativeNumber, default: 1)])),
        ]) { c, context in
            try c.checkChannels("in_channels", context.inChannels)
            let head = RPNHead(inChannels: context.inChannels, featChannels: try c.int("feat_channels"),
                               anchorGenerator: try AnchorGenerator.build(c.section("anchor_generator"), levels: context.levels))
            head.coder = try Registries.bboxCoders.build(c.section("bbox_coder"))
            head.clsLossWeight = Float(try c.double("loss_cls.loss_weight"))
            head.bboxLossWeight = Float(try c.double("loss_bbox.loss_weight"))
            head.smoothL1Beta = try smoothL1BetaSetting(c.section("loss_bbox"))
            let train = try settings(context.trainCfg, trainCfgFields), test = try settings(context.testCfg, proposalFields(nmsPre: 1000))
            head.assigner = try Registries.assigners.build(train.section("assigner"))
            head.sampler = try Registries.samplers.build(train.section("sampler"))
            head.allowedBorder = try allowedBorder(train)
            head.testConfig = try proposalConfig(test).dense
            return head
        }
    }
}
