import ArgumentParser
import Engine
import Heads
import Tasks
import ToolSupport

/// The built-in config: UPerNet on the synthetic shapes dataset's semantic labels, small enough for 2 cores.
let defaultConfig = "configs/upernet/upernet_acmix_resnet26_shapes.json"

struct SegTrain: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "seg-train",
        abstract: "Train a segmentor from a JSON config (mmseg semantics): checkpoints, log.jsonl (mIoU, mAcc, aAcc), curves.png.")

    @OptionGroup var options: TrainOptions

    func run() throws {
        let code = TrainTool.exitCode(tool: "seg-train") {
            try TrainTool.train(tool: "seg-train", options: options, defaultConfig: defaultConfig, config: SegmentationConfig.self,
                                buildModel: SegmentationConfig.buildModel) { cfg, model, _ in
                try SegmentationTask(config: cfg, segmentor: model)
            }
        }
        if let code { throw ExitCode(code) }
    }
}

// Before any thread starts: Ctrl-C and mpirun's SIGTERM are taken on one idle thread (`Interrupts`).
Interrupts.install()
SegTrain.mainReportingErrors()
