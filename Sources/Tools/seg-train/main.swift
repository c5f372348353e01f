import ArgumentParser
import Data
import Engine
import Foundation
import Heads
import NN
import Training

/// The built-in config: UPerNet on the synthetic shapes dataset's semantic labels, small enough for 2 cores.
let defaultConfig = "configs/upernet/upernet_acmix_resnet26_shapes.json"

struct SegTrain: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "seg-train",
        abstract: "Train a segmentor from a JSON config (mmseg semantics): checkpoints, log.jsonl (mIoU, mAcc, aAcc), curves.png.")

    @OptionGroup var options: TrainOptions

    func run() throws {
        if let code = try TrainTool.exitCode(tool: "seg-train", train) { throw ExitCode(code) }
    }

    func train() throws {
        let cfg = try SegmentationConfig.load(path: options.resolvedConfig(default: defaultConfig), overrides: options.overrides)
        if let loadFrom = options.loadFrom, !FileManager.default.fileExists(atPath: loadFrom) { throw ConfigError("--load-from: file not found: \(loadFrom)") }
        if options.dryRun { print(cfg.serialized(), terminator: ""); return }
        let settings = try TrainerSettings(config: cfg)
        EngineRandom.seed(settings.seed)
        let model = try SegmentationConfig.build(cfg)
        let crop = try cfg.ints("data.crop_size", default: [512, 512])
        do { try model.validate(height: crop[0], width: crop[1]) } catch {
            throw ConfigError("\(cfg.source(of: "data.crop_size")): data.crop_size: \(error)")
        }
        if let loadFrom = options.loadFrom {
            let report = try Checkpoint.loadWeights(from: loadFrom, into: model)
            FileHandle.standardError.write(Data("loaded \(report.loaded.count) tensors from \(loadFrom)\n".utf8))
        }
        let dir = try TrainTool.prepareWorkDir(options.workDir, configPath: options.config ?? defaultConfig, config: cfg)

        if try cfg.string("data.dataset") == "ade20k" {
            let s = try ADE20KSetup(config: cfg)
            try train(s.train, s.val, model: model, config: cfg, settings: settings, dir: dir)
        } else {
            let s = try ShapesSegmentationSetup(config: cfg)
            try train(s.train, s.val, model: model, config: cfg, settings: settings, dir: dir)
        }
    }

    func train<T: LoaderDataset, V: LoaderDataset>(_ trainSet: T, _ valSet: V, model: EncoderDecoder, config cfg: Config,
                                                   settings: TrainerSettings, dir: String) throws
    where T.Item == SegmentationInput, V.Item == SegmentationInput {
        let seed = UInt64(try cfg.int("seed", default: 0))
        let bs = try cfg.int("data.samples_per_gpu", default: 2), workers = try cfg.int("data.workers_per_gpu", default: 1)
        let task = SegmentationTask(segmentor: model,
                                    loader: DataLoader(dataset: trainSet, batchSize: bs, shuffle: true, seed: seed, dropLast: true, workers: workers),
                                    valLoader: DataLoader(dataset: valSet, batchSize: 1, shuffle: false, seed: seed, workers: workers),
                                    numClasses: try cfg.int("model.decode_head.num_classes"))
        task.mode = try SegmentationConfig.inferenceMode(cfg)
        let trainer = try Trainer(settings: settings, task: task, workDir: dir)
        FileHandle.standardError.write(Data(("seg-train: \(cfg.path), \(settings.maxIters(itersPerEpoch: task.itersPerEpoch)) iterations, "
            + "\(model.trainableParameters().reduce(0) { $0 + $1.1.count }) trainable parameters, work dir \(dir)\n").utf8))
        let summary = try trainer.run(resume: options.resume)
        print(TrainTool.summaryLine(summary))
    }
}

SegTrain.main()
