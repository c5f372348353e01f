import Config
import Data
import Engine
import Foundation
import Heads
import NN
import Tasks
import Training
import XCTest

/// A dense head defined outside the library: one 1×1 classifier on every level; its loss pulls every logit
/// towards `target`. Predicts nothing.
final class ToyDenseHead: Module, DenseHead {
    let conv_cls: Conv2d
    let target: Float
    let numClasses: Int
    init(inChannels: Int, numClasses: Int, target: Float) {
        conv_cls = Conv2d(inChannels, numClasses, kernelSize: 1)
        self.numClasses = numClasses
        self.target = target
    }
    func loss(_ feats: [Tensor], targets: [DetectionTarget]) -> [(String, Tensor)] {
        [("loss_toy", feats.map { (conv_cls($0) - target).pow(2).mean() }.reduce(Tensor(zeros: []), +))]
    }
    func predict(_ feats: [Tensor], imgShapes: [(height: Int, width: Int)], scaleFactors: [[Float]]) -> [ImageDetections] {
        imgShapes.map { _ in ImageDetections() }
    }
}

/// A decode head defined outside the library: `conv_seg` straight on the finest level.
final class ToyDecodeHead: Module, SegmentationDecodeHead {
    let conv_seg: Conv2d
    let numClasses: Int
    var lossDecode = SegmentationLoss()
    var convSegInitStd: Float?
    init(inChannels: Int, numClasses: Int) {
        conv_seg = Conv2d(inChannels, numClasses, kernelSize: 1)
        self.numClasses = numClasses
    }
    func callAsFunction(_ levels: [Tensor]) -> Tensor { conv_seg(levels[0]) }
}

final class RegistryTests: XCTestCase {
    func workDir() -> String { NSTemporaryDirectory() + "acmix-registry-\(UUID().uuidString)" }

