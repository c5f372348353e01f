import Backbones
import Config
import Data
import Engine
import Foundation
import Heads
import NN
import Tasks
import Training
import XCTest

/// A tiny RetinaNet (plain ResNet, one block per stage, width 8; 32-channel FPN and head) for fast tests.
func tinyDetector(numClasses: Int = 4, seed: UInt64 = 0) -> SingleStageDetector {
    EngineRandom.seed(seed)
    let backbone = ResNet(layers: [1, 1, 1, 1], acmix: nil, numClasses: nil, baseWidth: 8)
    let neck = FPN(inChannels: backbone.featureChannels, outChannels: 32, numOuts: 5, startLevel: 1, addExtraConvs: .onInput,
                   reluBeforeExtraConvs: true)
    return SingleStageDetector(backbone: backbone, neck: neck, head: RetinaHead(numClasses: numClasses, inChannels: 32, featChannels: 32,
                                                                                stackedConvs: 2))
}

func trainerConfig(_ extra: String = "", iterations: Int = 150) throws -> Config {
    try Config(json: try JSON.parse("""
    {"seed": 3, "optimizer": {"type": "AdamW", "lr": 0.002, "weight_decay": 0.0},
     "lr_config": {"policy": "constant"}, "runner": {"type": "IterBasedRunner", "max_iters": \(iterations)},
     "checkpoint_config": {"interval": 1000}, "log_config": {"interval": 10}, "evaluation": {"interval": 1000}\(extra)}
    """))
}

/// Always the same batch: for the overfit test.
final class FixedBatchTask: TrainingTask {
    let detector: any Detector
    let images: Tensor
    let targets: [DetectionTarget]
    var model: Module { detector }
    var itersPerEpoch: Int { 1 }
    init(detector: any Detector, images: Tensor, targets: [DetectionTarget]) {
        self.detector = detector; self.images = images; self.targets = targets
    }
    func prepare(startIteration: Int) throws {}
    func losses(iteration: Int) throws -> [(String, Tensor)] { detector.lossTerms(images, targets: targets) }
    func evaluate(iteration: Int) throws -> [(String, Double)] { [] }
}

/// Two 64×64 shapes images through the test pipeline (no flip): the overfit tests' one fixed batch.
func fixedShapesBatch() -> (inputs: [DetectionInput], images: Tensor, targets: [DetectionTarget]) {
    let gen = ShapesGenerator(size: 64, seed: 5)
    let pipeline = DetectionPipeline(imgScale: (64, 64), flipRatio: 0, training: false)
    var rng = SplitMix64(seed: 0)
    let inputs = (0..<2).map { pipeline(gen.example(split: 0, index: $0).detectionSample(filename: "\($0)"), rng: &rng) }
    let (images, targets) = DetectionTask.tensors(Batch(indices: [0, 1], items: inputs))
    return (inputs, images, targets)
}

/// Trains `detector` on the fixed batch for `iterations` and checks that the loss fell at least 10×; returns the
/// detections on the batch afterwards (eval mode).
func overfit(_ detector: any Detector, iterations: Int, workDir: String) throws -> (targets: [DetectionTarget], detections: [ImageDetections]) {
    let (inputs, images, targets) = fixedShapesBatch()
    let task = FixedBatchTask(detector: detector, images: images, targets: targets)
    let trainer = try Trainer(settings: try TrainerSettings(config: try trainerConfig(iterations: iterations)), task: task, workDir: workDir)
    trainer.showProgress = false
    try trainer.run()
    let first = trainer.lossHistory[0], last = trainer.lossHistory.suffix(5).reduce(0, +) / 5
    XCTAssertGreaterThan(first / last, 10, "loss \(first) → \(last)")
    detector.eval()
    return (targets, detector.predict(images, imgShapes: inputs.map { $0.meta.imgShape }, scaleFactors: inputs.map { $0.meta.scaleFactor },
                                      oriShapes: inputs.map { $0.meta.oriShape }))
}

final class TrainingTests: XCTestCase {
    func workDir() -> String { NSTemporaryDirectory() + "acmix-train-\(UUID().uuidString)" }

