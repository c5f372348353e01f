import Config
import Engine
import Foundation
import NN

/// mmdet's `StandardRoIHead`: RoIs cropped from the neck's levels by a `SingleRoIExtractor` and classified
/// and refined by a `Shared2FCBBoxHead`; with a mask head (Mask R-CNN), the positive RoIs (in training) or the
/// detections (at test time) are cropped again by a second extractor (14×14) and segmented by an `FCNMaskHead`.
/// In training the ground truth joins the proposals, a MaxIoUAssigner (0.5 / 0.5 / 0.5; low-quality matches only
/// where the config asks, as mmdet's Mask R-CNN configs do) labels them and a RandomSampler keeps 512 with at most
/// 25 % positives.
///
/// Keys: bbox_head.*, mask_head.* (the extractors have no parameters).
public final class StandardRoIHead: Module, RoIHead {
    public let bbox_head: Shared2FCBBoxHead
    public let mask_head: FCNMaskHead?
    public var extractor = SingleRoIExtractor()
    public var maskExtractor = SingleRoIExtractor(outputSize: 14)
    public var assigner = MaxIoUAssigner(posIoUThr: 0.5, negIoUThr: 0.5, minPosIoU: 0.5, matchLowQuality: false, ignoreIoFThr: -1)
    public var sampler = RandomSampler(num: 512, posFraction: 0.25)
    public var testConfig = Shared2FCBBoxHead.TestConfig()
    /// `test_cfg.rcnn.mask_thr_binary`.
    public var maskThreshold: Float = 0.5

    public init(bboxHead: Shared2FCBBoxHead, maskHead: FCNMaskHead? = nil) { bbox_head = bboxHead; mask_head = maskHead }

    public var numClasses: Int { bbox_head.numClasses }
    public var predictsMasks: Bool { mask_head != nil }

    /// The RoIs of one training image: the ground truth first (when the sampler adds it), then the proposals,
    /// assigned and sampled; positives first. Returns the sampled boxes (flat), their labels (`numClasses` for
    /// background), the positives' encoded targets and the ground truth each positive was assigned.
    public func sampleRoIs(proposals: [Float], target t: DetectionTarget, rng: inout SplitMix64)
        -> (boxes: [Float], labels: [Int], targets: [Float], gtIndices: [Int]) {
        let s = Self.sampleRoIs(proposals: proposals, target: t, assigner: assigner, sampler: sampler, coder: bbox_head.coder,
                                numClasses: bbox_head.numClasses, rng: &rng)
        return (s.boxes, s.labels, s.targets, s.gtIndices)
    }

    /// `sampleRoIs` with explicit settings (a Cascade R-CNN stage's); `isGT` marks the positives that are added
    /// ground-truth boxes (mmdet's `pos_is_gt`).
    static func sampleRoIs(proposals: [Float], target t: DetectionTarget, assigner: MaxIoUAssigner, sampler: RandomSampler,
                           coder: DeltaXYWHBBoxCoder, numClasses: Int, rng: inout SplitMix64)
        -> (boxes: [Float], labels: [Int], targets: [Float], gtIndices: [Int], isGT: [Bool]) {
        let added = sampler.addGTAsProposals ? t.boxes.count / 4 : 0
        let candidates = (sampler.addGTAsProposals ? t.boxes : []) + proposals
        var assigned = assigner.assign(anchors: candidates, gts: t.boxes)
        for g in 0..<added { assigned[g] = g + 1 }   // each added ground-truth box is its own positive
        let (pos, neg) = sampler.sample(assigned, rng: &rng)
        var boxes: [Float] = [], labels: [Int] = [], gtBoxes: [Float] = [], gtIndices: [Int] = []
        for i in pos {
            let g = assigned[i] - 1
            boxes += candidates[(4 * i)..<(4 * i + 4)]
            labels.append(t.labels[g])
            gtBoxes += t.boxes[(4 * g)..<(4 * g + 4)]
            gtIndices.append(g)
        }
        let posBoxes = boxes
        for i in neg {
            boxes += candidates[(4 * i)..<(4 * i + 4)]
            labels.append(numClasses)
        }
        return (boxes, labels, coder.encode(anchors: posBoxes, gts: gtBoxes), gtIndices, pos.map { $0 < added })
    }

