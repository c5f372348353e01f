import Config
import Data
import Foundation
import Heads
import NN
import Tasks
import Training
import XCTest

/// Every config in `configs/` loads, builds its model and its task, and every key it sets is read by something:
/// a key that a schema accepts but nothing implements would show up here.
final class ShippedConfigTests: XCTestCase {
    var dir = ""

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "acmix-shipped-\(UUID().uuidString)"
        // Stand-ins for COCO and ADE20K: two images per split, so loaders have a batch.
        for sub in ["coco/train", "coco/val", "ade/images/training", "ade/images/validation", "ade/annotations/training",
                    "ade/annotations/validation"] {
            try FileManager.default.createDirectory(atPath: "\(dir)/\(sub)", withIntermediateDirectories: true)
        }
        let ann = #"""
        {"images": [{"id": 1, "file_name": "a.png", "width": 64, "height": 64}, {"id": 2, "file_name": "b.png", "width": 64, "height": 64}],
         "categories": [{"id": 1, "name": "thing"}],
         "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [4, 4, 20, 20], "area": 400, "iscrowd": 0},
                         {"id": 2, "image_id": 2, "category_id": 1, "bbox": [8, 8, 30, 20], "area": 600, "iscrowd": 0}]}
        """#
        try ann.write(toFile: "\(dir)/coco/ann.json", atomically: true, encoding: .utf8)
        for split in ["training", "validation"] {
            for name in ["a", "b"] {
                try writePNG(Image(width: 64, height: 48, fill: (10, 20, 30)), to: "\(dir)/ade/images/\(split)/\(name).png")
                try writePNG(LabelMap(width: 64, height: 48, labels: [UInt8](repeating: 3, count: 64 * 48)),
                             to: "\(dir)/ade/annotations/\(split)/\(name).png")
            }
        }
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func testEveryShippedConfigBuildsAndEveryKeyIsRead() throws {
        let root = ConfigTests.packageRoot + "/configs"
        let files = try FileManager.default.subpathsOfDirectory(atPath: root)
            .filter { $0.hasSuffix(".json") && !$0.hasPrefix("_base_") }.sorted()
        XCTAssertGreaterThanOrEqual(files.count, 10)
        for file in files {
            let raw = try Config.load(path: "\(root)/\(file)")
            let segmentation = try raw.string("model.type") == "EncoderDecoder"
            var overrides: [String] = []
            switch try raw.string("data.dataset") {
            case "coco":
                overrides = ["data.coco.train_ann=\(dir)/coco/ann.json", "data.coco.val_ann=\(dir)/coco/ann.json",
                             "data.coco.train_img_prefix=\(dir)/coco/train", "data.coco.val_img_prefix=\(dir)/coco/val"]
            case "ade20k": overrides = ["data.ade20k.root=\(dir)/ade"]
            default: break
            }
            let c: Config, task: TrainingTask
            if segmentation {
                c = try SegmentationConfig.load(path: "\(root)/\(file)", overrides: overrides)
                task = try SegmentationTask(config: c, segmentor: try SegmentationConfig.buildModel(c))
            } else {
                c = try DetectionConfig.load(path: "\(root)/\(file)", overrides: overrides)
                task = try DetectionTask(config: c, detector: try DetectionConfig.buildModel(c))
            }
            let settings = try TrainerSettings(config: c)
            XCTAssertGreaterThan(settings.maxIters(itersPerEpoch: task.itersPerEpoch), 0, file)
            XCTAssertEqual(c.unreadKeys(), [], "\(file): keys accepted but never read")
        }
    }

    /// Keys kept only for compatibility with mmdet configs hold the one value implemented; anything else is refused
    /// before any work, naming the key.
    func testCompatibilityKeysAcceptOnlyTheImplementedValue() throws {
        let path = ConfigTests.packageRoot + "/configs/retinanet/retinanet_acmix_resnet26_fpn_shapes.json"
        for (o, needle) in [("model.bbox_head.loss_cls.use_sigmoid=false", "model.bbox_head.loss_cls.use_sigmoid: only true is implemented"),
                            ("model.train_cfg.pos_weight=2", "model.train_cfg.pos_weight: only -1 is implemented"),
                            ("model.train_cfg.allowed_border=-2", "model.train_cfg.allowed_border"),
                            ("model.train_cfg.sampler.type=\"RandomSampler\"", "model.train_cfg.sampler.type"),
                            ("model.train_cfg.debug=true", "model.train_cfg.debug: only false is implemented"),
                            ("model.test_cfg.typo=1", "unknown key model.test_cfg.typo"),
                            ("optimizer_config.grad_clip.norm_type=1", "optimizer_config.grad_clip.norm_type: only 2 is implemented")] {
            let c = try Config.load(path: path, overrides: [o])
            XCTAssertThrowsError(try { try DetectionConfig.validate(c); _ = try DetectionConfig.buildModel(c) }(), o) {
                XCTAssertTrue("\($0)".contains(needle), "\(o): \($0)")
                XCTAssertTrue("\($0)".hasPrefix("--set"), "names the override: \($0)")
            }
        }
    }

    /// Mask R-CNN configs that cannot work are refused before any work, naming the key.
    func testInconsistentMaskRCNNConfigsAreRefused() throws {
        let path = ConfigTests.packageRoot + "/configs/mask_rcnn/mask_rcnn_acmix_resnet26_fpn_shapes.json"
        for (o, needle) in [("model.type=FasterRCNN", "model.roi_head.mask_head: makes the model a MaskRCNN"),
                            ("model.roi_head.mask_head.num_classes=3", "model.roi_head.mask_head.num_classes: 3 but the bbox head has 4"),
                            ("model.train_cfg.rcnn.mask_size=14", "model.train_cfg.rcnn.mask_size: 14 but the mask head predicts 28"),
                            ("model.roi_head.mask_head.roi_feat_size=7", "model.train_cfg.rcnn.mask_size: 28 but the mask head predicts 14"),
                            ("model.roi_head.mask_roi_extractor.roi_layer.output_size=7",
                             "model.roi_head.mask_head.roi_feat_size: must equal mask_roi_extractor.roi_layer.output_size")] {
            XCTAssertThrowsError(try DetectionConfig.buildModel(try DetectionConfig.load(path: path, overrides: [o])), o) {
                XCTAssertTrue("\($0)".contains(needle), "\(o): \($0)")
            }
        }
        let faster = ConfigTests.packageRoot + "/configs/faster_rcnn/faster_rcnn_acmix_resnet26_fpn_shapes.json"
        for (o, needle) in [("evaluation.metric=[\"bbox\", \"segm\"]", "evaluation.metric: segm needs a detector that predicts masks"),
                            ("model.test_cfg.rcnn.mask_thr_binary=0.5", "model.test_cfg.rcnn.mask_thr_binary: is for a mask head")] {
            XCTAssertThrowsError(try { () throws -> Void in
                let c = try DetectionConfig.load(path: faster, overrides: [o])
                _ = try DetectionTask(config: c, detector: try DetectionConfig.buildModel(c))
            }(), o) { XCTAssertTrue("\($0)".contains(needle), "\(o): \($0)") }
        }
    }

    /// Numbers outside their range are refused with the key named (they used to crash or run forever).
    func testOutOfRangeNumbersAreRefused() throws {
        let path = ConfigTests.packageRoot + "/configs/retinanet/retinanet_acmix_resnet26_fpn_shapes.json"
        for (o, needle) in [("data.samples_per_gpu=0", "data.samples_per_gpu: must be at least 1, got 0"),
                            ("data.size_divisor=0", "data.size_divisor: must be in 1...1024, got 0"),
                            ("data.shapes.train_count=0", "data.shapes.train_count: must be at least 1, got 0"),
                            ("data.workers_per_gpu=-1", "data.workers_per_gpu: must be in 0...64, got -1"),
                            ("runner.max_iters=-1", "runner.max_iters: must be at least 1, got -1"),
                            ("data.shapes.size=16", "data.shapes.size: must be in 32...4096, got 16"),
                            ("optimizer.lr=1e999", "optimizer.lr: must be a finite number"),
                            ("model.bbox_head.num_classes=0", "model.bbox_head.num_classes: must be at least 1, got 0")] {
            XCTAssertThrowsError(try DetectionConfig.load(path: path, overrides: [o]), o) {
                XCTAssertTrue("\($0)".contains(needle), "\(o): \($0)")
            }
        }
    }
}