    func testModuleKeysFollowMMDet() {
        let d = tinyDetector()
        let keys = Set(d.stateDict().keys)
        for k in ["backbone.conv1.weight", "backbone.layer4.0.bn3.running_var", "neck.lateral_convs.0.conv.weight",
                  "neck.lateral_convs.2.conv.bias", "neck.fpn_convs.0.conv.weight", "neck.fpn_convs.4.conv.weight",
                  "bbox_head.cls_convs.0.conv.weight", "bbox_head.reg_convs.1.conv.bias", "bbox_head.retina_cls.weight",
                  "bbox_head.retina_reg.bias"] {
            XCTAssertTrue(keys.contains(k), k)
        }
        XCTAssertFalse(keys.contains("neck.lateral_convs.3.conv.weight"))
        // on_input: the first extra conv reads C5 (32·8 = 256 channels here).
        XCTAssertEqual(d.neck.namedTensors().first { $0.0 == "fpn_convs.3.conv.weight" }?.1.shape, [32, 256, 3, 3])
        let bias = (d.bbox_head as! RetinaHead).retina_cls.bias!
        XCTAssertEqual(bias[flat: 0], -Foundation.log(99), accuracy: 1e-5)
        XCTAssertEqual(bias.shape, [9 * 4])
    }

    func testFPNShapesForResNetAndSwinChannels() {
        EngineRandom.seed(1)
        for channels in [[32, 64, 128, 256], [96, 192, 384, 768]] {
            let strides = [4, 8, 16, 32]
            let inputs = zip(channels, strides).map { Tensor(zeros: [1, $0, 64 / $1, 64 / $1], value: 0.1) }
            for extra in [FPN.ExtraConvs.onInput, .onLateral, .onOutput, FPN.ExtraConvs.none] {
                let fpn = FPN(inChannels: channels, outChannels: 16, numOuts: 5, startLevel: 1, addExtraConvs: extra,
                              reluBeforeExtraConvs: true)
                let outs = withNoGrad { fpn(inputs) }
                XCTAssertEqual(outs.map(\.shape), [[1, 16, 8, 8], [1, 16, 4, 4], [1, 16, 2, 2], [1, 16, 1, 1], [1, 16, 1, 1]])
            }
            let p2 = FPN(inChannels: channels, outChannels: 8, numOuts: 4)
            XCTAssertEqual(withNoGrad { p2(inputs) }.map { $0.shape[2] }, [16, 8, 4, 2])
        }
    }

    /// A few shapes images, one fixed batch: the total loss falls at least 10x, and the detections on the training
    /// image then cover its boxes.
    func testTinyOverfit() throws {
        let (targets, dets) = try overfit(tinyDetector(), iterations: 150, workDir: workDir())
        for (d, t) in zip(dets, targets) {
            for g in 0..<t.labels.count {
                let gt = Array(t.boxes[(4 * g)..<(4 * g + 4)])
                var best: Float = 0
                for i in 0..<d.count where d.labels[i] == t.labels[g] {
                    let box = Array(d.boxes[(4 * i)..<(4 * i + 4)])
                    best = max(best, bboxOverlaps(gt, box)[0])
                }
                XCTAssertGreaterThan(best, 0.5, "gt \(gt) label \(t.labels[g]) not found in \(d.count) detections")
            }
        }
    }

    /// A tiny Mask R-CNN (the shapes config on a width-8 ResNet) on one fixed batch: the total loss falls at least
    /// 10x, and each training object is then found with its class, a box of IoU > 0.5 and a mask of IoU > 0.5.
    func testTinyMaskRCNNOverfits() throws {
        let path = ConfigTests.packageRoot + "/configs/mask_rcnn/mask_rcnn_acmix_resnet26_fpn_shapes.json"
        let cfg = try DetectionConfig.load(path: path, overrides: ["model.backbone.arch=resnet50", "model.backbone.base_width=8"])
        EngineRandom.seed(0)
        let detector = try DetectionConfig.buildModel(cfg)
        XCTAssertTrue(detector.predictsMasks)
        let (targets, dets) = try overfit(detector, iterations: 200, workDir: workDir())
        XCTAssertNotNil(targets[0].masks)
        for (d, t) in zip(dets, targets) {
            let masks = try XCTUnwrap(d.masks)
            for g in 0..<t.labels.count {
                let gt = Array(t.boxes[(4 * g)..<(4 * g + 4)]), gtMask = t.masks![g].data
                // The RPN's smallest anchors are 32 px: an object under 16 px a side reaches IoU 0.3 with none, so
                // mmdet's assigner (min_pos_iou 0.3) never makes it a positive and it cannot be learned.
                if gt[2] - gt[0] < 16 || gt[3] - gt[1] < 16 { continue }
                var bestBox: Float = 0, bestMask: Float = 0
                for i in 0..<d.count where d.labels[i] == t.labels[g] {
                    bestBox = max(bestBox, bboxOverlaps(gt, Array(d.boxes[(4 * i)..<(4 * i + 4)]))[0])
                    let m = masks[i].bitmap()
                    let inter = zip(m, gtMask).filter { $0 == 1 && $1 == 1 }.count, union = zip(m, gtMask).filter { $0 == 1 || $1 == 1 }.count
                    bestMask = max(bestMask, Float(inter) / Float(max(union, 1)))
                }
                XCTAssertGreaterThan(bestBox, 0.5, "gt \(gt) label \(t.labels[g]): no box")
                XCTAssertGreaterThan(bestMask, 0.5, "gt \(gt) label \(t.labels[g]): no mask")
            }
        }
    }

