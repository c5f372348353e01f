import Config
import Data
import Engine
import Foundation
import Heads
import NN
import Tasks
import TestSupport
import Training
import XCTest

/// det-infer and seg-infer run as processes on the release build: their outputs equal the library's predictors on
/// the same weights, and bad inputs are reported and skipped.
final class InferToolTests: XCTestCase {
    let root = ToolRunner.packageRoot.path

    /// A small model's config (the shipped shapes config narrowed by overrides) and random weights for it.
    func model(detection: Bool, _ dir: String) throws -> (config: String, overrides: [String], weights: String, Config) {
        try Self.model(detection: detection, dir)
    }

    static func model(detection: Bool, _ dir: String) throws -> (config: String, overrides: [String], weights: String, Config) {
        let root = ToolRunner.packageRoot.path
        let config = detection ? "\(root)/configs/retinanet/retinanet_acmix_resnet26_fpn_shapes.json"
            : "\(root)/configs/upernet/upernet_acmix_resnet26_shapes.json"
        var overrides = ["model.backbone.arch=resnet50", "model.backbone.base_width=8", "data.shapes.root=\(dir)/shapes"]
        if detection { overrides += ["model.test_cfg.score_thr=0.005", "data.img_scale=[96,96]"] }
        else { overrides += ["data.img_scale=[96,96]", "data.crop_size=[64,64]"] }
        let cfg = detection ? try DetectionConfig.loadForInference(path: config, overrides: overrides)
            : try SegmentationConfig.loadForInference(path: config, overrides: overrides)
        EngineRandom.seed(4)
        let module: Module = detection ? try DetectionConfig.buildModel(cfg) : try SegmentationConfig.buildModel(cfg)
        if detection {
            // Spread the classifier's scores so that some anchors pass the thresholds.
            let head = (module as! SingleStageDetector).bbox_head as! RetinaHead
            head.retina_cls.bias!.assign(Init.normal(head.retina_cls.bias!.shape, std: 2))
        }
        let weights = "\(dir)/weights.safetensors"
        try SafeTensors.write(module.namedTensors(), to: weights)
        return (config, overrides.flatMap { ["--set", $0] }, weights, cfg)
    }

    func images(_ dir: String) throws -> [String] {
        try FileManager.default.createDirectory(atPath: "\(dir)/imgs", withIntermediateDirectories: true)
        let gen = ShapesGenerator(size: 80, seed: 9)
        var paths: [String] = []
        for i in 0..<3 {
            var img = gen.example(split: 1, index: i).image
            if i == 1 { img = img.resized(width: 120, height: 70) }   // another size and aspect
            let p = "\(dir)/imgs/img\(i).png"
            try writePNG(img, to: p)
            paths.append(p)
        }
        try Data("not an image".utf8).write(to: URL(fileURLWithPath: "\(dir)/imgs/broken.png"))
        return paths
    }

