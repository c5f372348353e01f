import Config
import Engine
import Foundation
import NN

/// Test settings of an anchor head (mmdet test_cfg): per level the top `nmsPre` (anchor, class) scores above
/// `scoreThr`; boxes whose width or height is ≤ `minBBoxSize` dropped when it is ≥ 0 (mmdet 3.x
/// `_bbox_post_process`); NMS at `iouThreshold` within each class (or level, for proposals); at most `maxPerImage`.
public struct DenseTestConfig: Equatable {
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

/// RetinaNet's test settings are the anchor head's.
public typealias RetinaTestConfig = DenseTestConfig

/// mmdet's `AnchorHead` with `BaseDenseHead.predict_by_feat`: what every anchor-based dense head shares, once.
/// A subclass (RetinaHead, RPNHead) adds its layers (`forward`) and the few hooks that differ: its classification
/// loss, its loss names and how it picks each level's candidates.
///
/// Training: anchors of every level, `assigner` per image, `sampler` (nil: every assigned anchor, mmdet's
/// PseudoSampler), sigmoid classification targets over `numClasses` and the positives' encoded deltas; both losses
/// summed over the kept anchors and divided by the positives (plus the negatives when sampling, as mmdet's
/// `avg_factor`), at least 1.
///
/// Inference: per level the candidates `selectCandidates` keeps, decoded and clipped to the input image, optionally
/// rescaled to the original image, then `postProcess` (NMS by class, or by level with `nmsByLevel`).
open class AnchorHead: Module, DenseHead {
    /// Object classes scored with one sigmoid each (1 for a region proposal network).
    public let numClasses: Int
    public var anchorGenerator: AnchorGenerator
    public var coder = DeltaXYWHBBoxCoder()
    public var assigner: MaxIoUAssigner
    /// mmdet's RandomSampler, or nil for its PseudoSampler (every positive and negative anchor counts).
    public var sampler: RandomSampler?
    public var clsLossWeight: Float = 1, bboxLossWeight: Float = 1
    /// mmdet's `loss_bbox`: L1, or smooth L1 with this β.
    public var smoothL1Beta: Float? = nil
    /// mmdet's `train_cfg.allowed_border`: when set (≥ 0), only anchors inside the image grown by this many pixels
    /// take part in training; nil (mmdet's −1) uses every anchor.
    public var allowedBorder: Float? = nil
    public var testConfig: DenseTestConfig
    /// NMS keeps levels apart instead of classes (mmdet's RPN batches its NMS by level).
    public let nmsByLevel: Bool

    public init(numClasses: Int, anchorGenerator: AnchorGenerator, assigner: MaxIoUAssigner, sampler: RandomSampler?,
                testConfig: DenseTestConfig, nmsByLevel: Bool = false) {
        self.numClasses = numClasses; self.anchorGenerator = anchorGenerator; self.assigner = assigner
        self.sampler = sampler; self.testConfig = testConfig; self.nmsByLevel = nmsByLevel
    }

    /// The subclass's layers: per level, logits [N, A·C, H, W] and deltas [N, A·4, H, W].
    open func forward(_ feats: [Tensor]) -> (cls: [Tensor], reg: [Tensor]) {
        preconditionFailure("\(type(of: self)) must override AnchorHead.forward")
    }

    public func callAsFunction(_ feats: [Tensor]) -> (cls: [Tensor], reg: [Tensor]) { forward(feats) }

    /// Whether `flatOutputs(chained:)` runs on chained bf16 activations (`ConvChain`); subclasses that do say so.
    open var predictsChained: Bool { false }

    /// The outputs on chained activations, flattened per level as `predictByMaps` reads them.
    open func flatOutputs(chained feats: [ChainTensor]) -> FlatLevels {
        let (cls, reg) = forward(feats.map { $0.tensor() })
        return flat(cls: cls, reg: reg)
    }

    /// Per level [N, A·C, H, W] and [N, A·4, H, W] → [N, H·W·A, C] and [N, H·W·A, 4] with the levels' sizes.
    func flat(cls: [Tensor], reg: [Tensor]) -> FlatLevels {
        FlatLevels(cls: cls.map { flattenLevels([$0], numClasses) }, reg: reg.map { flattenLevels([$0], 4) },
                   sizes: cls.map { ($0.shape[2], $0.shape[3]) })
    }

    /// Unreduced classification loss [N, anchors, C] of logits against 0/1 targets of the same shape.
    open func classificationLoss(_ logits: Tensor, _ targets: Tensor) -> Tensor {
        preconditionFailure("\(type(of: self)) must override AnchorHead.classificationLoss")
    }

    /// The names of the classification and box loss terms.
    open var lossNames: (cls: String, bbox: String) { ("loss_cls", "loss_bbox") }

