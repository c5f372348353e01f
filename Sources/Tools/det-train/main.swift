import ArgumentParser
import Backbones
import Data
import Engine
import Evaluation
import Foundation
import Heads
import NN
import Training

/// The built-in config: RetinaNet on the synthetic shapes dataset, small enough for a 2-core machine.
let defaultConfig = "configs/retinanet/retinanet_acmix_resnet26_fpn_shapes.json"

struct DetTrain: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "det-train",
        abstract: "Train a detector from a JSON config (mmdet semantics): checkpoints, log.jsonl, curves.png in the work dir.")

    @OptionGroup var options: TrainOptions

    func run() throws {
        if let code = try TrainTool.exitCode(tool: "det-train", train) { throw ExitCode(code) }
    }

    func train() throws {
        // Everything that can be wrong with the config is found here, before any work.
        let cfg = try DetectionConfig.load(path: options.resolvedConfig(default: defaultConfig), overrides: options.overrides)
        if let loadFrom = options.loadFrom, !FileManager.default.fileExists(atPath: loadFrom) { throw ConfigError("--load-from: file not found: \(loadFrom)") }
        if options.dryRun { print(cfg.serialized(), terminator: ""); return }
        let settings = try TrainerSettings(config: cfg)
        EngineRandom.seed(settings.seed)
        let detector = try DetectorRegistry.build(cfg)
        if let d = detector as? SingleStageDetector {
            // The largest padded input the pipeline makes must suit the backbone (ACmix needs maps > its window).
            let scale = try cfg.ints("data.img_scale", default: [1333, 800]), div = try cfg.int("data.size_divisor", default: 32)
            let side = { (x: Int) in (x + div - 1) / div * div }
            let (long, short) = (side(max(scale[0], scale[1])), side(min(scale[0], scale[1])))
            do { try d.backbone.validate(height: short, width: long) } catch {
                throw ConfigError("\(cfg.source(of: "data.img_scale")): data.img_scale: \(error)")
            }
        }
        if let loadFrom = options.loadFrom {
            let report = try Checkpoint.loadWeights(from: loadFrom, into: detector)
            FileHandle.standardError.write(Data("loaded \(report.loaded.count) tensors from \(loadFrom)\n".utf8))
            for line in report.problems(limit: 8) { FileHandle.standardError.write(Data("  \(line)\n".utf8)) }
        }

        let dir = try TrainTool.prepareWorkDir(options.workDir, configPath: options.config ?? defaultConfig, config: cfg)

        if try cfg.string("data.dataset") == "coco" {
            let setup = try COCODetectionSetup(config: cfg)
            try train(try setup.task(config: cfg, detector: detector), valAnnotations: setup.valAnnotationPath,
                      config: cfg, settings: settings, dir: dir)
        } else {
            // Built-in dataset: generated in memory; the files (COCO json for the evaluator) are written once.
            let setup = try ShapesDetectionSetup(config: cfg)
            let root = try cfg.string("data.shapes.root", default: "data/shapes")
            if !FileManager.default.fileExists(atPath: "\(root)/annotations/instances_val.json") {
                FileHandle.standardError.write(Data("writing the shapes dataset to \(root)\n".utf8))
                try ShapesDatasetWriter(generator: setup.train.generator, trainCount: setup.train.count, valCount: setup.val.count)
                    .write(to: root)
            }
            try train(try setup.task(config: cfg, detector: detector), valAnnotations: "\(root)/annotations/instances_val.json",
                      config: cfg, settings: settings, dir: dir)
        }
    }

    func train<T, V>(_ task: DetectionTask<T, V>, valAnnotations: String, config cfg: Config, settings: TrainerSettings, dir: String) throws {
        task.resultsPath = "\(dir)/results_val.json"
        task.evaluator = makeEvaluator(annotations: valAnnotations)
        let trainer = try Trainer(settings: settings, task: task, workDir: dir)
        let maxIters = settings.maxIters(itersPerEpoch: task.itersPerEpoch)
        FileHandle.standardError.write(Data(("det-train: \(cfg.path), \(maxIters) iterations (\(task.itersPerEpoch)/epoch), "
            + "\(task.detector.trainableParameters().reduce(0) { $0 + $1.1.count }) trainable parameters, work dir \(dir)\n").utf8))
        let summary = try trainer.run(resume: options.resume)
        print(TrainTool.summaryLine(summary))
    }
}

/// The COCO evaluator: pycocotools' COCOeval (bbox) of the detections against the validation ground truth
/// (read once), printing the standard 12-line summary.
func makeEvaluator(annotations path: String) -> DetectionEvaluator? {
    var groundTruth: COCODataset?
    return { imageIDs, detections in
        let gt = try groundTruth ?? COCODataset.load(path)
        groundTruth = gt
        var results: [COCOResult] = []
        for (id, d) in zip(imageIDs, detections) {
            for k in 0..<d.count {
                let b = d.boxes[(4 * k)..<(4 * k + 4)].map(Double.init)
                results.append(COCOResult(imageId: id, categoryId: gt.categoryId(forLabel: d.labels[k]), score: Double(d.scores[k]),
                                          bbox: BBox(x: b[0], y: b[1], w: b[2] - b[0], h: b[3] - b[1])))
            }
        }
        // An evaluation with no detections at all scores 0 everywhere (pycocotools refuses an empty result list).
        guard !results.isEmpty else { return [Double](repeating: 0, count: 12) }
        let e = COCOeval(cocoGt: gt, cocoDt: try gt.loadRes(results), iouType: .bbox)
        e.evaluate()
        e.accumulate()
        FileHandle.standardError.write(Data((e.summarize().joined(separator: "\n") + "\n").utf8))
        return e.stats
    }
}

DetTrain.main()
