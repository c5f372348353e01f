import Config
import Engine
import Foundation
import NN

/// RetinaNet test settings (mmdet test_cfg): per level the top `nmsPre` (anchor, class) scores above `scoreThr`;
/// boxes (in original-image pixels) whose width or height is ≤ `minBBoxSize` dropped when it is ≥ 0 (mmdet 3.x
/// `_bbox_post_process`); class-wise NMS at `iouThreshold`; at most `maxPerImage` detections.
public struct RetinaTestConfig: Equatable {
    public var nmsPre = 1000
    public var scoreThr: Float = 0.05
    public var iouThreshold: Float = 0.5
    public var maxPerImage = 100
    /// mmdet's `min_bbox_size`; −1 (mmdet's default when the key is absent) keeps every box.
    public var minBBoxSize: Float = -1
    public init(nmsPre: Int = 1000, scoreThr: Float = 0.05, iouThreshold: Float = 0.5, maxPerImage: Int = 100,
                minBBoxSize: Float = -1) {
        self.nmsPre = nmsPre; self.scoreThr = scoreThr; self.iouThreshold = iouThreshold; self.maxPerImage = maxPerImage
        self.minBBoxSize = minBBoxSize
    }
}

/// mmdet `RetinaHead`: `stackedConvs` 3×3 conv + ReLU layers for each of the classification and regression
/// branches (shared across levels), then `retina_cls` (A·C sigmoid logits) and `retina_reg` (A·4 deltas).
///
/// Keys: cls_convs.i.conv.*, reg_convs.i.conv.*, retina_cls.*, retina_reg.*. Init: normal(0.01), bias 0, retina_cls
/// bias −log((1 − 0.01)/0.01). Loss: sigmoid focal (γ, α) over non-ignored anchors and L1 on the positive anchors'
/// deltas, both summed and divided by the number of positives (at least 1).
public final class RetinaHead: Module, DenseHead {
    public let cls_convs: [ConvModule]
    public let reg_convs: [ConvModule]
    public let retina_cls: Conv2d
    public let retina_reg: Conv2d
    public let numClasses: Int
    public var anchorGenerator: AnchorGenerator
    public var coder = DeltaXYWHBBoxCoder()
    public var assigner = MaxIoUAssigner()
    public var focalGamma: Float = 2, focalAlpha: Float = 0.25, clsLossWeight: Float = 1, bboxLossWeight: Float = 1
    public var testConfig = RetinaTestConfig()

    /// `groupNormGroups`: mmdet's `norm_cfg=dict(type='GN', num_groups=...)` in the stacked convs (nil: no norm).
    public init(numClasses: Int, inChannels: Int = 256, featChannels: Int = 256, stackedConvs: Int = 4,
                anchorGenerator: AnchorGenerator = AnchorGenerator(), groupNormGroups: Int? = nil) {
        self.numClasses = numClasses
        self.anchorGenerator = anchorGenerator
        let a = anchorGenerator.numBaseAnchors
        func stack() -> [ConvModule] {
            (0..<stackedConvs).map { ConvModule($0 == 0 ? inChannels : featChannels, featChannels, kernelSize: 3, padding: 1,
                                                norm: groupNormGroups.map { .groupNorm(groups: $0) } ?? .none, relu: true) }
        }
        cls_convs = stack()
        reg_convs = stack()
        retina_cls = Conv2d(featChannels, a * numClasses, kernelSize: 3, padding: 1)
        retina_reg = Conv2d(featChannels, a * 4, kernelSize: 3, padding: 1)
        super.init()
        for m in cls_convs + reg_convs { normalInit(m.conv) }
        normalInit(retina_cls, bias: -Foundation.log((1 - 0.01) / 0.01))
        normalInit(retina_reg)
    }

    /// Per level: classification logits [N, A·C, H, W] and box deltas [N, A·4, H, W].
    public func callAsFunction(_ feats: [Tensor]) -> (cls: [Tensor], reg: [Tensor]) {
        var cls: [Tensor] = [], reg: [Tensor] = []
        for f in feats {
            cls.append(retina_cls(cls_convs.reduce(f) { $1($0) }))
            reg.append(retina_reg(reg_convs.reduce(f) { $1($0) }))
        }
        return (cls, reg)
    }

    func featureSizes(_ maps: [Tensor]) -> [(height: Int, width: Int)] { maps.map { ($0.shape[2], $0.shape[3]) } }

    /// [N, A·K, H, W] per level → [N, Σ H·W·A, K] in anchor order.
    func flattenLevels(_ maps: [Tensor], _ k: Int) -> Tensor {
        let n = maps[0].shape[0]
        return concat(maps.map { $0.permute([0, 2, 3, 1]).reshape([n, -1, k]) }, axis: 1)
    }

