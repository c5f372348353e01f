import Config
import Engine
import Foundation
import NN

/// mmdet 3.3's `CascadeRoIHead` (Cascade R-CNN; Cascade Mask R-CNN with mask heads): `num_stages` box heads, each
/// trained on the previous stage's refined boxes at a stricter IoU (0.5 / 0.6 / 0.7 in mmdet's configs) with its own
/// coder stds and loss weight (1 / 0.5 / 0.25), and one mask head per stage on that stage's positives.
///
/// Training, per stage: the stage's assigner and sampler on the candidates (the ground truth prepended by the
/// sampler), the box head's losses (and the mask head's) as `s{stage}.loss_*`, weighted; then, without gradient,
/// every sampled RoI but the added ground truth regressed by the stage's deltas (background RoIs by their best
/// foreground class, which only matters for class-specific heads), clipped to the image: the next stage's
/// candidates. Test time: every proposal refined through the stages; the stages' class logits averaged, then the
/// last head's softmax, deltas and NMS; masks are the mean of every stage's mask probabilities on the final boxes.
///
/// Keys: bbox_head.{stage}.*, mask_head.{stage}.* (the extractors have no parameters).
public final class CascadeRoIHead: Module, RoIHead {
    public let bbox_head: [Shared2FCBBoxHead]
    public let mask_head: [FCNMaskHead]
    public var extractors: [SingleRoIExtractor]
    public var maskExtractors: [SingleRoIExtractor]
    public var assigners: [MaxIoUAssigner]
    public var samplers: [RandomSampler]
    public var stageLossWeights: [Float]
    public var testConfig = Shared2FCBBoxHead.TestConfig()
    /// `test_cfg.rcnn.mask_thr_binary`.
    public var maskThreshold: Float = 0.5

    /// mmdet's Cascade (Mask) R-CNN: the stages' heads (one mask head per stage, or none) with its train settings.
    public init(bboxHeads: [Shared2FCBBoxHead], maskHeads: [FCNMaskHead] = [], stageLossWeights: [Float] = [1, 0.5, 0.25]) {
        precondition(!bboxHeads.isEmpty && stageLossWeights.count == bboxHeads.count && (maskHeads.isEmpty || maskHeads.count == bboxHeads.count),
                     "a cascade needs one box head, loss weight (and mask head) per stage")
        bbox_head = bboxHeads; mask_head = maskHeads; self.stageLossWeights = stageLossWeights
        extractors = bboxHeads.map { _ in SingleRoIExtractor() }
        maskExtractors = bboxHeads.map { _ in SingleRoIExtractor(outputSize: 14) }
        assigners = [0.5, 0.6, 0.7, 0.8, 0.9].prefix(bboxHeads.count).map {
            MaxIoUAssigner(posIoUThr: $0, negIoUThr: $0, minPosIoU: $0, matchLowQuality: false, ignoreIoFThr: -1)
        }
        samplers = bboxHeads.map { _ in RandomSampler(num: 512, posFraction: 0.25) }
    }

    public var numStages: Int { bbox_head.count }
    public var numClasses: Int { bbox_head[numStages - 1].numClasses }
    public var predictsMasks: Bool { !mask_head.isEmpty }

    public func loss(_ feats: [Tensor], proposals: [[Float]], targets: [DetectionTarget]) -> [(String, Tensor)] {
        var candidates = proposals, losses: [(String, Tensor)] = []
        for stage in 0..<numStages {
            let head = bbox_head[stage], weight = stageLossWeights[stage]
            guard let s = trainRoIStage(feats, candidates: candidates, targets: targets, extractor: extractors[stage], head: head,
                                        maskExtractor: maskExtractors[stage], maskHead: predictsMasks ? mask_head[stage] : nil,
                                        assigner: assigners[stage], sampler: samplers[stage], stopIfEmpty: true) else { break }
            losses += s.losses.map { ("s\(stage).\($0.0)", $0.1 * weight) }
            guard stage < numStages - 1 else { break }
            // mmdet's `refine_bboxes`: background RoIs take their best foreground class; the added ground truth is dropped.
            let best = head.foregroundArgmax(s.cls)
            var first = 0
            for b in s.rois.indices {
                let k = s.rois[b].count / 4
                let rowLabels = (0..<k).map { s.labels[first + $0] == head.numClasses ? best[first + $0] : s.labels[first + $0] }
                let moved = head.regressByClass(rois: s.rois[b], labels: rowLabels, reg: s.reg, firstRow: first, imgShape: targets[b].imgShape)
                candidates[b] = (0..<k).filter { $0 >= s.isGT[b].count || !s.isGT[b][$0] }.flatMap { moved[(4 * $0)..<(4 * $0 + 4)] }
                first += k
            }
        }
        return losses
    }

