import Engine
import Foundation
import NN

/// mmdet's `RPNHead` (one conv): `rpn_conv` 3×3 + ReLU shared over levels, then `rpn_cls` (A sigmoid objectness
/// logits) and `rpn_reg` (A·4 deltas), A = 3 anchors (scales [8], ratios 0.5, 1, 2) per location at strides 4–64.
///
/// Keys: rpn_conv.{weight,bias}, rpn_cls.{weight,bias}, rpn_reg.{weight,bias}. Init: normal(0, 0.01), bias 0.
public final class RPNHead: Module {
    public let rpn_conv: Conv2d
    public let rpn_cls: Conv2d
    public let rpn_reg: Conv2d
    public var anchorGenerator: AnchorGenerator
    public var coder = DeltaXYWHBBoxCoder()
    /// mmdet's RPN `train_cfg`: MaxIoUAssigner 0.7 / 0.3 / min_pos 0.3 with low-quality matches, RandomSampler 256 at 0.5.
    public var assigner = MaxIoUAssigner(posIoUThr: 0.7, negIoUThr: 0.3, minPosIoU: 0.3, ignoreIoFThr: -1)
    public var sampler = RandomSampler(num: 256, posFraction: 0.5)
    public var clsLossWeight: Float = 1, bboxLossWeight: Float = 1

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
    }

    public init(inChannels: Int = 256, featChannels: Int = 256,
                anchorGenerator: AnchorGenerator = AnchorGenerator(strides: [4, 8, 16, 32, 64], ratios: [0.5, 1, 2],
                                                                   octaveBaseScale: 8, scalesPerOctave: 1)) {
        self.anchorGenerator = anchorGenerator
        let a = anchorGenerator.numBaseAnchors
        rpn_conv = Conv2d(inChannels, featChannels, kernelSize: 3, padding: 1)
        rpn_cls = Conv2d(featChannels, a, kernelSize: 1)
        rpn_reg = Conv2d(featChannels, a * 4, kernelSize: 1)
        super.init()
        for c in [rpn_conv, rpn_cls, rpn_reg] { normalInit(c) }
    }

    /// Per level: objectness logits [N, A, H, W] and deltas [N, A·4, H, W].
    public func callAsFunction(_ feats: [Tensor]) -> (cls: [Tensor], reg: [Tensor]) {
        var cls: [Tensor] = [], reg: [Tensor] = []
        for f in feats {
            let x = rpn_conv(f).relu()
            cls.append(rpn_cls(x))
            reg.append(rpn_reg(x))
        }
        return (cls, reg)
    }

    /// loss_rpn_cls (sigmoid cross-entropy) and loss_rpn_bbox (L1 on the positives' deltas) over the sampled
    /// anchors of every image, both divided by the number sampled (mmdet's avg_factor = positives + negatives).
    /// The sampler draws from the engine RNG (which the trainer seeds per iteration).
    public func loss(_ feats: [Tensor], targets: [DetectionTarget]) -> [(String, Tensor)] {
        let (clsMaps, regMaps) = self(feats)
        let n = feats[0].shape[0]
        let anchors = anchorGenerator.anchors(featureSizes: clsMaps.map { ($0.shape[2], $0.shape[3]) })
        let na = anchors.count / 4
        var label = [Float](repeating: 0, count: n * na), weight = [Float](repeating: 0, count: n * na)
        var posRows: [Int] = [], regTarget: [Float] = [], sampled = 0
        for (b, t) in targets.enumerated() {
            let assigned = assigner.assign(anchors: anchors, gts: t.boxes)
            let (pos, neg) = sampler.sample(assigned, rng: &EngineRandom.generator)
            sampled += pos.count + neg.count
            for a in neg { weight[b * na + a] = 1 }
            var posAnchors: [Float] = [], posGts: [Float] = []
            for a in pos {
                let g = assigned[a] - 1
                label[b * na + a] = 1; weight[b * na + a] = 1
                posRows.append(b * na + a)
                posAnchors += anchors[(4 * a)..<(4 * a + 4)]
                posGts += t.boxes[(4 * g)..<(4 * g + 4)]
            }
            regTarget += coder.encode(anchors: posAnchors, gts: posGts)
        }
        let avg = Float(max(sampled, 1))
        let cls = concat(clsMaps.map { $0.permute([0, 2, 3, 1]).reshape([n, -1]) }, axis: 1)
        let bce = binaryCrossEntropyWithLogits(cls, Tensor(label, shape: [n, na]), reduction: .none)
        let lossCls = (bce * Tensor(weight, shape: [n, na])).sum() * (clsLossWeight / avg)
        let reg = concat(regMaps.map { $0.permute([0, 2, 3, 1]).reshape([n, -1, 4]) }, axis: 1).reshape([n * na, 4])
        let lossBbox = posRows.isEmpty ? reg.sum() * 0
            : l1Loss(reg.indexSelect(axis: 0, posRows), Tensor(regTarget, shape: [posRows.count, 4]), reduction: .sum) * (bboxLossWeight / avg)
        return [("loss_rpn_cls", lossCls), ("loss_rpn_bbox", lossBbox)]
    }

    /// Proposals per image as mmdet's `RPNHead.predict_by_feat` (rescale off: input-pixel coordinates), boxes flat
    /// [x1, y1, x2, y2] with their objectness, best first.
    public func proposals(_ feats: [Tensor], imgShapes: [(height: Int, width: Int)], config cfg: ProposalConfig)
        -> [(boxes: [Float], scores: [Float])] {
        let (clsMaps, regMaps) = withNoGrad { self(feats) }
        let a = anchorGenerator.numBaseAnchors
        // [N, H·W·A, 1] and [N, H·W·A, 4] per level: row r is anchor r of the level's grid.
        let cls = clsMaps.map { $0.permute([0, 2, 3, 1]).reshape([$0.shape[0], -1, 1]) }
        let reg = regMaps.map { $0.permute([0, 2, 3, 1]).reshape([$0.shape[0], -1, 4]) }
        return (0..<feats[0].shape[0]).map { b in
            var boxes: [Float] = [], scores: [Float] = [], levels: [Int] = []
            for l in 0..<clsMaps.count {
                let (h, w) = (clsMaps[l].shape[2], clsMaps[l].shape[3]), rows = h * w * a
                let cp = cls[l].data + b * rows, rp = reg[l].data + b * rows * 4
                var order = (0..<rows).map { ($0, 1 / (1 + Foundation.exp(-cp[$0]))) }
                if cfg.nmsPre > 0 && cfg.nmsPre < rows {
                    order.sort { $0.1 > $1.1 || ($0.1 == $1.1 && $0.0 < $1.0) }
                    order.removeLast(rows - cfg.nmsPre)
                }
                let levelAnchors = anchorGenerator.gridAnchors(level: l, height: h, width: w)
                var anc: [Float] = [], del: [Float] = []
                for (r, _) in order {
                    anc += levelAnchors[(4 * r)..<(4 * r + 4)]
                    for j in 0..<4 { del.append(rp[4 * r + j]) }
                }
                boxes += coder.decode(anchors: anc, deltas: del, maxShape: imgShapes[b])
                scores += order.map(\.1)
                levels += [Int](repeating: l, count: order.count)
            }
            let keep = postProcess(boxes: boxes, scores: scores, labels: levels, minBBoxSize: cfg.minBBoxSize,
                                   iouThreshold: cfg.iouThreshold, maxPerImage: cfg.maxPerImage)
            return (keep.flatMap { boxes[(4 * $0)..<(4 * $0 + 4)] }, keep.map { scores[$0] })
        }
    }
}