    /// One level's candidates for one image: (score, flattened index row·C + class), in the order they are decoded.
    /// mmdet's `filter_scores_and_topk`: sigmoid scores above `scoreThr`, best first (lower index on ties), at
    /// most `nmsPre`.
    open func selectCandidates(_ logits: UnsafePointer<Float>, rows: Int, config cfg: DenseTestConfig) -> [(Float, Int)] {
        var cand: [(Float, Int)] = []
        // The sigmoid is monotonic: logits below the threshold's logit (less a margin far above float rounding) cannot
        // pass, and are skipped without an exp (RetinaNet at 800×1333 has 12 million).
        let t = Double(cfg.scoreThr), bound = Float(Foundation.log(t / (1 - t)) - 1e-3 * max(1, abs(Foundation.log(t / (1 - t)))))
        for i in 0..<(rows * numClasses) where !(logits[i] <= bound) {
            let s = 1 / (1 + Foundation.exp(-logits[i]))
            if s > cfg.scoreThr { cand.append((s, i)) }
        }
        cand.sort { $0.0 > $1.0 || ($0.0 == $1.0 && $0.1 < $1.1) }
        if cand.count > cfg.nmsPre { cand.removeLast(cand.count - cfg.nmsPre) }
        return cand
    }

    /// A dense head's outputs per level: logits [N, H·W·A, C] and deltas [N, H·W·A, 4], row r anchor r of the level's
    /// grid (positions, then anchors), and the level's (H, W).
    public struct FlatLevels {
        public var cls: [Tensor], reg: [Tensor]
        public var sizes: [(Int, Int)]
    }

    /// [N, A·K, H, W] per level → [N, Σ H·W·A, K] in anchor order.
    func flattenLevels(_ maps: [Tensor], _ k: Int) -> Tensor {
        let n = maps[0].shape[0]
        let flat = maps.map { $0.permute([0, 2, 3, 1]).reshape([n, -1, k]) }
        return flat.count == 1 ? flat[0] : concat(flat, axis: 1)
    }

    /// The classification and box losses for a batch (targets in input pixels, labels 0..<numClasses).
    public func loss(_ feats: [Tensor], targets: [DetectionTarget]) -> [(String, Tensor)] {
        let (clsMaps, regMaps) = self(feats)
        let n = feats[0].shape[0]
        precondition(targets.count == n, "\(targets.count) targets for a batch of \(n)")
        let anchors = anchorGenerator.anchors(featureSizes: clsMaps.map { ($0.shape[2], $0.shape[3]) })
        let na = anchors.count / 4, c = numClasses
        var clsTarget = [Float](repeating: 0, count: n * na * c)
        var weight = [Float](repeating: 0, count: n * na)
        var posRows: [Int] = [], regTarget: [Float] = [], kept = 0
        for (b, t) in targets.enumerated() {
            let assigned = assign(anchors, target: t)
            let (pos, neg) = sampler?.sample(assigned, rng: &EngineRandom.generator)
                ?? (assigned.indices.filter { assigned[$0] > 0 }, assigned.indices.filter { assigned[$0] == 0 })
            kept += sampler == nil ? pos.count : pos.count + neg.count
            for a in neg { weight[b * na + a] = 1 }
            var posAnchors: [Float] = [], posGts: [Float] = []
            for a in pos {
                let g = assigned[a] - 1
                weight[b * na + a] = 1
                clsTarget[(b * na + a) * c + t.labels[g]] = 1
                posRows.append(b * na + a)
                posAnchors += anchors[(4 * a)..<(4 * a + 4)]
                posGts += t.boxes[(4 * g)..<(4 * g + 4)]
            }
            regTarget += coder.encode(anchors: posAnchors, gts: posGts)
        }
        let avg = Float(max(kept, 1))
        let unreduced = classificationLoss(flattenLevels(clsMaps, c), Tensor(clsTarget, shape: [n, na, c]))
        let lossCls = (unreduced * Tensor(weight, shape: [n, na, 1])).sum() * (clsLossWeight / avg)
        let reg = flattenLevels(regMaps, 4).reshape([n * na, 4])
        let lossBbox: Tensor
        if posRows.isEmpty {
            lossBbox = reg.sum() * 0
        } else {
            let predicted = reg.indexSelect(axis: 0, posRows), target = Tensor(regTarget, shape: [posRows.count, 4])
            lossBbox = (smoothL1Beta.map { smoothL1Loss(predicted, target, beta: $0, reduction: .sum) } ?? l1Loss(predicted, target, reduction: .sum))
                * (bboxLossWeight / avg)
        }
        return [(lossNames.cls, lossCls), (lossNames.bbox, lossBbox)]
    }

    /// The assigner's result for every anchor; with `allowedBorder`, anchors outside the image (grown by it) are not
    /// assigned at all (−1), as mmdet's `anchor_inside_flags`.
    public func assign(_ anchors: [Float], target t: DetectionTarget) -> [Int] {
        guard let b = allowedBorder else { return assigner.assign(anchors: anchors, gts: t.boxes, ignore: t.ignore) }
        let w = Float(t.imgShape.width), h = Float(t.imgShape.height)
        let inside = (0..<(anchors.count / 4)).filter {
            anchors[4 * $0] >= -b && anchors[4 * $0 + 1] >= -b && anchors[4 * $0 + 2] < w + b && anchors[4 * $0 + 3] < h + b
        }
        let sub = assigner.assign(anchors: inside.flatMap { anchors[(4 * $0)..<(4 * $0 + 4)] }, gts: t.boxes, ignore: t.ignore)
        var assigned = [Int](repeating: -1, count: anchors.count / 4)
        for (j, a) in inside.enumerated() { assigned[a] = sub[j] }
        return assigned
    }

