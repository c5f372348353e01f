import ArgumentParser
import Engine
import Heads
import Tasks
import ToolSupport

/// The built-in config: RetinaNet on the synthetic shapes dataset, small enough for a 2-core machine.
let defaultConfig = "configs/retinanet/retinanet_acmix_resnet26_fpn_shapes.json"

struct DetTrain: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "det-train",
        abstract: "Train a detector from a JSON config (mmdet semantics): checkpoints, log.jsonl, curves.png in the work dir.")

    @OptionGroup var options: TrainOptions

    func run() throws {
        let code = TrainTool.exitCode(tool: "det-train") {
            try TrainTool.train(tool: "det-train", options: options, defaultConfig: defaultConfig, config: DetectionConfig.self,
                                buildModel: DetectionConfig.buildModel) { cfg, model, dir in
                let task = try DetectionTask(config: cfg, detector: model)
                task.resultsPath = "\(dir)/results_val.json"
                return task
            }
        }
        if let code { throw ExitCode(code) }
    }
}

// Before any thread starts: Ctrl-C and mpirun's SIGTERM are taken on one idle thread (`Interrupts`).
Interrupts.install()
DetTrain.mainReportingErrors()
