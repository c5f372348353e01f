import Backbones
import Config
import Engine
import NN

/// mmdet `TwoStageDetector` (Faster R-CNN, Mask R-CNN): backbone → neck → RPN proposals → RoI head. Keys backbone.*,
/// neck.*, rpn_head.*, roi_head.bbox_head.*, roi_head.mask_head.*.
public final class TwoStageDetector: Module, Detector {
    public let backbone: any Backbone
    public let neck: any Neck
    public let rpn_head: RPNHead
    public let roi_head: StandardRoIHead
    /// `train_cfg.rpn_proposal` and `test_cfg.rpn`: how many proposals reach the RoI head.
    public var trainProposals = RPNHead.ProposalConfig(nmsPre: 2000, maxPerImage: 1000)
    public var testProposals = RPNHead.ProposalConfig(nmsPre: 1000, maxPerImage: 1000)

    public init(backbone: any Backbone, neck: any Neck, rpnHead: RPNHead, roiHead: StandardRoIHead) {
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

    public var predictsMasks: Bool { roi_head.mask_head != nil }
    public var numClasses: Int { roi_head.bbox_head.numClasses }

    public func predict(_ images: Tensor, imgShapes: [(height: Int, width: Int)], scaleFactors: [[Float]],
                        oriShapes: [(height: Int, width: Int)]) -> [ImageDetections] {
        withNoGrad {
            let feats = neck(backbone.features(images))
            let proposals = rpn_head.proposals(feats, imgShapes: imgShapes, config: testProposals).map(\.boxes)
            return roi_head.predict(feats, proposals: proposals, imgShapes: imgShapes, scaleFactors: scaleFactors, oriShapes: oriShapes)
        }
    }
}

extension TwoStageDetector {
    static let nms = ConfigSchema.object([.init("type", .oneOf(["nms"]), default: "nms"), .init("iou_threshold", .fraction, default: 0.7)])
    static func proposalFields(nmsPre: Int) -> [ConfigSchema.Field] {
        [.init("nms_pre", .positiveInt, default: .int(nmsPre)), .init("max_per_img", .positiveInt, default: 1000),
         .init("nms", nms), .init("min_bbox_size", .numberRange(-1...1e9), default: 0)]
    }
    static func assignerFields(pos: Double, neg: Double, minPos: Double, lowQuality: Bool) -> [ConfigSchema.Field] {
        [.init("type", .oneOf(["MaxIoUAssigner"]), default: "MaxIoUAssigner"), .init("pos_iou_thr", .fraction, default: .double(pos)),
         .init("neg_iou_thr", .fraction, default: .double(neg)), .init("min_pos_iou", .fraction, default: .double(minPos)),
         .init("match_low_quality", .bool, default: .bool(lowQuality)), .init("ignore_iof_thr", .exactly(-1), default: -1)]
    }
    static func samplerFields(num: Int, fraction: Double, addGT: Bool) -> [ConfigSchema.Field] {
        [.init("type", .oneOf(["RandomSampler"]), default: "RandomSampler"), .init("num", .positiveInt, default: .int(num)),
         .init("pos_fraction", .fraction, default: .double(fraction)), .init("neg_pos_ub", .exactly(-1), default: -1),
         .init("add_gt_as_proposals", .exactly(.bool(addGT)), default: .bool(addGT))]
    }
    static let trainFields: [ConfigSchema.Field] = [
        .init("rpn", .object([.init("assigner", .object(assignerFields(pos: 0.7, neg: 0.3, minPos: 0.3, lowQuality: true))),
                              .init("sampler", .object(samplerFields(num: 256, fraction: 0.5, addGT: false))),
                              .init("allowed_border", .exactly(-1), default: -1), .init("pos_weight", .exactly(-1), default: -1),
                              .init("debug", .exactly(false), default: false)])),
        .init("rpn_proposal", .object(proposalFields(nmsPre: 2000))),
        .init("rcnn", .object([.init("assigner", .object(assignerFields(pos: 0.5, neg: 0.5, minPos: 0.5, lowQuality: false))),
                               .init("sampler", .object(samplerFields(num: 512, fraction: 0.25, addGT: true))),
                               .init("mask_size", .intRange(1...256)),
                               .init("pos_weight", .exactly(-1), default: -1), .init("debug", .exactly(false), default: false)])),
    ]
    static let testFields: [ConfigSchema.Field] = [
        .init("rpn", .object(proposalFields(nmsPre: 1000))),
        .init("rcnn", .object([.init("score_thr", .fraction, default: 0.05),
                               .init("nms", .object([.init("type", .oneOf(["nms"]), default: "nms"),
                                                     .init("iou_threshold", .fraction, default: 0.5)])),
                               .init("max_per_img", .positiveInt, default: 100),
                               .init("mask_thr_binary", .fraction)])),
    ]
    static let coderFields = { (stds: [JSON]) -> [ConfigSchema.Field] in
        [.init("type", .oneOf(["DeltaXYWHBBoxCoder"]), default: "DeltaXYWHBBoxCoder"),
         .init("target_means", .exactly([0, 0, 0, 0]), default: [0, 0, 0, 0]),
         .init("target_stds", .array(.positiveNumber, count: 4), default: .array(stds))]
    }
    static let rpnFields: [ConfigSchema.Field] = [
        .init("type", .oneOf(["RPNHead"]), required: true), .init("in_channels", .positiveInt), .init("feat_channels", .positiveInt, default: 256),
        .init("anchor_generator", .object([
            .init("type", .oneOf(["AnchorGenerator"]), default: "AnchorGenerator"), .init("scales", .array(.positiveNumber, count: 1), default: [8]),
            .init("ratios", .array(.positiveNumber), default: [0.5, 1.0, 2.0]), .init("strides", .array(.positiveInt), default: [4, 8, 16, 32, 64]),
        ])),
        .init("bbox_coder", .object(coderFields([1, 1, 1, 1]))),
        .init("loss_cls", .object([.init("type", .oneOf(["CrossEntropyLoss"]), default: "CrossEntropyLoss"),
                                   .init("use_sigmoid", .exactly(true), default: true), .init("loss_weight", .nonNegativeNumber, default: 1)])),
        .init("loss_bbox", .object([.init("type", .oneOf(["L1Loss"]), default: "L1Loss"), .init("loss_weight", .nonNegativeNumber, default: 1)])),
    ]
    /// A SingleRoIExtractor's keys; the mask one's defaults (output size 14) are applied by the builder, so a
    /// Faster R-CNN config holds no mask keys.
    static func extractorFields(withDefaults: Bool) -> [ConfigSchema.Field] {
        func d(_ v: JSON) -> JSON? { withDefaults ? .some(v) : .none }   // (a bare nil would be JSON.null)
        return [.init("type", .oneOf(["SingleRoIExtractor"]), default: d("SingleRoIExtractor")),
                .init("roi_layer", .object([.init("type", .oneOf(["RoIAlign"]), default: d("RoIAlign")),
                                            .init("output_size", .positiveInt, default: d(7)),
                                            .init("sampling_ratio", .nonNegativeInt, default: d(0)), .init("aligned", .exactly(true), default: d(true))])),
                .init("out_channels", .positiveInt), .init("featmap_strides", .array(.positiveInt), default: d([4, 8, 16, 32])),
                .init("finest_scale", .positiveNumber, default: d(56))]
    }
    static let roiFields: [ConfigSchema.Field] = [
        .init("type", .oneOf(["StandardRoIHead"]), required: true),
        .init("bbox_roi_extractor", .object(extractorFields(withDefaults: true))),
        .init("mask_roi_extractor", .object(extractorFields(withDefaults: false))),
        // No defaults in the schema (they would create a mask head in every Faster R-CNN config): the builder applies
        // mmdet's (4 convs of 256, 14×14 RoIs, loss weight 1).
        .init("mask_head", .object([
            .init("type", .oneOf(["FCNMaskHead"]), required: true), .init("num_convs", .intRange(0...16)),
            .init("in_channels", .positiveInt), .init("conv_out_channels", .positiveInt),
            .init("conv_kernel_size", .exactly(3)), .init("roi_feat_size", .positiveInt),
            .init("num_classes", .positiveInt, required: true), .init("class_agnostic", .exactly(false)),
            .init("upsample_cfg", .object([.init("type", .oneOf(["deconv"])), .init("scale_factor", .exactly(2))])),
            .init("loss_mask", .object([.init("type", .oneOf(["CrossEntropyLoss"])), .init("use_mask", .exactly(true)),
                                        .init("loss_weight", .nonNegativeNumber)])),
        ])),
        .init("bbox_head", .object([
            .init("type", .oneOf(["Shared2FCBBoxHead"]), required: true), .init("in_channels", .positiveInt),
            .init("fc_out_channels", .positiveInt, default: 1024), .init("roi_feat_size", .positiveInt, default: 7),
            .init("num_classes", .positiveInt, required: true), .init("bbox_coder", .object(coderFields([0.1, 0.1, 0.2, 0.2]))),
            .init("reg_class_agnostic", .exactly(false), default: false),
            .init("loss_cls", .object([.init("type", .oneOf(["CrossEntropyLoss"]), default: "CrossEntropyLoss"),
                                       .init("use_sigmoid", .exactly(false), default: false), .init("loss_weight", .nonNegativeNumber, default: 1)])),
            .init("loss_bbox", .object([.init("type", .oneOf(["L1Loss"]), default: "L1Loss"), .init("loss_weight", .nonNegativeNumber, default: 1)])),
        ]), required: true),
    ]