    /// N iterations straight vs N/2, a fresh process state, resume, N/2: identical losses and weights, bit for bit.
    func testCheckpointResumeIsExact() throws {
        let cfg = try Config(json: try JSON.parse("""
        {"seed": 7, "optimizer": {"type": "SGD", "lr": 0.01, "momentum": 0.9, "weight_decay": 0.0001},
         "optimizer_config": {"grad_clip": {"max_norm": 10}},
         "lr_config": {"policy": "step", "step": [5], "warmup": "linear", "warmup_iters": 3},
         "runner": {"type": "IterBasedRunner", "max_iters": 8}, "checkpoint_config": {"interval": 100},
         "log_config": {"interval": 2}, "evaluation": {"interval": 100},
         "data": {"dataset": "shapes", "samples_per_gpu": 2, "workers_per_gpu": 1, "img_scale": [64, 64],
                  "shapes": {"size": 64, "train_count": 6, "val_count": 2, "root": "\(NSTemporaryDirectory())acmix-shapes-\(UUID().uuidString)"}}}
        """))
        let settings = try TrainerSettings(config: cfg)
        func run(_ dir: String, seed: UInt64, stopAfter: Int?, resume: Bool) throws -> (Trainer, SingleStageDetector) {
            let detector = tinyDetector(seed: seed)
            let trainer = try Trainer(settings: settings, task: try DetectionTask(config: cfg, detector: detector), workDir: dir)
            trainer.showProgress = false
            trainer.stopAfter = stopAfter
            try trainer.run(resume: resume)
            return (trainer, detector)
        }
        let straightDir = workDir(), splitDir = workDir()
        let (straight, a) = try run(straightDir, seed: 0, stopAfter: nil, resume: false)
        let (first, _) = try run(splitDir, seed: 0, stopAfter: 4, resume: false)
        // The resumed run starts from different random weights: everything must come from the checkpoint.
        let (second, b) = try run(splitDir, seed: 99, stopAfter: nil, resume: true)
        XCTAssertEqual(straight.lossHistory.count, 8)
        XCTAssertEqual(first.lossHistory + second.lossHistory, straight.lossHistory)
        let sa = a.stateDict(), sb = b.stateDict()
        for (k, t) in sa { XCTAssertEqual(t.array, sb[k]!.array, k) }
        // The split run's log reads as one run.
        let log = try String(contentsOfFile: "\(splitDir)/log.jsonl", encoding: .utf8).split(separator: "\n")
        let lossEntries = log.compactMap { try? JSON.parse(String($0)) }.filter { $0["lr"] != nil }
        XCTAssertEqual(lossEntries.compactMap { $0["iter"]?.intValue }, [2, 4, 6, 8])
        XCTAssertTrue(FileManager.default.fileExists(atPath: "\(splitDir)/curves.png"))
        // A resume with nothing to resume from is a clear error.
        XCTAssertThrowsError(try run(workDir(), seed: 0, stopAfter: nil, resume: true)) { XCTAssertTrue("\($0)".contains("no checkpoint")) }
    }

    /// A stand-in evaluator whose bbox_mAP follows a script, to check logging and best-keeping.
    final class ScriptedEvaluator: DetectionEvaluator {
        var calls = 0
        let metricNames = ["bbox_mAP", "bbox_mAP_50"]
        func evaluate(_ ids: [Int], _ dets: [ImageDetections], printSummary: Bool) throws -> [(String, Double)] {
            XCTAssertEqual(ids, [1, 2, 3])
            XCTAssertEqual(dets.count, 3)
            calls += 1
            return [("bbox_mAP", [0.2, 0.5, 0.4][calls - 1]), ("bbox_mAP_50", 0.9)]
        }
    }

