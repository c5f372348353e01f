import Backbones
import Config
import Engine
import NN

/// mmdet `TwoStageDetector` (Faster R-CNN, Mask R-CNN, Cascade (Mask) R-CNN): backbone → neck → RPN proposals →
/// RoI head. Keys backbone.*, neck.*, rpn_head.*, roi_head.*.
public final class TwoStageDetector: Module, Detector {
    public let backbone: any Backbone
    public let neck: any Neck
    public let rpn_head: RPNHead
    public let roi_head: any RoIHead
    /// `train_cfg.rpn_proposal`: how many proposals of a training step reach the RoI head (at test time the RPN's
    /// own `test_cfg`, `test_cfg.rpn`, decides).
    public var trainProposals = RPNHead.ProposalConfig(nmsPre: 2000, maxPerImage: 1000)

    public init(backbone: any Backbone, neck: any Neck, rpnHead: RPNHead, roiHead: any RoIHead) {
        self.backbone = backbone; self.neck = neck; rpn_head = rpnHead; roi_head = roiHead
    }

    public override func children() -> [(String, Module)] {
        [("backbone", backbone), ("neck", neck), ("rpn_head", rpn_head), ("roi_head", roi_head)]
    }

    /// RPN losses (every ground truth as one foreground class) plus the RoI head's on proposals made without
    /// gradient, as mmdet (RoIAlign passes no gradient to the boxes).
    public func lossTerms(_ images: Tensor, targets: [DetectionTarget]) -> [(String, Tensor)] {
        let feats = neck(backbone.features(images))
        let rpnTargets = targets.map { DetectionTarget(boxes: $0.boxes, labels: [Int](repeating: 0, count: $0.labels.count),
                                                       ignore: $0.ignore, imgShape: $0.imgShape) }
        let rpn = rpn_head.loss(feats, targets: rpnTargets)
        let proposals = rpn_head.proposals(feats, imgShapes: targets.map(\.imgShape), config: trainProposals).map(\.boxes)
        return rpn + roi_head.loss(feats, proposals: proposals, targets: targets)
    }

    public var predictsMasks: Bool { roi_head.predictsMasks }
    public var numClasses: Int { roi_head.numClasses }

    public func predict(_ images: Tensor, imgShapes: [(height: Int, width: Int)], scaleFactors: [[Float]],
                        oriShapes: [(height: Int, width: Int)]) -> [ImageDetections] {
        withNoGrad {
            let feats = neck.features(of: backbone, images)
            let proposals = rpn_head.predictByFeat(feats, imgShapes: imgShapes, scaleFactors: nil, config: rpn_head.testConfig).map(\.boxes)
            return roi_head.predict(feats, proposals: proposals, imgShapes: imgShapes, scaleFactors: scaleFactors, oriShapes: oriShapes)
        }
    }
}

extension TwoStageDetector {
    /// `model` of type FasterRCNN / MaskRCNN / CascadeRCNN / TwoStageDetector: the parts come from their registries,
    /// each given its own section; `train_cfg.rpn` / `test_cfg.rpn` go to the RPN head and `train_cfg.rcnn` /
    /// `test_cfg.rcnn` to the RoI head, which own their schemas (mmdet's `rpn_head.update(train_cfg=...)`). A mask
    /// head makes it Mask R-CNN (or Cascade Mask R-CNN), which MaskRCNN requires and FasterRCNN refuses.
    static func register(in r: Registry<any Detector, Void>) {
        r.register(["FasterRCNN", "MaskRCNN", "CascadeRCNN", "TwoStageDetector"], fields: [
            .init("backbone", Registries.backbones.schema, required: true), .init("neck", Registries.necks.schema, required: true),
            .init("rpn_head", Registries.denseHeads.schema, required: true), .init("roi_head", Registries.roiHeads.schema, required: true),
            .init("train_cfg", .object([.init("rpn", .any), .init("rpn_proposal", .object(RPNHead.proposalFields(nmsPre: 2000))),
                                        .init("rcnn", .any)])),
            .init("test_cfg", .object([.init("rpn", .any), .init("rcnn", .any)])),
        ]) { c, _ in
            let backbone = try Registries.backbones.build(c.section("backbone"))
            let neck = try Registries.necks.build(c.section("neck"), NeckContext(inChannels: backbone.featureChannels))
            func optional(_ key: String) -> Config? { c.has(key) ? c.section(key) : nil }
            let rpn = try Registries.denseHeads.build(c.section("rpn_head"), DenseHeadContext(
                inChannels: neck.outChannels, levels: neck.levelCount, trainCfg: optional("train_cfg.rpn"), testCfg: optional("test_cfg.rpn")))
            guard let rpn = rpn as? RPNHead else { throw c.fail("rpn_head.type", "\(try c.string("rpn_head.type")) does not propose regions (use RPNHead)") }
            let roi = try Registries.roiHeads.build(c.section("roi_head"), RoIHeadContext(
                inChannels: neck.outChannels, levels: neck.levelCount, trainCfg: optional("train_cfg.rcnn"), testCfg: optional("test_cfg.rcnn")))
            switch try c.string("type") {
            case "MaskRCNN" where !roi.predictsMasks: throw c.fail("roi_head.mask_head", "is required by a MaskRCNN")
            case "FasterRCNN" where roi.predictsMasks: throw c.fail("roi_head.mask_head", "makes the model a MaskRCNN (set type to MaskRCNN)")
            case "CascadeRCNN" where !(roi is CascadeRoIHead): throw c.fail("roi_head.type", "a CascadeRCNN needs a CascadeRoIHead")
            default: break
            }
            let detector = TwoStageDetector(backbone: backbone, neck: neck, rpnHead: rpn, roiHead: roi)
            detector.trainProposals = try RPNHead.proposalConfig(c.section("train_cfg.rpn_proposal"))
            return detector
        }
    }
}