    /// RoIs as mmdet's `bbox2roi`: [batch index, x1, y1, x2, y2] per box, images in order.
    public static func rois(_ perImage: [[Float]]) -> [Float] {
        var out: [Float] = []
        for (b, boxes) in perImage.enumerated() {
            for i in 0..<(boxes.count / 4) { out += [Float(b)] + boxes[(4 * i)..<(4 * i + 4)] }
        }
        return out
    }

    /// loss_cls and loss_bbox of a batch (and loss_mask with a mask head, whose targets need every image's
    /// masks): `feats` are the neck's levels, `proposals` the RPN's per image.
    public func loss(_ feats: [Tensor], proposals: [[Float]], targets: [DetectionTarget]) -> [(String, Tensor)] {
        trainRoIStage(feats, candidates: proposals, targets: targets, extractor: extractor, head: bbox_head, maskExtractor: maskExtractor,
                      maskHead: mask_head, assigner: assigner, sampler: sampler)!.losses
    }

    /// Detections per image (original-image pixels) from the proposals, with masks at `oriShapes` when the head
    /// has a mask head (mmdet: boxes kept at input scale for the mask RoIs, rescaled after).
    public func predict(_ feats: [Tensor], proposals: [[Float]], imgShapes: [(height: Int, width: Int)],
                        scaleFactors: [[Float]], oriShapes: [(height: Int, width: Int)]) -> [ImageDetections] {
        withNoGrad {
            let rois = Self.rois(proposals)
            guard !rois.isEmpty else { return proposals.map { _ in ImageDetections(masks: mask_head.map { _ in [] }) } }
            let (cls, reg) = bbox_head(extractor(feats, rois: rois))
            var dets = bbox_head.predict(rois: proposals, cls: cls, reg: reg, imgShapes: imgShapes,
                                         scaleFactors: mask_head == nil ? scaleFactors : nil, config: testConfig)
            guard let mask_head else { return dets }
            let maskRoIs = Self.rois(dets.map(\.boxes))
            let logits = maskRoIs.isEmpty ? Tensor(zeros: [0, mask_head.numClasses, 1, 1]) : mask_head(maskExtractor(feats, rois: maskRoIs))
            mask_head.predictMasks(logits, into: &dets, scaleFactors: scaleFactors, oriShapes: oriShapes, threshold: maskThreshold)
            return dets
        }
    }
}

extension StandardRoIHead {
    /// mmdet's StandardRoIHead keys: its parts come from their registries; `train_cfg.rcnn` / `test_cfg.rcnn`
    /// arrive through the context.
    static func register(in r: Registry<any RoIHead, RoIHeadContext>) {
        r.register("StandardRoIHead", fields: [
            .init("bbox_roi_extractor", RoIParts.extractorSchema, default: .object([("type", "SingleRoIExtractor")])),
            .init("bbox_head", Registries.bboxHeads.schema, required: true),
            .init("mask_roi_extractor", RoIParts.extractorSchema), .init("mask_head", Registries.maskHeads.schema),
        ]) { c, context in
            let channels = context.inChannels
            let head = try Registries.bboxHeads.build(c.section("bbox_head"), channels)
            let mask = c.has("mask_head") ? try Registries.maskHeads.build(c.section("mask_head"), channels) : nil
            if let mask, mask.numClasses != head.numClasses {
                throw c.fail("mask_head.num_classes", "\(mask.numClasses) but the bbox head has \(head.numClasses)")
            }
            let train = try settings(context.trainCfg, RoIParts.trainFields()), test = try settings(context.testCfg, RoIParts.testFields)
            mask?.maskSize = try RoIParts.maskSize(train, maskHead: mask)
            let parts = try RoIParts.extractors(box: c.section("bbox_roi_extractor"), mask: c.has("mask_roi_extractor") ? c.section("mask_roi_extractor") : nil,
                                                owner: c, channels: channels, levels: context.levels, boxRoISize: head.roiSize, maskRoISize: mask?.roiSize)
            let roi = StandardRoIHead(bboxHead: head, maskHead: mask)
            roi.extractor = parts.extractor
            if let m = parts.maskExtractor { roi.maskExtractor = m }
            roi.assigner = try Registries.assigners.build(train.section("assigner"))
            roi.sampler = try Registries.samplers.build(train.section("sampler"))
            (roi.testConfig, roi.maskThreshold) = try RoIParts.testConfig(test, hasMask: mask != nil)
            return roi
        }
    }
}