    /// det-train's evaluation hands the evaluator every val image's id and detections; its metrics are logged by
    /// name, best.safetensors follows the best bbox_mAP, and the results file holds the detections.
    func testEvaluatorMetricsAreLoggedAndBestIsKept() throws {
        let cfg = try Config(json: try JSON.parse("""
        {"optimizer": {"type": "SGD", "lr": 0.001}, "runner": {"type": "IterBasedRunner", "max_iters": 6},
         "log_config": {"interval": 3}, "evaluation": {"interval": 2, "save_best": "bbox_mAP"},
         "data": {"dataset": "shapes", "samples_per_gpu": 2, "img_scale": [64, 64],
                  "shapes": {"size": 64, "train_count": 4, "val_count": 3, "root": "\(NSTemporaryDirectory())acmix-shapes-\(UUID().uuidString)"}}}
        """))
        let detector = tinyDetector()
        (detector.bbox_head as! RetinaHead).testConfig.scoreThr = 0.001   // the prior (0.01) then yields detections
        let task = try DetectionTask(config: cfg, detector: detector)
        let dir = workDir()
        task.resultsPath = "\(dir)/results.json"
        let evaluator = ScriptedEvaluator()
        task.evaluator = evaluator
        var seen: [ImageDetections] = []
        task.onDetections = { _, dets in seen = dets }
        let trainer = try Trainer(settings: try TrainerSettings(config: cfg), task: task, workDir: dir)
        trainer.showProgress = false
        try trainer.run()
        XCTAssertEqual(evaluator.calls, 3)
        let log = try String(contentsOfFile: "\(dir)/log.jsonl", encoding: .utf8).split(separator: "\n").map { try JSON.parse(String($0)) }
        let evals = log.filter { $0["bbox_mAP"] != nil }
        XCTAssertEqual(evals.compactMap { $0["iter"]?.intValue }, [2, 4, 6])
        XCTAssertEqual(evals[1]["bbox_mAP_50"]?.doubleValue, 0.9)
        let best = try Checkpoint.restore(from: "\(dir)/best.safetensors", model: tinyDetector(), optimizer: nil)
        XCTAssertEqual(best.iteration, 4)
        XCTAssertEqual(best.bestMetric, 0.5)
        // The results file is the last evaluation's detections, COCO style: [x, y, w, h], category ids 1...4.
        let results = try JSON.load(path: "\(dir)/results.json").arrayValue ?? []
        XCTAssertEqual(results.count, seen.reduce(0) { $0 + $1.count })
        XCTAssertGreaterThan(results.count, 0)
        for (r, k) in zip(results, seen.flatMap { d in (0..<d.count).map { (d, $0) } }) {
            let (d, i) = k
            let b = r["bbox"]?.arrayValue?.compactMap(\.doubleValue) ?? []
            XCTAssertEqual(b.count, 4)
            XCTAssertEqual(b[2], Double(d.boxes[4 * i + 2] - d.boxes[4 * i]), accuracy: 1e-4)
            XCTAssertEqual(r["category_id"]?.intValue, d.labels[i] + 1)
            XCTAssertEqual(r["score"]?.doubleValue ?? -1, Double(d.scores[i]), accuracy: 1e-6)
        }
    }

    func testNonFiniteLossStopsAndKeepsCheckpoint() throws {
        final class NaNTask: TrainingTask {
            let detector = tinyDetector()
            var model: Module { detector }
            var itersPerEpoch: Int { 1 }
            func prepare(startIteration: Int) throws {}
            func losses(iteration: Int) throws -> [(String, Tensor)] {
                [("loss_x", detector.bbox_head.namedParameters()[0].1.sum() * (iteration >= 3 ? Float.nan : 0.0))]
            }
            func evaluate(iteration: Int) throws -> [(String, Double)] { [] }
        }
        let dir = workDir()
        let trainer = try Trainer(settings: try TrainerSettings(config: try trainerConfig()), task: NaNTask(), workDir: dir)
        trainer.showProgress = false
        XCTAssertThrowsError(try trainer.run()) { e in
            XCTAssertTrue("\(e)".contains("not finite at iteration 4"), "\(e)")
        }
        let ck = try Checkpoint.restore(from: "\(dir)/latest.safetensors", model: tinyDetector(), optimizer: nil)
        XCTAssertEqual(ck.iteration, 3)
    }
}