    /// loss_cls and loss_bbox for a batch.
    public func loss(_ feats: [Tensor], targets: [DetectionTarget]) -> [(String, Tensor)] {
        let (clsMaps, regMaps) = self(feats)
        let n = feats[0].shape[0]
        precondition(targets.count == n, "\(targets.count) targets for a batch of \(n)")
        let anchors = anchorGenerator.anchors(featureSizes: featureSizes(clsMaps))
        let na = anchors.count / 4, c = numClasses
        var clsTarget = [Float](repeating: 0, count: n * na * c)
        var weight = [Float](repeating: 0, count: n * na)
        var posRows: [Int] = [], regTarget: [Float] = []
        for (b, t) in targets.enumerated() {
            let assigned = assigner.assign(anchors: anchors, gts: t.boxes, ignore: t.ignore)
            var posAnchors: [Float] = [], posGts: [Float] = []
            for a in 0..<na where assigned[a] >= 0 {
                weight[b * na + a] = 1
                guard assigned[a] > 0 else { continue }
                let g = assigned[a] - 1
                clsTarget[(b * na + a) * c + t.labels[g]] = 1
                posRows.append(b * na + a)
                posAnchors += anchors[(4 * a)..<(4 * a + 4)]
                posGts += t.boxes[(4 * g)..<(4 * g + 4)]
            }
            regTarget += coder.encode(anchors: posAnchors, gts: posGts)
        }
        let avg = Float(max(posRows.count, 1))
        let cls = flattenLevels(clsMaps, c)
        let focal = sigmoidFocalLoss(cls, Tensor(clsTarget, shape: [n, na, c]), gamma: focalGamma, alpha: focalAlpha, reduction: .none)
        let lossCls = (focal * Tensor(weight, shape: [n, na, 1])).sum() * (clsLossWeight / avg)
        let reg = flattenLevels(regMaps, 4).reshape([n * na, 4])
        let lossBbox: Tensor
        if posRows.isEmpty {
            lossBbox = reg.sum() * 0
        } else {
            lossBbox = l1Loss(reg.indexSelect(axis: 0, posRows), Tensor(regTarget, shape: [posRows.count, 4]), reduction: .sum)
                * (bboxLossWeight / avg)
        }
        return [("loss_cls", lossCls), ("loss_bbox", lossBbox)]
    }

    /// Inference: decoded, class-wise NMS-ed detections per image, rescaled to the original images.
    public func predict(_ feats: [Tensor], imgShapes: [(height: Int, width: Int)], scaleFactors: [[Float]]) -> [ImageDetections] {
        let (clsMaps, regMaps) = withNoGrad { self(feats) }
        let sizes = featureSizes(clsMaps)
        let c = numClasses, cfg = testConfig
        // Per level [N, H·W·A, C] and [N, H·W·A, 4]: row r is anchor r of the level's grid, as the anchors are ordered.
        let cls = clsMaps.map { flattenLevels([$0], c) }, reg = regMaps.map { flattenLevels([$0], 4) }
        return (0..<feats[0].shape[0]).map { b in
            var boxes: [Float] = [], scores: [Float] = [], labels: [Int] = []
            for (l, (h, w)) in sizes.enumerated() {
                let rows = cls[l].shape[1]
                let cp = cls[l].data + b * rows * c, rp = reg[l].data + b * rows * 4
                // (score, flattened index row·C + class) above the threshold; the index is the tie-break.
                var cand: [(Float, Int)] = []
                for i in 0..<(rows * c) {
                    let s = 1 / (1 + Foundation.exp(-cp[i]))
                    if s > cfg.scoreThr { cand.append((s, i)) }
                }
                cand.sort { $0.0 > $1.0 || ($0.0 == $1.0 && $0.1 < $1.1) }
                if cand.count > cfg.nmsPre { cand.removeLast(cand.count - cfg.nmsPre) }
                let levelAnchors = anchorGenerator.gridAnchors(level: l, height: h, width: w)
                var anc: [Float] = [], del: [Float] = []
                for (_, i) in cand {
                    let r = i / c
                    anc += levelAnchors[(4 * r)..<(4 * r + 4)]
                    for j in 0..<4 { del.append(rp[4 * r + j]) }
                }
                boxes += coder.decode(anchors: anc, deltas: del, maxShape: imgShapes[b])
                scores += cand.map(\.0)
                labels += cand.map { $0.1 % c }
            }
            let sf = scaleFactors[b]
            for i in 0..<boxes.count { boxes[i] /= sf[i % 4] }
            let keep = postProcess(boxes: boxes, scores: scores, labels: labels, minBBoxSize: cfg.minBBoxSize,
                                   iouThreshold: cfg.iouThreshold, maxPerImage: cfg.maxPerImage)
            return ImageDetections(boxes: keep.flatMap { boxes[(4 * $0)..<(4 * $0 + 4)] }, scores: keep.map { scores[$0] },
                                   labels: keep.map { labels[$0] })
        }
    }
}