    /// `model` of type FasterRCNN / MaskRCNN / TwoStageDetector (mmdet's config layout and defaults); a
    /// `roi_head.mask_head` makes it Mask R-CNN, which MaskRCNN requires and FasterRCNN refuses.
    static func register(in r: Registry<any Detector, Void>) {
        r.register(["FasterRCNN", "MaskRCNN", "TwoStageDetector"], fields: [
            .init("backbone", Registries.backbones.schema, required: true), .init("neck", Registries.necks.schema, required: true),
            .init("rpn_head", .object(rpnFields), required: true), .init("roi_head", .object(roiFields), required: true),
            .init("train_cfg", .object(trainFields)), .init("test_cfg", .object(testFields)),
        ]) { c, _ in
            let backbone = try Registries.backbones.build(c.section("backbone"))
            let neck = try Registries.necks.build(c.section("neck"), NeckContext(inChannels: backbone.featureChannels))
            let channels = neck.outChannels
            let withMask = c.has("roi_head.mask_head")
            switch try c.string("type") {
            case "MaskRCNN" where !withMask: throw c.fail("roi_head.mask_head", "is required by a MaskRCNN")
            case "FasterRCNN" where withMask: throw c.fail("roi_head.mask_head", "makes the model a MaskRCNN (set type to MaskRCNN)")
            default: break
            }
            for key in ["rpn_head.in_channels", "roi_head.bbox_roi_extractor.out_channels", "roi_head.bbox_head.in_channels",
                        "roi_head.mask_roi_extractor.out_channels", "roi_head.mask_head.in_channels"]
            where c.has(key) {
                if try c.int(key) != channels { throw c.fail(key, "\(try c.int(key)) but the neck gives \(channels)") }
            }
            let ag = c.section("rpn_head.anchor_generator")
            let rpn = RPNHead(inChannels: channels, featChannels: try c.int("rpn_head.feat_channels"),
                              anchorGenerator: AnchorGenerator(strides: try ag.ints("strides"), ratios: try ag.doubles("ratios").map(Float.init),
                                                               octaveBaseScale: Float(try ag.doubles("scales")[0]), scalesPerOctave: 1))
            rpn.coder = DeltaXYWHBBoxCoder(stds: try c.doubles("rpn_head.bbox_coder.target_stds").map(Float.init))
            rpn.clsLossWeight = Float(try c.double("rpn_head.loss_cls.loss_weight"))
            rpn.bboxLossWeight = Float(try c.double("rpn_head.loss_bbox.loss_weight"))
            func assigner(_ a: Config) throws -> MaxIoUAssigner {
                MaxIoUAssigner(posIoUThr: Float(try a.double("pos_iou_thr")), negIoUThr: Float(try a.double("neg_iou_thr")),
                               minPosIoU: Float(try a.double("min_pos_iou")), matchLowQuality: try a.bool("match_low_quality"), ignoreIoFThr: -1)
            }
            func sampler(_ s: Config) throws -> RandomSampler {
                RandomSampler(num: try s.int("num"), posFraction: Float(try s.double("pos_fraction")))
            }
            func proposals(_ p: Config) throws -> RPNHead.ProposalConfig {
                RPNHead.ProposalConfig(nmsPre: try p.int("nms_pre"), minBBoxSize: Float(try p.double("min_bbox_size")),
                                       iouThreshold: Float(try p.double("nms.iou_threshold")), maxPerImage: try p.int("max_per_img"))
            }
            rpn.assigner = try assigner(c.section("train_cfg.rpn.assigner"))
            rpn.sampler = try sampler(c.section("train_cfg.rpn.sampler"))
            let b = c.section("roi_head.bbox_head"), e = c.section("roi_head.bbox_roi_extractor")
            let head = Shared2FCBBoxHead(inChannels: channels, roiSize: try b.int("roi_feat_size"), fcChannels: try b.int("fc_out_channels"),
                                         numClasses: try b.int("num_classes"))
            head.coder = DeltaXYWHBBoxCoder(stds: try b.doubles("bbox_coder.target_stds").map(Float.init))
            head.clsLossWeight = Float(try b.double("loss_cls.loss_weight"))
            head.bboxLossWeight = Float(try b.double("loss_bbox.loss_weight"))
            func extractor(_ e: Config, outputSize: Int) throws -> SingleRoIExtractor {
                SingleRoIExtractor(outputSize: try e.int("roi_layer.output_size", default: outputSize),
                                   samplingRatio: try e.int("roi_layer.sampling_ratio", default: 0),
                                   strides: e.has("featmap_strides") ? try e.ints("featmap_strides") : [4, 8, 16, 32],
                                   finestScale: Float(try e.double("finest_scale", default: 56)))
            }
            var maskHead: FCNMaskHead? = nil
            if withMask {
                let m = c.section("roi_head.mask_head")
                let mask = FCNMaskHead(inChannels: channels, convChannels: try m.int("conv_out_channels", default: 256),
                                       numConvs: try m.int("num_convs", default: 4), numClasses: try m.int("num_classes"))
                mask.lossWeight = Float(try m.double("loss_mask.loss_weight", default: 1))
                mask.maskSize = try c.int("train_cfg.rcnn.mask_size", default: 28)
                let roiSize = try m.int("roi_feat_size", default: 14)
                guard mask.maskSize == 2 * roiSize else {
                    throw c.fail("train_cfg.rcnn.mask_size", "\(mask.maskSize) but the mask head predicts \(2 * roiSize) pixels (2 × roi_feat_size)")
                }
                guard mask.numClasses == head.numClasses else {
                    throw c.fail("roi_head.mask_head.num_classes", "\(mask.numClasses) but the bbox head has \(head.numClasses)")
                }
                maskHead = mask
            }
            let roi = StandardRoIHead(bboxHead: head, maskHead: maskHead)
            roi.extractor = try extractor(e, outputSize: 7)
            guard roi.extractor.outputSize == head.shared_fcs[0].weight.shape[1] / (channels * roi.extractor.outputSize) else {
                throw c.fail("roi_head.bbox_head.roi_feat_size", "must equal bbox_roi_extractor.roi_layer.output_size")
            }
            if withMask {
                roi.maskExtractor = try extractor(c.section("roi_head.mask_roi_extractor"), outputSize: 14)
                guard roi.maskExtractor.outputSize == (try c.int("roi_head.mask_head.roi_feat_size", default: 14)) else {
                    throw c.fail("roi_head.mask_head.roi_feat_size", "must equal mask_roi_extractor.roi_layer.output_size")
                }
                roi.maskThreshold = Float(try c.double("test_cfg.rcnn.mask_thr_binary", default: 0.5))
            } else {
                for key in ["train_cfg.rcnn.mask_size", "test_cfg.rcnn.mask_thr_binary", "roi_head.mask_roi_extractor"] where c.has(key) {
                    throw c.fail(key, "is for a mask head, and roi_head has none")
                }
            }
            roi.assigner = try assigner(c.section("train_cfg.rcnn.assigner"))
            roi.sampler = try sampler(c.section("train_cfg.rcnn.sampler"))
            roi.testConfig = Shared2FCBBoxHead.TestConfig(scoreThr: Float(try c.double("test_cfg.rcnn.score_thr")),
                                                          iouThreshold: Float(try c.double("test_cfg.rcnn.nms.iou_threshold")),
                                                          maxPerImage: try c.int("test_cfg.rcnn.max_per_img"))
            let detector = TwoStageDetector(backbone: backbone, neck: neck, rpnHead: rpn, roiHead: roi)
            detector.trainProposals = try proposals(c.section("train_cfg.rpn_proposal"))
            detector.testProposals = try proposals(c.section("test_cfg.rpn"))
            return detector
        }
    }
}
