import Engine
import Foundation
import NN

/// mmdet's `StandardRoIHead` (boxes): RoIs cropped from the neck's levels by a `SingleRoIExtractor` and classified
/// and refined by a `Shared2FCBBoxHead`. In training the ground truth joins the proposals, a MaxIoUAssigner
/// (0.5 / 0.5 / 0.5, no low-quality matches) labels them and a RandomSampler keeps 512 with at most 25 % positives.
///
/// Keys: bbox_head.* (the extractor has no parameters).
public final class StandardRoIHead: Module {
    public let bbox_head: Shared2FCBBoxHead
    public var extractor = SingleRoIExtractor()
    public var assigner = MaxIoUAssigner(posIoUThr: 0.5, negIoUThr: 0.5, minPosIoU: 0.5, matchLowQuality: false, ignoreIoFThr: -1)
    public var sampler = RandomSampler(num: 512, posFraction: 0.25)
    public var testConfig = Shared2FCBBoxHead.TestConfig()

    public init(bboxHead: Shared2FCBBoxHead) { bbox_head = bboxHead }

    /// The RoIs of one training image: the ground truth first, then the proposals, assigned and sampled;
    /// positives first. Returns the sampled boxes (flat), their labels (`numClasses` for background) and the
    /// positives' encoded targets.
    public func sampleRoIs(proposals: [Float], target t: DetectionTarget, rng: inout SplitMix64)
        -> (boxes: [Float], labels: [Int], targets: [Float]) {
        let candidates = t.boxes + proposals
        var assigned = assigner.assign(anchors: candidates, gts: t.boxes)
        for g in 0..<t.labels.count { assigned[g] = g + 1 }   // each ground-truth box is its own positive
        let (pos, neg) = sampler.sample(assigned, rng: &rng)
        var boxes: [Float] = [], labels: [Int] = [], posBoxes: [Float] = [], gtBoxes: [Float] = []
        for i in pos {
            let g = assigned[i] - 1
            boxes += candidates[(4 * i)..<(4 * i + 4)]
            labels.append(t.labels[g])
            posBoxes += candidates[(4 * i)..<(4 * i + 4)]
            gtBoxes += t.boxes[(4 * g)..<(4 * g + 4)]
        }
        for i in neg {
            boxes += candidates[(4 * i)..<(4 * i + 4)]
            labels.append(bbox_head.numClasses)
        }
        return (boxes, labels, bbox_head.coder.encode(anchors: posBoxes, gts: gtBoxes))
    }

    /// RoIs as mmdet's `bbox2roi`: [batch index, x1, y1, x2, y2] per box, images in order.
    public static func rois(_ perImage: [[Float]]) -> [Float] {
        var out: [Float] = []
        for (b, boxes) in perImage.enumerated() {
            for i in 0..<(boxes.count / 4) { out += [Float(b)] + boxes[(4 * i)..<(4 * i + 4)] }
        }
        return out
    }

    /// loss_cls and loss_bbox of a batch: `feats` are the neck's levels, `proposals` the RPN's per image.
    public func loss(_ feats: [Tensor], proposals: [[Float]], targets: [DetectionTarget]) -> [(String, Tensor)] {
        var perImage: [[Float]] = [], labels: [Int] = [], deltas: [Float] = []
        for (p, t) in zip(proposals, targets) {
            let s = sampleRoIs(proposals: p, target: t, rng: &EngineRandom.generator)
            perImage.append(s.boxes); labels += s.labels; deltas += s.targets
        }
        let (cls, reg) = bbox_head(extractor(feats, rois: Self.rois(perImage)))
        return bbox_head.loss(cls: cls, reg: reg, labels: labels, targets: deltas)
    }

    /// Detections per image (original-image pixels) from the proposals.
    public func predict(_ feats: [Tensor], proposals: [[Float]], imgShapes: [(height: Int, width: Int)],
                        scaleFactors: [[Float]]) -> [ImageDetections] {
        withNoGrad {
            let rois = Self.rois(proposals)
            guard !rois.isEmpty else { return proposals.map { _ in ImageDetections() } }
            let (cls, reg) = bbox_head(extractor(feats, rois: rois))
            var start = 0
            return proposals.enumerated().map { b, p in
                let k = p.count / 4
                defer { start += k }
                guard k > 0 else { return ImageDetections() }
                return bbox_head.predict(rois: p, cls: cls.slice(axis: 0, start: start, end: start + k),
                                         reg: reg.slice(axis: 0, start: start, end: start + k), imgShape: imgShapes[b],
                                         scaleFactor: scaleFactors[b], config: testConfig)
            }
        }
    }
}