extension RetinaHead {
    /// The detector's `train_cfg` as RetinaNet reads it. mmdet's `allowed_border`, `pos_weight` and `debug` are
    /// accepted at the one value implemented (every anchor is used, positives weigh 1, no debug output).
    static let trainCfgFields: [ConfigSchema.Field] = [
        .init("assigner", .object([
            .init("type", .oneOf(["MaxIoUAssigner"]), default: "MaxIoUAssigner"),
            .init("pos_iou_thr", .fraction, default: 0.5), .init("neg_iou_thr", .fraction, default: 0.4),
            .init("min_pos_iou", .fraction, default: 0), .init("ignore_iof_thr", .numberRange(-1...1), default: 0.5),
            .init("gt_max_assign_all", .bool, default: true),
        ])),
        .init("allowed_border", .exactly(-1), default: -1), .init("pos_weight", .exactly(-1), default: -1),
        .init("debug", .exactly(false), default: false),
    ]
    /// The detector's `test_cfg` as RetinaNet reads it (mmdet 3.x defaults).
    static let testCfgFields: [ConfigSchema.Field] = [
        .init("nms_pre", .positiveInt, default: 1000), .init("min_bbox_size", .numberRange(-1...1e9), default: -1),
        .init("score_thr", .fraction, default: 0.05),
        .init("nms", .object([.init("type", .oneOf(["nms"]), default: "nms"), .init("iou_threshold", .fraction, default: 0.5)])),
        .init("max_per_img", .positiveInt, default: 100),
    ]

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
            .init("bbox_coder", .object([
                .init("type", .oneOf(["DeltaXYWHBBoxCoder"]), default: "DeltaXYWHBBoxCoder"),
                .init("target_means", .array(.number, count: 4), default: [0, 0, 0, 0]),
                .init("target_stds", .array(.positiveNumber, count: 4), default: [1, 1, 1, 1]),
            ])),
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
            if c.has("in_channels"), try c.int("in_channels") != inChannels {
                throw c.fail("in_channels", "\(try c.int("in_channels")) but the neck gives \(inChannels)")
            }
            let featChannels = try c.int("feat_channels")
            var groups: Int?
            if c.has("norm_cfg") {
                groups = try c.int("norm_cfg.num_groups")
                if featChannels % groups! != 0 { throw c.fail("norm_cfg.num_groups", "must divide feat_channels (\(featChannels))") }
            }
            let ag = c.section("anchor_generator")
            let anchors = AnchorGenerator(strides: try ag.ints("strides"), ratios: try ag.doubles("ratios").map(Float.init),
                                          octaveBaseScale: Float(try ag.double("octave_base_scale")),
                                          scalesPerOctave: try ag.int("scales_per_octave"),
                                          centerOffset: Float(try ag.double("center_offset")))
            let head = RetinaHead(numClasses: try c.int("num_classes"), inChannels: inChannels, featChannels: featChannels,
                                  stackedConvs: try c.int("stacked_convs"), anchorGenerator: anchors, groupNormGroups: groups)
            head.coder = DeltaXYWHBBoxCoder(means: try c.doubles("bbox_coder.target_means").map(Float.init),
                                            stds: try c.doubles("bbox_coder.target_stds").map(Float.init))
            head.focalGamma = Float(try c.double("loss_cls.gamma"))
            head.focalAlpha = Float(try c.double("loss_cls.alpha"))
            head.clsLossWeight = Float(try c.double("loss_cls.loss_weight"))
            head.bboxLossWeight = Float(try c.double("loss_bbox.loss_weight"))
            let train = try settings(context.trainCfg, trainCfgFields), test = try settings(context.testCfg, testCfgFields)
            let a = train.section("assigner")
            head.assigner = MaxIoUAssigner(posIoUThr: Float(try a.double("pos_iou_thr")), negIoUThr: Float(try a.double("neg_iou_thr")),
                                           minPosIoU: Float(try a.double("min_pos_iou")),
                                           gtMaxAssignAll: try a.bool("gt_max_assign_all"),
                                           ignoreIoFThr: Float(try a.double("ignore_iof_thr")))
            head.testConfig = RetinaTestConfig(nmsPre: try test.int("nms_pre"), scoreThr: Float(try test.double("score_thr")),
                                               iouThreshold: Float(try test.double("nms.iou_threshold")),
                                               maxPerImage: try test.int("max_per_img"),
                                               minBBoxSize: Float(try test.double("min_bbox_size")))
            return head
        }
    }

    /// A `train_cfg` / `test_cfg` section validated against the head's fields and filled with their defaults (an
    /// empty section when the detector has none).
    static func settings(_ section: Config?, _ fields: [ConfigSchema.Field]) throws -> Config {
        let schema = ConfigSchema.object(fields)
        guard let section else { return try Config(json: .object([])).filled(schema) }
        try section.validate(schema)
        return section.filled(schema)
    }
}