    static let trainer = #"""
    "seed": 1, "optimizer": {"type": "SGD", "lr": 0.1}, "runner": {"type": "IterBasedRunner", "max_iters": 1},
    "log_config": {"interval": 1}, "evaluation": {"interval": 100}, "checkpoint_config": {"interval": 100}
    """#

    /// Trains one step; returns the parameters of `key`'s module before and after.
    func oneStep(_ task: TrainingTask, _ cfg: Config, _ key: String) throws -> ([Float], [Float], Trainer) {
        let before = task.model.stateDict()[key]!.array
        let trainer = try Trainer(settings: try TrainerSettings(config: cfg), task: task, workDir: workDir())
        trainer.showProgress = false
        trainer.hooks = [LoggerHook()]   // no evaluation: the toy heads predict nothing useful
        try trainer.run()
        return (before, task.model.stateDict()[key]!.array, trainer)
    }

    func detConfig() throws -> Config {
        try Config(json: try JSON.parse("""
        {\(Self.trainer),
         "model": {"type": "RetinaNet", "backbone": {"arch": "resnet50", "base_width": 8},
                   "neck": {"type": "FPN", "out_channels": 16, "start_level": 1, "num_outs": 3},
                   "bbox_head": {"type": "ToyHead", "num_classes": 3, "target": 0.5}},
         "data": {"dataset": "shapes", "samples_per_gpu": 2, "img_scale": [64, 64], "shapes": {"size": 64, "train_count": 2, "val_count": 1, "root": "\(NSTemporaryDirectory())acmix-shapes-\(UUID().uuidString)"}}}
        """))
    }

    func segConfig() throws -> Config {
        try Config(json: try JSON.parse("""
        {\(Self.trainer),
         "model": {"type": "EncoderDecoder", "backbone": {"arch": "resnet50", "base_width": 8},
                   "decode_head": {"type": "ToyDecodeHead", "num_classes": 5}},
         "data": {"dataset": "shapes", "samples_per_gpu": 2, "img_scale": [64, 64], "crop_size": [64, 64],
                  "shapes": {"size": 64, "train_count": 2, "val_count": 1, "root": "\(NSTemporaryDirectory())acmix-shapes-\(UUID().uuidString)"}}}
        """))
    }

    func testANewDenseHeadRegistersBuildsFromJSONAndTrains() throws {
        Registries.denseHeads.register("ToyHead", fields: [
            .init("num_classes", .positiveInt, required: true), .init("target", .number, default: 0),
        ]) { c, context in
            ToyDenseHead(inChannels: context.inChannels, numClasses: try c.int("num_classes"), target: Float(try c.double("target")))
        }
        let cfg = try detConfig()
        try DetectionConfig.validate(cfg)
        let detector = try DetectionConfig.buildModel(cfg)
        let head = try XCTUnwrap((detector as? SingleStageDetector)?.bbox_head as? ToyDenseHead)
        XCTAssertEqual(head.target, 0.5)
        XCTAssertEqual(head.conv_cls.weight.shape, [3, 16, 1, 1], "the neck's channels reach the head")
        XCTAssertTrue(detector.stateDict().keys.contains("bbox_head.conv_cls.weight"))
        let (before, after, trainer) = try oneStep(try DetectionTask(config: cfg, detector: detector), cfg, "bbox_head.conv_cls.weight")
        XCTAssertEqual(trainer.lossHistory.count, 1)
        XCTAssertTrue(trainer.lossHistory[0].isFinite && trainer.lossHistory[0] > 0)
        XCTAssertNotEqual(before, after, "one SGD step moved the toy head")
        XCTAssertEqual(cfg.unreadKeys().filter { $0.hasPrefix("model.") }, [], "the toy head's keys are all read")
        // Its schema is enforced like a built-in head's.
        var bad = try detConfig()
        try bad.set("model.bbox_head.typo", 1)
        XCTAssertThrowsError(try DetectionConfig.validate(bad)) { XCTAssertTrue("\($0)".contains("unknown key model.bbox_head.typo"), "\($0)") }
    }

    func testANewDecodeHeadRegistersBuildsFromJSONAndTrains() throws {
        Registries.decodeHeads.register("ToyDecodeHead", fields: [.init("num_classes", .positiveInt, required: true)]) { c, context in
            ToyDecodeHead(inChannels: context.inChannels[0], numClasses: try c.int("num_classes"))
        }
        let cfg = try segConfig()
        try SegmentationConfig.validate(cfg)
        let model = try SegmentationConfig.buildModel(cfg)
        XCTAssertTrue(model.stateDict().keys.contains("decode_head.conv_seg.weight"))
        XCTAssertEqual(model.numClasses, 5)
        let (before, after, trainer) = try oneStep(try SegmentationTask(config: cfg, segmentor: model), cfg, "decode_head.conv_seg.weight")
        XCTAssertEqual(trainer.lossHistory.count, 1)
        XCTAssertTrue(trainer.lossHistory[0].isFinite && trainer.lossHistory[0] > 0)
        XCTAssertNotEqual(before, after)
    }

    func testUnknownTypesNameTheKindAndTheKnownOnes() throws {
        var c = try detConfig()
        try c.set("model.neck.type", "BiFPN")
        XCTAssertThrowsError(try Registries.detectors.build(c.section("model"))) {
            XCTAssertTrue("\($0)".contains("model.neck.type: unknown type 'BiFPN'; known: FPN"), "\($0)")
        }
        XCTAssertThrowsError(try Registries.necks.build(c.section("model.neck"), NeckContext(inChannels: [8]))) {
            XCTAssertTrue("\($0)".contains("model.neck.type: unknown neck 'BiFPN'; known: FPN"), "\($0)")
        }
    }

    /// Anchor strides must give one per neck level and ratios at least one (an empty list crashed in the head, a
    /// short one trained on misplaced anchors); a RoI extractor may not list more strides than the neck has levels.
    func testPerLevelSettingsMustMatchTheNeck() throws {
        let retina = try Config.load(path: ConfigTests.packageRoot + "/configs/retinanet/retinanet_acmix_resnet26_fpn_shapes.json")
        func message(_ key: String, _ value: JSON, _ base: Config? = nil) throws -> String {
            var c = base ?? retina
            try c.set(key, value)
            do { _ = try Registries.detectors.build(c.section("model")); return "no error" } catch { return "\(error)" }
        }
        var m = try message("model.bbox_head.anchor_generator.strides", [8, 16])
        XCTAssertTrue(m.contains("model.bbox_head.anchor_generator.strides: lists 2 strides, but the neck gives 5 feature levels"), m)
        m = try message("model.neck.num_outs", 4)
        XCTAssertTrue(m.contains("lists 5 strides, but the neck gives 4 feature levels"), m)
        m = try message("model.bbox_head.anchor_generator.ratios", [])
        XCTAssertTrue(m.contains("model.bbox_head.anchor_generator.ratios: must list at least one aspect ratio"), m)
        let mask = try Config.load(path: ConfigTests.packageRoot + "/configs/mask_rcnn/mask_rcnn_acmix_resnet26_fpn_shapes.json")
        m = try message("model.roi_head.bbox_roi_extractor.featmap_strides", [4, 8, 16, 32, 64, 128], mask)
        XCTAssertTrue(m.contains("model.roi_head.bbox_roi_extractor.featmap_strides: lists 6 strides, but the neck gives 5 feature levels"), m)
        m = try message("model.roi_head.bbox_roi_extractor.featmap_strides", [], mask)
        XCTAssertTrue(m.contains("featmap_strides: must list one stride per feature level, got none"), m)
    }

    /// mmdet's Swin `out_indices`: only those stages come out, each with its norm, so mmdet's RetinaNet-Swin
    /// checkpoints (no norm0) load by name.
    func testSwinOutIndices() throws {
        let c = try Config(json: try JSON.parse(#"{"backbone": {"arch": "swin_tiny", "out_indices": [1, 2, 3]}}"#))
        let swin = try Registries.backbones.build(c.section("backbone"))
        XCTAssertEqual(swin.featureChannels, [192, 384, 768])
        XCTAssertEqual(swin.featureNames, ["stage2", "stage3", "stage4"])
        let keys = Set(swin.stateDict().keys)
        XCTAssertFalse(keys.contains("norm0.weight"))
        XCTAssertTrue(keys.contains("norm1.weight") && keys.contains("norm3.bias"))
        XCTAssertEqual(withNoGrad { swin.features(Tensor(zeros: [1, 3, 64, 64])) }.map(\.shape), [[1, 192, 8, 8], [1, 384, 4, 4], [1, 768, 2, 2]])
        var bad = c
        try bad.set("backbone.out_indices", [2, 1])
        XCTAssertThrowsError(try Registries.backbones.build(bad.section("backbone"))) { XCTAssertTrue("\($0)".contains("increasing order"), "\($0)") }
    }

    /// A batch larger than the training set gives no batch at all: refused naming the key, for both tasks.
    func testBatchLargerThanTheDatasetIsRefused() throws {
        var det = try detConfig()
        try det.set("data.samples_per_gpu", 3)
        XCTAssertThrowsError(try DetectionTask(config: det, detector: try DetectionConfig.buildModel(det))) {
            XCTAssertTrue("\($0)".hasSuffix("data.samples_per_gpu: 3 is more than the 2 training images"), "\($0)")
        }
        Registries.decodeHeads.register("ToyDecodeHead", fields: [.init("num_classes", .positiveInt, required: true)]) { c, context in
            ToyDecodeHead(inChannels: context.inChannels[0], numClasses: try c.int("num_classes"))
        }
        var seg = try segConfig()
        try seg.set("data.samples_per_gpu", 5)
        XCTAssertThrowsError(try SegmentationTask(config: seg, segmentor: try SegmentationConfig.buildModel(seg))) {
            XCTAssertTrue("\($0)".hasSuffix("data.samples_per_gpu: 5 is more than the 2 training images"), "\($0)")
        }
    }
}
