import Config
import Data
import Engine
import Foundation
import Heads
import NN
import Tasks
import XCTest

/// Cascade (Mask) R-CNN configs build mmdet's model from their keys (one section per stage), refuse inconsistent
/// ones naming the key, and the parts they need (RPN allowed_border, RandomChoiceResize) do what mmdet's do.
final class CascadeConfigTests: XCTestCase {
    let shapes = ConfigTests.packageRoot + "/configs/cascade_rcnn/cascade_mask_rcnn_acmix_resnet26_fpn_shapes.json"

    func testCascadeMaskRCNNConfigBuildsMMDetsModel() throws {
        let c = try Config.load(path: ConfigTests.packageRoot + "/configs/cascade_rcnn/cascade_mask_rcnn_r50_fpn_1x_coco.json")
        let detector = try XCTUnwrap(try DetectionConfig.buildModel(c) as? TwoStageDetector)
        let roi = try XCTUnwrap(detector.roi_head as? CascadeRoIHead)
        XCTAssertEqual(roi.numStages, 3)
        XCTAssertEqual(roi.stageLossWeights, [1, 0.5, 0.25])
        XCTAssertEqual(roi.assigners.map(\.posIoUThr), [0.5, 0.6, 0.7])
        XCTAssertEqual(roi.assigners.map(\.matchLowQuality), [false, false, false])
        XCTAssertEqual(roi.bbox_head.map(\.coder.stds), [[0.1, 0.1, 0.2, 0.2], [0.05, 0.05, 0.1, 0.1], [0.033, 0.033, 0.067, 0.067]])
        XCTAssertEqual(roi.bbox_head.map(\.smoothL1Beta), [1, 1, 1])
        XCTAssertEqual(roi.samplers.map(\.num), [512, 512, 512])
        let keys = detector.stateDict()
        XCTAssertEqual(keys["roi_head.bbox_head.2.fc_reg.weight"]?.shape, [4, 1024], "class-agnostic regression")
        XCTAssertEqual(keys["roi_head.bbox_head.0.fc_cls.weight"]?.shape, [81, 1024])
        XCTAssertEqual(keys["roi_head.mask_head.2.conv_logits.weight"]?.shape, [80, 256, 1, 1], "one mask head per stage")
        XCTAssertNil(keys["roi_head.mask_head.3.conv_logits.weight"])
        XCTAssertEqual(detector.rpn_head.allowedBorder, 0)
        XCTAssertEqual(detector.rpn_head.smoothL1Beta ?? 0, 1.0 / 9, accuracy: 1e-7)
        XCTAssertEqual(detector.trainProposals.maxPerImage, 2000)
        XCTAssertTrue(detector.predictsMasks)
    }

    func testInconsistentCascadeConfigsAreRefusedNamingTheKey() throws {
        for (o, needle) in [("model.roi_head.num_stages=2", "model.roi_head.stage_loss_weights: 3 weights for 2 stages"),
                            ("model.roi_head.stage_loss_weights=[1, 0.5]", "model.roi_head.stage_loss_weights: 2 weights for 3 stages"),
                            ("model.train_cfg.rcnn.1.assigner.pos_iou_thr=1.5", "model.train_cfg.rcnn.1.assigner.pos_iou_thr"),
                            ("model.roi_head.bbox_head.1.roi_feat_size=5", "model.roi_head.bbox_head.1.roi_feat_size: must equal bbox_roi_extractor"),
                            ("model.roi_head.bbox_head.2.reg_class_agnostic=\"yes\"", "model.roi_head.bbox_head[2].reg_class_agnostic: expected true or false"),
                            ("model.type=MaskRCNN", ""),
                            ("model.train_cfg.rpn.allowed_border=-2", "model.train_cfg.rpn.allowed_border")] {
            if needle.isEmpty {   // MaskRCNN with a cascade RoI head that has masks is a valid two-stage model
                XCTAssertNoThrow(try DetectionConfig.buildModel(try DetectionConfig.load(path: shapes, overrides: [o])), o)
                continue
            }
            XCTAssertThrowsError(try DetectionConfig.buildModel(try DetectionConfig.load(path: shapes, overrides: [o])), o) {
                XCTAssertTrue("\($0)".contains(needle), "\(o): \($0)")
            }
        }
        // A list with the wrong number of stage sections.
        let two = try DetectionConfig.load(path: shapes, overrides: ["model.train_cfg.rcnn=[{}, {}]"])
        XCTAssertThrowsError(try DetectionConfig.buildModel(two)) { XCTAssertTrue("\($0)".contains("model.train_cfg.rcnn: 2 entries for 3 stages"), "\($0)") }
        // `--set` reaches one stage's section.
        let c = try DetectionConfig.load(path: shapes, overrides: ["model.train_cfg.rcnn.2.sampler.num=64"])
        let roi = try XCTUnwrap((try DetectionConfig.buildModel(c) as? TwoStageDetector)?.roi_head as? CascadeRoIHead)
        XCTAssertEqual(roi.samplers.map(\.num), [128, 128, 64])
    }

    /// mmdet's anchor_inside_flags: with allowed_border 0 an anchor crossing the image edge is not assigned.
    func testAllowedBorderLeavesOutsideAnchorsUnassigned() {
        let head = RPNHead(inChannels: 8, featChannels: 8)
        let anchors: [Float] = [-4, 0, 20, 20, 10, 10, 40, 40, 60, 60, 70, 70, 5, 5, 30, 30]
        let target = DetectionTarget(boxes: [6, 6, 30, 30], labels: [0], imgShape: (64, 64))
        XCTAssertNotEqual(head.assign(anchors, target: target)[0], -1)
        head.allowedBorder = 0
        let assigned = head.assign(anchors, target: target)
        XCTAssertEqual(assigned[0], -1, "crosses x = 0")
        XCTAssertEqual(assigned[2], -1, "ends past the 64-pixel image")
        XCTAssertEqual(assigned[3], 1, "inside and the ground truth's best match")
    }

    /// RandomChoiceResize: each training image takes one of the scales; tests keep img_scale.
    func testTrainScalesPickOneScalePerImage() throws {
        var p = DetectionPipeline(imgScale: (100, 60), training: true)
        p.trainScales = [(100, 40), (100, 50), (100, 60)]
        p.flipRatio = 0
        let sample = DetectionSample(filename: "x.png", image: Image(width: 80, height: 80), gtBboxes: [10, 10, 40, 40], gtLabels: [0])
        var rng = SplitMix64(seed: 3)
        let sides = Set((0..<30).map { _ in p(sample, rng: &rng).meta.imgShape.height })
        XCTAssertEqual(sides, [40, 50, 60])
        p.training = false
        XCTAssertEqual(p(sample, rng: &rng).meta.imgShape.height, 60)
        let bad = try Config.load(path: shapes, overrides: ["data.train_scales=[]"])
        XCTAssertThrowsError(try DetectionDatasets.testPipeline(bad.section("data"))) { XCTAssertTrue("\($0)".contains("data.train_scales"), "\($0)") }
    }
}