    /// Detections per image with `testConfig`, rescaled to the original images by `scaleFactors` ([w, h, w, h]).
    public func predict(_ feats: [Tensor], imgShapes: [(height: Int, width: Int)], scaleFactors: [[Float]]) -> [ImageDetections] {
        predictByFeat(feats, imgShapes: imgShapes, scaleFactors: scaleFactors, config: testConfig)
    }

    /// mmdet's `predict_by_feat`: per image, each level's candidates decoded from its anchors and clipped to the
    /// image, divided by the image's scale factor when `scaleFactors` is given, then NMS-ed; labels are classes,
    /// or levels with `nmsByLevel`.
    public func predictByFeat(_ feats: [Tensor], imgShapes: [(height: Int, width: Int)], scaleFactors: [[Float]]?,
                              config cfg: DenseTestConfig) -> [ImageDetections] {
        let (clsMaps, regMaps) = withNoGrad { self(feats) }
        return predictByMaps(flat(cls: clsMaps, reg: regMaps), imgShapes: imgShapes, scaleFactors: scaleFactors, config: cfg)
    }

    public func predict(chained feats: [ChainTensor], imgShapes: [(height: Int, width: Int)], scaleFactors: [[Float]]) -> [ImageDetections] {
        predictByMaps(flatOutputs(chained: feats), imgShapes: imgShapes, scaleFactors: scaleFactors, config: testConfig)
    }

    /// `predictByFeat` from the head's flattened outputs.
    func predictByMaps(_ levels: FlatLevels, imgShapes: [(height: Int, width: Int)], scaleFactors: [[Float]]?,
                       config cfg: DenseTestConfig) -> [ImageDetections] {
        let c = numClasses, cls = levels.cls, reg = levels.reg
        return (0..<cls[0].shape[0]).map { b in
            var boxes: [Float] = [], scores: [Float] = [], labels: [Int] = []
            for l in 0..<cls.count {
                let (h, w) = levels.sizes[l], rows = cls[l].shape[1]
                let rp = reg[l].data + b * rows * 4
                let cand = selectCandidates(cls[l].data + b * rows * c, rows: rows, config: cfg)
                let levelAnchors = anchorGenerator.gridAnchors(level: l, height: h, width: w)
                var anc: [Float] = [], del: [Float] = []
                for (_, i) in cand {
                    let r = i / c
                    anc += levelAnchors[(4 * r)..<(4 * r + 4)]
                    for j in 0..<4 { del.append(rp[4 * r + j]) }
                }
                boxes += coder.decode(anchors: anc, deltas: del, maxShape: imgShapes[b])
                scores += cand.map(\.0)
                labels += nmsByLevel ? [Int](repeating: l, count: cand.count) : cand.map { $0.1 % c }
            }
            if let sf = scaleFactors?[b] { for i in 0..<boxes.count { boxes[i] /= sf[i % 4] } }
            let keep = postProcess(boxes: boxes, scores: scores, labels: labels, minBBoxSize: cfg.minBBoxSize,
                                   iouThreshold: cfg.iouThreshold, maxPerImage: cfg.maxPerImage)
            return ImageDetections(boxes: keep.flatMap { boxes[(4 * $0)..<(4 * $0 + 4)] }, scores: keep.map { scores[$0] },
                                   labels: keep.map { labels[$0] })
        }
    }
}

extension AnchorHead {
    /// The dense heads' shared `test_cfg` keys with mmdet's defaults for `nms_pre` and the NMS IoU.
    static func testFields(nmsPre: Int, iou: Double, scoreThr: Bool) -> [ConfigSchema.Field] {
        [.init("nms_pre", .positiveInt, default: .int(nmsPre)), .init("min_bbox_size", .numberRange(-1...1e9), default: scoreThr ? -1 : 0),
         .init("nms", .object([.init("type", .oneOf(["nms"]), default: "nms"), .init("iou_threshold", .fraction, default: .double(iou))])),
         .init("max_per_img", .positiveInt, default: scoreThr ? 100 : 1000)]
        + (scoreThr ? [.init("score_thr", .fraction, default: 0.05)] : [])
    }

    /// `allowed_border` of a validated `train_cfg` section: nil for mmdet's −1 (every anchor).
    static func allowedBorder(_ train: Config) throws -> Float? {
        let border = try train.int("allowed_border")
        return border >= 0 ? Float(border) : nil
    }

    /// A validated `test_cfg` section as settings.
    static func testConfig(_ t: Config, scoreThr: Bool) throws -> DenseTestConfig {
        DenseTestConfig(nmsPre: try t.int("nms_pre"), scoreThr: scoreThr ? Float(try t.double("score_thr")) : 0,
                        iouThreshold: Float(try t.double("nms.iou_threshold")), maxPerImage: try t.int("max_per_img"),
                        minBBoxSize: Float(try t.double("min_bbox_size")))
    }
}
