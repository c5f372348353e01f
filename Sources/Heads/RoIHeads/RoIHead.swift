import Config
import Engine
import NN

/// A two-stage detector's second stage (mmdet's `BaseRoIHead`): losses and detections from the neck's levels and
/// the RPN's proposals.
public protocol RoIHead: Module {
    /// Named loss terms of a batch; `proposals` are the RPN's per image (flat x1y1x2y2, input pixels).
    func loss(_ feats: [Tensor], proposals: [[Float]], targets: [DetectionTarget]) -> [(String, Tensor)]
    /// Detections per image in original-image pixels, with masks at `oriShapes` when it predicts masks.
    func predict(_ feats: [Tensor], proposals: [[Float]], imgShapes: [(height: Int, width: Int)],
                 scaleFactors: [[Float]], oriShapes: [(height: Int, width: Int)]) -> [ImageDetections]
    /// Object classes (labels 0..<numClasses).
    var numClasses: Int { get }
    /// Whether it predicts instance masks (and training needs them).
    var predictsMasks: Bool { get }
}

/// What a RoI head's builder gets from its detector: the neck's channels and the detector's `train_cfg.rcnn` /
/// `test_cfg.rcnn` sections (nil when absent), whose schema the head owns.
public struct RoIHeadContext {
    public var inChannels: Int
    /// The neck's number of output levels, when it says (the extractors' `featmap_strides` may not list more).
    public var levels: Int?
    public var trainCfg: Config?
    public var testCfg: Config?
    public init(inChannels: Int, levels: Int? = nil, trainCfg: Config? = nil, testCfg: Config? = nil) {
        self.inChannels = inChannels; self.levels = levels; self.trainCfg = trainCfg; self.testCfg = testCfg
    }
}

/// The parts a RoI head section builds from its registries: box extractor and head, and the mask pair when the
/// section has a mask head, checked against each other (mmdet builds them in `init_bbox_head` / `init_mask_head`).
struct RoIParts {
    var extractor: SingleRoIExtractor
    var maskExtractor: SingleRoIExtractor?

    /// The extractors: `box` (a `bbox_roi_extractor` section, whose RoIs must be `boxRoISize`) and, with a mask head
    /// (`maskRoISize`), `mask` (a `mask_roi_extractor` section; absent: a 14×14 RoIAlign on the same levels).
    /// `owner` is the RoI head's section and `boxHead` / `maskHead` the heads' keys there, for the messages.
    static func extractors(box: Config, mask: Config?, owner c: Config, boxHead: String = "bbox_head", maskHead: String = "mask_head",
                           channels: Int, levels: Int?, boxRoISize: Int, maskRoISize: Int?) throws -> RoIParts {
        /// An extractor section; without `type`, the SingleRoIExtractor (the only kind until another registers).
        func build(_ section: Config) throws -> SingleRoIExtractor {
            var section = section
            if !section.has("type") { try section.set("type", "SingleRoIExtractor", origin: "<default>") }
            let extractor = try Registries.roiExtractors.build(section, channels)
            if let levels, extractor.strides.count > levels {
                throw section.fail("featmap_strides", "lists \(extractor.strides.count) strides, but the neck gives \(levels) feature levels")
            }
            return extractor
        }
        let extractor = try build(box)
        guard extractor.outputSize == boxRoISize else {
            throw c.fail("\(boxHead).roi_feat_size", "must equal bbox_roi_extractor.roi_layer.output_size")
        }
        guard let maskRoISize else {
            if mask != nil { throw c.fail("mask_roi_extractor", "is for a mask head, and the RoI head has none") }
            return RoIParts(extractor: extractor, maskExtractor: nil)
        }
        let maskExtractor = try mask.map(build)
            ?? SingleRoIExtractor(outputSize: 14, samplingRatio: 0, strides: extractor.strides, finestScale: extractor.finestScale)
        guard maskExtractor.outputSize == maskRoISize else {
            throw c.fail("\(maskHead).roi_feat_size", "must equal mask_roi_extractor.roi_layer.output_size")
        }
        return RoIParts(extractor: extractor, maskExtractor: maskExtractor)
    }

    /// The schema of an extractor section in a RoI head's: validated by the extractor registry when built, so that
    /// its `type` may be left out (SingleRoIExtractor), as this toolkit's configs always could.
    static let extractorSchema = ConfigSchema.any

