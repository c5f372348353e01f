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
            try train(try setup.task(config: cfg, detector: detector), valAnnotations: try setup.valAnnotationPath(config: cfg),
                      config: cfg, settings: settings, dir: dir)
        }
    }

    func train<T, V>(_ task: DetectionTask<T, V>, valAnnotations: String, config cfg: Config, settings: TrainerSettings, dir: String) throws {
        task.resultsPath = "\(dir)/results_val.json"
        task.evaluator = cocoBboxEvaluator(annotations: valAnnotations)
        let trainer = try Trainer(settings: settings, task: task, workDir: dir)
        let maxIters = settings.maxIters(itersPerEpoch: task.itersPerEpoch)
        FileHandle.standardError.write(Data(("det-train: \(cfg.path), \(maxIters) iterations (\(task.itersPerEpoch)/epoch), "
            + "\(task.detector.trainableParameters().reduce(0) { $0 + $1.1.count }) trainable parameters, work dir \(dir)\n").utf8))
        let summary = try trainer.run(resume: options.resume)
        print(TrainTool.summaryLine(summary))
    }
}

DetTrain.main()
