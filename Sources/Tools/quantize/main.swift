import ACmixKit
import ArgumentParser
import Config
import Engine
import Foundation
import Heads
import Tasks
import ToolSupport

/// Post-training int8 calibration of a trained detector or segmentor, written once so that later runs skip it.
struct Quantize: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "quantize",
        abstract: "Calibrate a trained detector or segmentor for int8 inference and write the quantized model.",
        discussion: """
            Runs the model in fp32 on calibration images through the config's
            test pipeline, observes every convolution's input, and quantizes
            the convolutions to int8 (per-output-channel symmetric weights,
            one scale per input tensor: min-max or the 99.99th percentile,
            whichever gives the smaller output error on the same images). The
            stem, the heads' final prediction layers and everything that is not
            a convolution stay fp32. The output (safetensors) records the
            checkpoint's SHA-256; pass it with the same config and checkpoint:
              det-infer --config C --checkpoint W --precision int8 --quantized OUT IMAGES
            Needs a CPU with VNNI (ACMIX_INT8_EMULATION=1 emulates it anywhere).
            """)

    @Option(help: "Config (JSON, as det-train / seg-train take it): the model, the test pipeline and the training split.")
    var config: String

    @Option(help: "Trained weights: a training checkpoint or a state dict.")
    var checkpoint: String

    @Option(help: "Output file (.safetensors).")
    var out: String

    @Option(name: .customLong("set"), help: "Override a config key, e.g. --set data.root=/data/shapes.")
    var overrides: [String] = []

    @OptionGroup var calibration: CalibrationOptions

    func validate() throws { try calibration.check() }

    func run() throws {
        try MixedPrecision.checkSupport(.int8, option: "quantize")
        try refuseOverwriting(("--out", out), inputs: [("--config", config), ("--checkpoint", checkpoint),
                                                       ("--calibration-dir", calibration.calibrationDir)])
        let type = try Config.load(path: config, overrides: overrides).string("model.type")
        let model: QuantizableModel = Registries.detectors.names.contains(type)
            ? try ObjectDetector(config: .file(config), checkpoint: checkpoint, overrides: overrides)
            : try Segmenter(config: .file(config), checkpoint: checkpoint, overrides: overrides)
        let (report, images) = try calibration.calibrate(model, config: config, overrides: overrides)
        try model.saveInt8(to: out, report: report, calibration: images)
        writeStderr("quantize: \(report.quantized.count) int8 layers → \(out)\n")
    }
}

Quantize.mainReportingErrors()
