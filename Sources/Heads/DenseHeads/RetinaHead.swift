import Config
import Engine
import Foundation
import NN

/// mmdet `RetinaHead`: `stackedConvs` 3×3 conv + ReLU layers for each of the classification and regression
/// branches (shared across levels), then `retina_cls` (A·C sigmoid logits) and `retina_reg` (A·4 deltas).
///
/// Keys: cls_convs.i.conv.*, reg_convs.i.conv.*, retina_cls.*, retina_reg.*. Init: normal(0.01), bias 0, retina_cls
/// bias −log((1 − 0.01)/0.01). Loss: sigmoid focal (γ, α) over non-ignored anchors and L1 on the positive anchors'
/// deltas, both summed and divided by the number of positives (at least 1).
public final class RetinaHead: AnchorHead {
    public let cls_convs: [ConvModule]
    public let reg_convs: [ConvModule]
    public let retina_cls: Conv2d
    public let retina_reg: Conv2d
    public var focalGamma: Float = 2, focalAlpha: Float = 0.25

    /// `groupNormGroups`: mmdet's `norm_cfg=dict(type='GN', num_groups=...)` in the stacked convs (nil: no norm).
    public init(numClasses: Int, inChannels: Int = 256, featChannels: Int = 256, stackedConvs: Int = 4,
                anchorGenerator: AnchorGenerator = AnchorGenerator(), groupNormGroups: Int? = nil) {
        let a = anchorGenerator.numBaseAnchors
        func stack() -> [ConvModule] {
            (0..<stackedConvs).map { ConvModule($0 == 0 ? inChannels : featChannels, featChannels, kernelSize: 3, padding: 1,
                                                norm: groupNormGroups.map { .groupNorm(groups: $0) } ?? .none, relu: true) }
        }
        cls_convs = stack()
        reg_convs = stack()
        retina_cls = Conv2d(featChannels, a * numClasses, kernelSize: 3, padding: 1)
        retina_reg = Conv2d(featChannels, a * 4, kernelSize: 3, padding: 1)
        super.init(numClasses: numClasses, anchorGenerator: anchorGenerator, assigner: MaxIoUAssigner(), sampler: nil,
                   testConfig: DenseTestConfig())
        for m in cls_convs + reg_convs { normalInit(m.conv) }
        normalInit(retina_cls, bias: -Foundation.log((1 - 0.01) / 0.01))
        normalInit(retina_reg)
    }

    /// Per level: classification logits [N, A·C, H, W] and box deltas [N, A·4, H, W].
    public override func forward(_ feats: [Tensor]) -> (cls: [Tensor], reg: [Tensor]) {
        // bf16 inference: each level enters the chain once, for both branches.
        if predictsChained {
            let (cls, reg) = chainedOutputs(feats.map { ConvChain.enter($0) })
            return (cls.map { $0.tensor() }, reg.map { $0.tensor() })
        }
        var cls: [Tensor] = [], reg: [Tensor] = []
        if let q = int8Chain(cls_convs), let r = int8Chain(reg_convs) {
            for f in feats {
                cls.append(int8Branch(f, cls_convs, q, retina_cls))
                reg.append(int8Branch(f, reg_convs, r, retina_reg))
            }
            return (cls, reg)
        }
        for f in feats {
            cls.append(retina_cls(cls_convs.reduce(f) { $1($0) }))
            reg.append(retina_reg(reg_convs.reduce(f) { $1($0) }))
        }
        return (cls, reg)
    }

    /// The int8 forms of a branch's stacked convolutions after the first, when int8 chains (`ConvChain.int8Active`) on a
    /// CPU without native bf16 (with it the head runs chained, `predictsChained`) and calibration quantized them all
    /// for u8 inputs (they follow ReLUs).
    func int8Chain(_ convs: [ConvModule]) -> [QuantizedConv]? {
        guard ConvChain.int8Active, convs.count >= 2, convs.allSatisfy(\.chainable),
              let model = Int8Inference.model else { return nil }
        let q = convs.dropFirst().compactMap { model.layer(weight: $0.conv.weight) }
        return q.count == convs.count - 1 && q.allSatisfy({ !$0.inputSigned }) ? q : nil
    }

    /// One branch at int8: the first convolution on the float map (its input is signed), the others on chained u8
    /// activations; the last stacked one's output leaves the chain in float32 for the final convolution, which stays in
    /// float32 (Winograd where it applies).
    func int8Branch(_ f: Tensor, _ convs: [ConvModule], _ q: [QuantizedConv], _ final: Conv2d) -> Tensor {
        var c = ConvChain.enter(convs[0](f), type: .u8, scale: q[0].inputScale)
        for j in 1..<convs.count {
            let last = j == convs.count - 1, conv = convs[j].conv
            c = ConvChain.conv(c, quantized: q[j - 1], weight: conv.weight, bias: conv.bias, stride: conv.stride, padding: conv.padding,
                               dilation: conv.dilation, relu: convs[j].relu, output: last ? .f32 : .u8, outputScale: last ? 1 : q[j].inputScale)
        }
        return final(c.tensor())
    }

    /// bf16 or int8 inference with plain stacked convolutions (no GroupNorm).
    public override var predictsChained: Bool { ConvChain.chaining && (cls_convs + reg_convs).allSatisfy(\.chainable) }

    /// The logits and deltas of chained maps, float32 in the chain's layout: both branches read each level's map.
    func chainedOutputs(_ feats: [ChainTensor]) -> (cls: [ChainTensor], reg: [ChainTensor]) {
        (feats.map { branch($0, cls_convs, retina_cls) }, feats.map { branch($0, reg_convs, retina_reg) })
    }