    public func predict(_ feats: [Tensor], proposals: [[Float]], imgShapes: [(height: Int, width: Int)],
                        scaleFactors: [[Float]], oriShapes: [(height: Int, width: Int)]) -> [ImageDetections] {
        withNoGrad {
            guard !StandardRoIHead.rois(proposals).isEmpty else { return proposals.map { _ in ImageDetections(masks: predictsMasks ? [] : nil) } }
            var boxes = proposals, scoreSum: Tensor? = nil, lastReg = Tensor(zeros: [0])
            for stage in 0..<numStages {
                let (cls, reg) = bbox_head[stage](extractors[stage](feats, rois: StandardRoIHead.rois(boxes)))
                scoreSum = scoreSum.map { $0 + cls } ?? cls
                lastReg = reg
                guard stage < numStages - 1 else { break }
                let best = bbox_head[stage].foregroundArgmax(cls)
                var first = 0
                for b in boxes.indices {
                    let k = boxes[b].count / 4
                    boxes[b] = bbox_head[stage].regressByClass(rois: boxes[b], labels: Array(best[first..<(first + k)]), reg: reg,
                                                               firstRow: first, imgShape: imgShapes[b])
                    first += k
                }
            }
            // mmdet 3.x averages the stages' logits; the last head applies its softmax.
            let scores = scoreSum! * (1 / Float(numStages))
            var dets = bbox_head[numStages - 1].predict(rois: boxes, cls: scores, reg: lastReg, imgShapes: imgShapes,
                                                        scaleFactors: predictsMasks ? nil : scaleFactors, config: testConfig)
            guard predictsMasks else { return dets }
            let maskRoIs = StandardRoIHead.rois(dets.map(\.boxes))
            let c = numClasses
            // The mean of every stage's mask probabilities on the final boxes.
            var probs = Tensor(zeros: [0, c, 1, 1])
            if !maskRoIs.isEmpty {
                let perStage = (0..<numStages).map { mask_head[$0](maskExtractors[$0](feats, rois: maskRoIs)).sigmoid() }
                probs = perStage.dropFirst().reduce(perStage[0], +) * (1 / Float(numStages))
            }
            mask_head[numStages - 1].predictMasks(probs, into: &dets, scaleFactors: scaleFactors, oriShapes: oriShapes,
                                                  threshold: maskThreshold, activated: true)
            return dets
        }
    }
}

extension CascadeRoIHead {
    /// mmdet's CascadeRoIHead keys: `bbox_head` (and `mask_head`, and the extractors) one section per stage or one
    /// for every stage; `train_cfg.rcnn` a list with one stage section per stage (defaults: IoU 0.5, 0.6, 0.7, ...).
    static func register(in r: Registry<any RoIHead, RoIHeadContext>) {
        func perStage(_ s: ConfigSchema) -> ConfigSchema { .anyOf([s, .array(s)]) }
        r.register("CascadeRoIHead", fields: [
            .init("num_stages", .intRange(1...5), required: true), .init("stage_loss_weights", .array(.nonNegativeNumber), required: true),
            .init("bbox_roi_extractor", perStage(RoIParts.extractorSchema), default: .object([("type", "SingleRoIExtractor")])),
            .init("bbox_head", perStage(Registries.bboxHeads.schema), required: true),
            .init("mask_roi_extractor", perStage(RoIParts.extractorSchema)), .init("mask_head", perStage(Registries.maskHeads.schema)),
        ]) { c, context in
            let n = try c.int("num_stages"), channels = context.inChannels
            let weights = try c.doubles("stage_loss_weights").map(Float.init)
            guard weights.count == n else { throw c.fail("stage_loss_weights", "\(weights.count) weights for \(n) stages") }
            /// Stage `i`'s section of `key`: its list element, or the one section every stage shares.
            func stage(_ key: String, _ i: Int, _ cfg: Config? = nil) throws -> Config {
                let base = cfg ?? c
                guard case let .array(list)? = base[key] else { return base.section(key) }
                guard list.count == n else { throw base.fail(key, "\(list.count) entries for \(n) stages") }
                return base.section(key.isEmpty ? "\(i)" : "\(key).\(i)")
            }
            func stageKey(_ key: String, _ i: Int) -> String { c[key]?.arrayValue == nil ? key : "\(key).\(i)" }
            var heads: [Shared2FCBBoxHead] = [], masks: [FCNMaskHead] = [], parts: [RoIParts] = []
            for i in 0..<n {
                let head = try Registries.bboxHeads.build(try stage("bbox_head", i), channels)
                let mask = c.has("mask_head") ? try Registries.maskHeads.build(try stage("mask_head", i), channels) : nil
                if let mask, mask.numClasses != head.numClasses {
                    throw c.fail("mask_head.num_classes", "\(mask.numClasses) but the bbox head has \(head.numClasses)")
                }
                if i > 0, head.numClasses != heads[0].numClasses {
                    throw c.fail("bbox_head.\(i).num_classes", "\(head.numClasses) but stage 0 has \(heads[0].numClasses)")
                }
                parts.append(try RoIParts.extractors(box: try stage("bbox_roi_extractor", i),
                                                     mask: c.has("mask_roi_extractor") ? try stage("mask_roi_extractor", i) : nil, owner: c,
                                                     boxHead: stageKey("bbox_head", i), maskHead: stageKey("mask_head", i),
                                                     channels: channels, levels: context.levels, boxRoISize: head.roiSize, maskRoISize: mask?.roiSize))
                heads.append(head)
                if let mask { masks.append(mask) }
            }
            let roi = CascadeRoIHead(bboxHeads: heads, maskHeads: masks, stageLossWeights: weights)
            roi.extractors = parts.map(\.extractor)
            roi.maskExtractors = parts.map { $0.maskExtractor ?? SingleRoIExtractor(outputSize: 14) }
            for i in 0..<n {
                let iou = [0.5, 0.6, 0.7, 0.8, 0.9][i]
                let train = try settings(context.trainCfg.map { try stage("", i, $0) }, RoIParts.trainFields(iou: iou))
                let mask: FCNMaskHead? = masks.isEmpty ? nil : masks[i]
                mask?.maskSize = try RoIParts.maskSize(train, maskHead: mask)
                roi.assigners[i] = try Registries.assigners.build(train.section("assigner"))
                roi.samplers[i] = try Registries.samplers.build(train.section("sampler"))
            }
            let test = try settings(context.testCfg, RoIParts.testFields)
            (roi.testConfig, roi.maskThreshold) = try RoIParts.testConfig(test, hasMask: !masks.isEmpty)
            return roi
        }
    }
}
