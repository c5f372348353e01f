import Engine
import Foundation
import NN

/// Ground truth of one training image, in the (resized, flipped, padded) network input's pixel coordinates.
public struct DetectionTarget: Sendable {
    /// Flat [x1, y1, x2, y2] · count.
    public var boxes: [Float]
    /// Contiguous 0-based class per box.
    public var labels: [Int]
    /// Crowd / ignore regions (flat boxes); anchors mostly inside them are neither positive nor negative.
    public var ignore: [Float]
    /// (height, width) of the image before padding.
    public var imgShape: (height: Int, width: Int)

    public init(boxes: [Float], labels: [Int], ignore: [Float] = [], imgShape: (height: Int, width: Int)) {
        precondition(boxes.count == 4 * labels.count, "one box per label")
        self.boxes = boxes; self.labels = labels; self.ignore = ignore; self.imgShape = imgShape
    }
}

/// Detections of one image in original-image coordinates, highest score first.
public struct ImageDetections: Sendable, Equatable {
    /// Flat [x1, y1, x2, y2] · count.
    public var boxes: [Float]
    public var scores: [Float]
    /// Contiguous 0-based class per detection.
    public var labels: [Int]
    public var count: Int { scores.count }

    public init(boxes: [Float] = [], scores: [Float] = [], labels: [Int] = []) {
        self.boxes = boxes; self.scores = scores; self.labels = labels
    }
}

/// RetinaNet test settings (mmdet test_cfg): per level the top `nmsPre` (anchor, class) scores above `scoreThr`,
/// class-wise NMS at `iouThreshold`, at most `maxPerImage` detections.
public struct RetinaTestConfig: Equatable {
    public var nmsPre = 1000
    public var scoreThr: Float = 0.05
    public var iouThreshold: Float = 0.5
    public var maxPerImage = 100
    public init(nmsPre: Int = 1000, scoreThr: Float = 0.05, iouThreshold: Float = 0.5, maxPerImage: Int = 100) {
        self.nmsPre = nmsPre; self.scoreThr = scoreThr; self.iouThreshold = iouThreshold; self.maxPerImage = maxPerImage
    }
}

/// mmdet `RetinaHead`: `stackedConvs` 3×3 conv + ReLU layers for each of the classification and regression
/// branches (shared across levels), then `retina_cls` (A·C sigmoid logits) and `retina_reg` (A·4 deltas).
///
/// Keys: cls_convs.i.conv.*, reg_convs.i.conv.*, retina_cls.*, retina_reg.*. Init: normal(0.01), bias 0, retina_cls
/// bias −log((1 − 0.01)/0.01). Loss: sigmoid focal (γ, α) over non-ignored anchors and L1 on the positive anchors'
/// deltas, both summed and divided by the number of positives (at least 1).
public final class RetinaHead: Module {
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
        let levelAnchors = sizes.enumerated().map { anchorGenerator.gridAnchors(level: $0.offset, height: $0.element.height, width: $0.element.width) }
        let a = anchorGenerator.numBaseAnchors, c = numClasses, cfg = testConfig
        return (0..<feats[0].shape[0]).map { b in
            var boxes: [Float] = [], scores: [Float] = [], labels: [Int] = []
            for (l, (h, w)) in sizes.enumerated() {
                let hw = h * w
                let cp = clsMaps[l].data + b * a * c * hw, rp = regMaps[l].data + b * a * 4 * hw
                // (score, anchor, class) above the threshold; flattened index anchor·C + class as the tie-break.
                var cand: [(Float, Int, Int)] = []
                for y in 0..<h {
                    for x in 0..<w {
                        for k in 0..<a {
                            for cl in 0..<c {
                                let logit = cp[((k * c + cl) * h + y) * w + x]
                                let s = 1 / (1 + Foundation.exp(-logit))
                                if s > cfg.scoreThr { cand.append((s, (y * w + x) * a + k, cl)) }
                            }
                        }
                    }
                }
                cand.sort { $0.0 > $1.0 || ($0.0 == $1.0 && ($0.1 * c + $0.2) < ($1.1 * c + $1.2)) }
                if cand.count > cfg.nmsPre { cand.removeLast(cand.count - cfg.nmsPre) }
                var anc: [Float] = [], del: [Float] = []
                for (_, ai, _) in cand {
                    anc += levelAnchors[l][(4 * ai)..<(4 * ai + 4)]
                    let k = ai % a, pos = ai / a, y = pos / w, x = pos % w
                    for j in 0..<4 { del.append(rp[((k * 4 + j) * h + y) * w + x]) }
                }
                boxes += coder.decode(anchors: anc, deltas: del, maxShape: imgShapes[b])
                scores += cand.map(\.0)
                labels += cand.map(\.2)
            }
            let sf = scaleFactors[b]
            for i in 0..<boxes.count { boxes[i] /= sf[i % 4] }
            var keep = batchedNMS(boxes: boxes, scores: scores, labels: labels, iouThreshold: cfg.iouThreshold)
            if keep.count > cfg.maxPerImage { keep.removeLast(keep.count - cfg.maxPerImage) }
            return ImageDetections(boxes: keep.flatMap { boxes[(4 * $0)..<(4 * $0 + 4)] }, scores: keep.map { scores[$0] },
                                   labels: keep.map { labels[$0] })
        }
    }
}