    /// A RoI stage's `train_cfg.rcnn` keys with mmdet's Faster / Mask R-CNN defaults at IoU `iou`.
    static func trainFields(iou: Double = 0.5) -> [ConfigSchema.Field] {
        [.init("assigner", .object(MaxIoUAssigner.fields(pos: iou, neg: iou, minPos: iou, lowQuality: false, allowIgnore: false))),
         .init("sampler", .object(RandomSampler.fields(num: 512, fraction: 0.25))),
         .init("mask_size", .intRange(1...256)), .init("pos_weight", .exactly(-1), default: -1), .init("debug", .exactly(false), default: false)]
    }

    /// `test_cfg.rcnn` keys with mmdet's defaults.
    static let testFields: [ConfigSchema.Field] = [
        .init("score_thr", .fraction, default: 0.05),
        .init("nms", .object([.init("type", .oneOf(["nms"]), default: "nms"), .init("iou_threshold", .fraction, default: 0.5)])),
        .init("max_per_img", .positiveInt, default: 100), .init("mask_thr_binary", .fraction),
    ]

    /// The bbox head's test settings from a validated `test_cfg.rcnn`, and the mask threshold (mmdet's 0.5 default).
    static func testConfig(_ t: Config, hasMask: Bool) throws -> (Shared2FCBBoxHead.TestConfig, Float) {
        if !hasMask, t.has("mask_thr_binary") { throw t.fail("mask_thr_binary", "is for a mask head, and the RoI head has none") }
        return (Shared2FCBBoxHead.TestConfig(scoreThr: Float(try t.double("score_thr")), iouThreshold: Float(try t.double("nms.iou_threshold")),
                                             maxPerImage: try t.int("max_per_img")),
                Float(try t.double("mask_thr_binary", default: 0.5)))
    }

    /// The mask head's target size from a validated `train_cfg.rcnn` stage (28 by default, 2 × its RoI size).
    static func maskSize(_ train: Config, maskHead: FCNMaskHead?) throws -> Int {
        guard let maskHead else {
            if train.has("mask_size") { throw train.fail("mask_size", "is for a mask head, and the RoI head has none") }
            return 0
        }
        let size = try train.int("mask_size", default: 28)
        guard size == 2 * maskHead.roiSize else {
            throw train.fail("mask_size", "\(size) but the mask head predicts \(2 * maskHead.roiSize) pixels (2 × roi_feat_size)")
        }
        return size
    }
}

/// One RoI stage's training pass (a StandardRoIHead, or one stage of a cascade): every image's candidates assigned
/// and sampled, the box head's losses on the sampled RoIs and, with a mask head, the mask head's on the positives.
/// Returns the losses with what a cascade needs to refine the RoIs for its next stage; nil, with `stopIfEmpty`, when
/// no image has a RoI (mmdet then stops the cascade).
func trainRoIStage(_ feats: [Tensor], candidates: [[Float]], targets: [DetectionTarget], extractor: SingleRoIExtractor,
                   head: Shared2FCBBoxHead, maskExtractor: SingleRoIExtractor, maskHead: FCNMaskHead?, assigner: MaxIoUAssigner,
                   sampler: RandomSampler, stopIfEmpty: Bool = false)
    -> (losses: [(String, Tensor)], rois: [[Float]], labels: [Int], isGT: [[Bool]], cls: Tensor, reg: Tensor)? {
    var perImage: [[Float]] = [], labels: [Int] = [], deltas: [Float] = [], isGT: [[Bool]] = []
    var posBoxes: [[Float]] = [], posLabels: [Int] = [], maskTargets: [Float] = []
    for (p, t) in zip(candidates, targets) {
        let s = StandardRoIHead.sampleRoIs(proposals: p, target: t, assigner: assigner, sampler: sampler, coder: head.coder,
                                           numClasses: head.numClasses, rng: &EngineRandom.generator)
        perImage.append(s.boxes); labels += s.labels; deltas += s.targets; isGT.append(s.isGT)
        if let maskHead {
            precondition(t.masks != nil, "Training a mask head needs the instance masks of every image (the dataset gave none)")
            let pos = Array(s.boxes.prefix(4 * s.gtIndices.count))
            posBoxes.append(pos); posLabels += s.labels.prefix(s.gtIndices.count)
            maskTargets += maskHead.maskTargets(boxes: pos, gtIndices: s.gtIndices, masks: t.masks!)
        }
    }
    if stopIfEmpty && labels.isEmpty { return nil }
    let (cls, reg) = head(extractor(feats, rois: StandardRoIHead.rois(perImage)))
    var losses = head.loss(cls: cls, reg: reg, labels: labels, targets: deltas)
    if let maskHead {
        let logits = maskHead(maskExtractor(feats, rois: StandardRoIHead.rois(posBoxes)))
        losses.append(maskHead.loss(logits, labels: posLabels, targets: maskTargets))
    }
    return (losses, perImage, labels, isGT, cls, reg)
}
