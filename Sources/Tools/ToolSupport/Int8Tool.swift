import ArgumentParser
import Engine
import Foundation
import Tasks
import Training

/// Where int8 calibration takes its images: the config's training split, or a folder of the user's own.
public struct CalibrationOptions: ParsableArguments {
    @Option(name: .customLong("calibration-images"), parsing: .unconditional,
            help: "Calibrate on this many images spread evenly over the config's training split.")
    public var calibrationImages = 32

    @Option(name: .customLong("calibration-dir"), help: "Calibrate on every image of this folder instead.")
    public var calibrationDir: String?

    public init() {}

    public func check() throws {
        guard calibrationImages >= 1 else { throw ValidationError("--calibration-images must be at least 1") }
    }

    /// Calibrates `model` (progress and the report on stderr); returns the report and what the images were.
    /// Calibration on the training split needs `config`.
    public func calibrate(_ model: QuantizableModel, config: String?, overrides: [String]) throws -> (Int8CalibrationReport, String) {
        guard config != nil || calibrationDir != nil else {
            throw KitError.usage("int8 without --config: give --calibration-dir (images to calibrate on) or --quantized")
        }
        let source = try CalibrationImages.source(config: config ?? "", overrides: overrides, count: calibrationImages, folder: calibrationDir)
        writeStderr("int8: calibrating on \(source.description)\n")
        var bar = ProgressBar(total: source.count * (2 + ActivationScaleMethod.allCases.count), unit: "pass")
        let report = try model.calibrateInt8(count: source.count, image: source.image) { done, _ in bar.update(done) }
        bar.finish()
        writeStderr(report.summary + "\n")
        return (report, source.description)
    }
}

/// The int8 options of the tools that run a trained model (`--precision int8`): a calibrated model written by
/// `quantize`, or calibration before the run.
public struct Int8Options: ParsableArguments {
    @Option(help: "With --precision int8: a calibrated model written by quantize for this config and checkpoint (skips calibration).")
    public var quantized: String?

    @OptionGroup public var calibration: CalibrationOptions

    public init() {}

    /// Options that only mean something with int8 are refused without it.
    public func check(precision: Precision) throws {
        try calibration.check()
        guard precision == .int8 || (quantized == nil && calibration.calibrationDir == nil) else {
            throw ValidationError("--quantized and --calibration-dir need --precision int8")
        }
        guard quantized == nil || calibration.calibrationDir == nil else { throw ValidationError("give --quantized or --calibration-dir, not both") }
    }

    /// With int8: loads `--quantized` into `model`, or calibrates it.
    public func prepare(_ model: QuantizableModel, precision: Precision, config: String?, overrides: [String]) throws {
        guard precision == .int8 else { return }
        if let quantized { try model.loadInt8(quantized); return }
        _ = try calibration.calibrate(model, config: config, overrides: overrides)
    }
}