    func testDetInferMatchesTheLibraryAndSkipsBadInputs() throws {
        let dir = try ToolRunner.temporaryDirectory("det-infer")
        let m = try model(detection: true, dir)
        let paths = try images(dir)
        let r = try ToolRunner.run("det-infer", ["--config", m.config, "--checkpoint", m.weights, "--out-dir", "\(dir)/out",
                                                 "--score-thr", "0"] + m.overrides + ["\(dir)/imgs", "\(dir)/missing.png"])
        XCTAssertEqual(r.status, 1, r.stderr)
        XCTAssertTrue(r.stderr.contains("broken.png: not a PNG or JPEG file"), r.stderr)
        XCTAssertTrue(r.stderr.contains("missing.png: no such file or folder"), r.stderr)
        XCTAssertTrue(r.stderr.contains("2 of 5 inputs could not be used"), r.stderr)

        let records = try XCTUnwrap(try JSON.load(path: "\(dir)/out/predictions.json").arrayValue)
        XCTAssertEqual(records.compactMap { $0["file_name"]?.stringValue }, paths)
        let detector = try DetectionConfig.buildModel(m.3)
        try Checkpoint.loadForInference(from: m.weights, into: detector)
        let predictor = DetectionPredictor(detector: detector, pipeline: try DetectionDatasets.testPipeline(m.3.section("data")))
        var total = 0
        for (path, record) in zip(paths, records) {
            let image = try readImage(path)
            XCTAssertEqual(record["width"]?.intValue, image.width)
            XCTAssertEqual(record["height"]?.intValue, image.height)
            let expected = predictor([image])[0]
            let dets = try XCTUnwrap(record["detections"]?.arrayValue)
            XCTAssertEqual(dets.count, expected.count, path)
            total += dets.count
            for (k, d) in dets.enumerated() where k < expected.count {
                let b = try XCTUnwrap(d["bbox"]?.arrayValue?.compactMap(\.doubleValue))
                XCTAssertEqual(b[0], Double(expected.boxes[4 * k]), accuracy: 1e-4)
                XCTAssertEqual(b[3], Double(expected.boxes[4 * k + 3] - expected.boxes[4 * k + 1]), accuracy: 1e-4)
                XCTAssertEqual(d["score"]?.doubleValue ?? -1, Double(expected.scores[k]), accuracy: 1e-6)
                XCTAssertEqual(d["category_id"]?.intValue, expected.labels[k] + 1)
                XCTAssertEqual(d["category"]?.stringValue, ShapeKind.allCases[expected.labels[k]].name)
            }
            XCTAssertTrue(FileManager.default.fileExists(atPath: "\(dir)/out/vis/\(((path as NSString).lastPathComponent as NSString).deletingPathExtension).png"))
        }
        XCTAssertGreaterThan(total, 0, "the spread-out classifier gives detections")
        // --score-thr filters what is written.
        let r2 = try ToolRunner.run("det-infer", ["--config", m.config, "--checkpoint", m.weights, "--out-dir", "\(dir)/out2",
                                                  "--score-thr", "0.5"] + m.overrides + [paths[0]])
        XCTAssertEqual(r2.status, 0, r2.stderr)
        let kept = try XCTUnwrap(try JSON.load(path: "\(dir)/out2/predictions.json").arrayValue?.first?["detections"]?.arrayValue)
        XCTAssertTrue(kept.allSatisfy { ($0["score"]?.doubleValue ?? 0) >= 0.5 })
        XCTAssertEqual(kept.count, predictor([try readImage(paths[0])])[0].scores.filter { $0 >= 0.5 }.count)
        // A mistyped folder, the only input: one line, and the earlier run's predictions stay as they were.
        let before = try Data(contentsOf: URL(fileURLWithPath: "\(dir)/out2/predictions.json"))
        let r3 = try ToolRunner.run("det-infer", ["--config", m.config, "--checkpoint", m.weights, "--out-dir", "\(dir)/out2"]
                                    + m.overrides + ["\(dir)/imgz"])
        XCTAssertEqual(r3.status, 1, r3.stderr)
        XCTAssertEqual(r3.stderr, "det-infer: error: \(dir)/imgz: no such file or folder\n")
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: "\(dir)/out2/predictions.json")), before)
    }

    func testSegInferMatchesTheLibraryWithAndWithoutTTA() throws {
        let dir = try ToolRunner.temporaryDirectory("seg-infer")
        let m = try model(detection: false, dir)
        let paths = try images(dir)
        let model = try SegmentationConfig.buildModel(m.3)
        try Checkpoint.loadForInference(from: m.weights, into: model)
        let predictor = SegmentationPredictor(segmentor: model, pipeline: try SegmentationDatasets.testPipeline(m.3.section("data")).pipeline)
        for aug in [false, true] {
            let out = "\(dir)/out\(aug)"
            let r = try ToolRunner.run("seg-infer", ["--config", m.config, "--checkpoint", m.weights, "--out-dir", out]
                                       + (aug ? ["--aug-test"] : []) + m.overrides + paths)
            XCTAssertEqual(r.status, 0, r.stderr)
            var differ = 0
            for (i, path) in paths.enumerated() {
                let image = try readImage(path)
                let written = try readLabelMap("\(out)/pred/img\(i).png")
                let expected = predictor(image, augment: aug)
                XCTAssertEqual(written.width, image.width)
                XCTAssertEqual(written.labels, expected.labels, "img\(i) aug \(aug)")
                differ += zip(predictor(image, augment: !aug).labels, expected.labels).filter { $0 != $1 }.count
                XCTAssertTrue(FileManager.default.fileExists(atPath: "\(out)/vis/img\(i).png"))
            }
            XCTAssertGreaterThan(differ, 0, "TTA changes some pixels of a random model")
        }
    }

    /// Without augmentation the predictor on source images scores exactly as the trainer's batched evaluation.
    func testPredictorEvaluationEqualsTheTrainersEvaluation() throws {
        let dir = try ToolRunner.temporaryDirectory("seg-pred-eval")
        let m = try model(detection: false, dir)
        let cfg = try Config.load(path: m.config, overrides: m.overrides.enumerated().filter { $0.offset % 2 == 1 }.map(\.element)
                                  + ["data.shapes.val_count=4"])
        let model = try SegmentationConfig.buildModel(cfg)
        try Checkpoint.loadForInference(from: m.weights, into: model)
        let task = try SegmentationTask(config: cfg, segmentor: model)
        let a = try evaluateSegmentation(model, loader: task.valLoader)
        let predictor = SegmentationPredictor(segmentor: model, pipeline: try SegmentationDatasets.testPipeline(cfg.section("data")).pipeline)
        let b = try evaluateSegmentation(predictor, dataset: task.data.val, augment: false)
        XCTAssertEqual(a.aAcc, b.aAcc)
        XCTAssertEqual(a.mIoU.isNaN ? -1 : a.mIoU, b.mIoU.isNaN ? -1 : b.mIoU)
    }
}