    /// One branch on a chained map. int8: the stacked convolutions calibration quantized pass u8 activations along
    /// (each follows a ReLU), the first reading the map as s8; the final convolution stays in bf16.
    func branch(_ f: ChainTensor, _ convs: [ConvModule], _ final: Conv2d) -> ChainTensor {
        var x = f
        for (j, m) in convs.enumerated() { x = m(x, feeding: j + 1 < convs.count ? convs[j + 1].conv : nil) }
        return final(x, f32: true)
    }

    /// Channels-last outputs are already in anchor order: flattening them is a reshape.
    public override func flatOutputs(chained feats: [ChainTensor]) -> FlatLevels {
        guard predictsChained else { return super.flatOutputs(chained: feats) }
        let (cls, reg) = chainedOutputs(feats)
        func rows(_ t: ChainTensor, _ k: Int) -> Tensor { t.releasingChannelsLast().reshape([t.shape[0], -1, k]) }
        return FlatLevels(cls: cls.map { rows($0, numClasses) }, reg: reg.map { rows($0, 4) }, sizes: cls.map { ($0.shape[2], $0.shape[3]) })
    }

    /// Sigmoid focal loss (γ, α), per anchor and class.
    public override func classificationLoss(_ logits: Tensor, _ targets: Tensor) -> Tensor {
        sigmoidFocalLoss(logits, targets, gamma: focalGamma, alpha: focalAlpha, reduction: .none)
    }
}

extension RetinaHead {
    /// The detector's `train_cfg` as RetinaNet reads it. mmdet's `pos_weight` and `debug` are accepted at the one
    /// value implemented (positives weigh 1, no debug output), and its sampler is the PseudoSampler (every assigned
    /// anchor counts).
    static let trainCfgFields: [ConfigSchema.Field] = [
        .init("assigner", .object(MaxIoUAssigner.fields(pos: 0.5, neg: 0.4, minPos: 0, lowQuality: true, ignoreIoF: 0.5))),
        .init("sampler", .object([.init("type", .oneOf(["PseudoSampler"]), default: "PseudoSampler")])),
        .init("allowed_border", .intRange(-1...100_000), default: -1), .init("pos_weight", .exactly(-1), default: -1),
        .init("debug", .exactly(false), default: false),
    ]
    /// The detector's `test_cfg` as RetinaNet reads it (mmdet 3.x defaults).
    static let testCfgFields = testFields(nmsPre: 1000, iou: 0.5, scoreThr: true)

    static func register(in r: Registry<any DenseHead, DenseHeadContext>) {
        r.register("RetinaHead", fields: [
            .init("num_classes", .positiveInt, required: true), .init("in_channels", .positiveInt),
            .init("stacked_convs", .nonNegativeInt, default: 4), .init("feat_channels", .positiveInt, default: 256),
            .init("anchor_generator", .object([
                .init("type", .oneOf(["AnchorGenerator"]), default: "AnchorGenerator"),
                .init("octave_base_scale", .positiveNumber, default: 4), .init("scales_per_octave", .positiveInt, default: 3),
                .init("ratios", .array(.positiveNumber), default: [0.5, 1.0, 2.0]),
                .init("strides", .array(.positiveInt), default: [8, 16, 32, 64, 128]),
                .init("center_offset", .fraction, default: 0),
            ])),
            .init("bbox_coder", .object(DeltaXYWHBBoxCoder.fields())),
            // RetinaNet's classifier is sigmoid focal loss; `use_sigmoid` is kept for mmdet configs and must say so.
            .init("loss_cls", .object([
                .init("type", .oneOf(["FocalLoss"]), default: "FocalLoss"), .init("use_sigmoid", .exactly(true), default: true),
                .init("gamma", .nonNegativeNumber, default: 2), .init("alpha", .fraction, default: 0.25),
                .init("loss_weight", .nonNegativeNumber, default: 1),
            ])),
            .init("loss_bbox", .object([.init("type", .oneOf(["L1Loss"]), default: "L1Loss"),
                                        .init("loss_weight", .nonNegativeNumber, default: 1)])),
            .init("norm_cfg", .optional(.object([.init("type", .oneOf(["GN"]), required: true),
                                                 .init("num_groups", .positiveInt, required: true),
                                                 .init("requires_grad", .exactly(true), default: true)]))),
        ]) { c, context in
            let inChannels = context.inChannels
            try c.checkChannels("in_channels", inChannels)
            let featChannels = try c.int("feat_channels")
            var groups: Int?
            if c.has("norm_cfg") {
                groups = try c.int("norm_cfg.num_groups")
                if featChannels % groups! != 0 { throw c.fail("norm_cfg.num_groups", "must divide feat_channels (\(featChannels))") }
            }
            let anchors = try AnchorGenerator.build(c.section("anchor_generator"), levels: context.levels)
            let head = RetinaHead(numClasses: try c.int("num_classes"), inChannels: inChannels, featChannels: featChannels,
                                  stackedConvs: try c.int("stacked_convs"), anchorGenerator: anchors, groupNormGroups: groups)
            head.coder = try Registries.bboxCoders.build(c.section("bbox_coder"))
            head.focalGamma = Float(try c.double("loss_cls.gamma"))
            head.focalAlpha = Float(try c.double("loss_cls.alpha"))
            head.clsLossWeight = Float(try c.double("loss_cls.loss_weight"))
            head.bboxLossWeight = Float(try c.double("loss_bbox.loss_weight"))
            let train = try settings(context.trainCfg, trainCfgFields), test = try settings(context.testCfg, testCfgFields)
            head.assigner = try Registries.assigners.build(train.section("assigner"))
            head.allowedBorder = try allowedBorder(train)
            head.testConfig = try testConfig(test, scoreThr: true)
            return head
        }
    }
}
