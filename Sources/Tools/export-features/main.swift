import ACmixKit
import ArgumentParser
import Backbones
import Data
import Engine
import Foundation
import NN
import ToolSupport
import Training

extension FeatureMode: ExpressibleByArgument {}

/// Runs a backbone on a tensor file and writes its multi-scale features (and optionally logits) as safetensors.
struct ExportFeatures: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export-features",
        abstract: "Write a backbone's C2–C5 / stage1–4 features (float32 NCHW) for an input tensor or image.")

    @Option(help: "Backbone: \(BackboneRegistry.allArchs.joined(separator: ", ")).")
    var arch: String?

    @Option(help: "Weights (.safetensors) with the authors' state-dict keys, with or without a 'backbone.' prefix.")
    var weights: String?

    @Option(help: "Instead of --arch/--weights: a trained detector's or segmentor's config; its backbone's features (dense mode).")
    var config: String?

    @Option(help: "With --config: the trained checkpoint.")
    var checkpoint: String?

    @Option(help: "Input tensor file (.safetensors) holding an (N,3,H,W) float32 tensor.")
    var input: String?

    @Option(help: "Key of the input tensor inside --input.")
    var inputKey = "input"

    @Option(parsing: .upToNextOption,
            help: "Images (PNG or JPEG) or folders of them, normalised with the ImageNet mean/std at their own size. With more than one image or a folder, --output is a folder that gets one STEM.safetensors per image.")
    var image: [String] = []

    @Option(help: "Output file (.safetensors).")
    var output: String

    @Option(help: "classification (the authors' fixed-size model, square input) or dense (any size, per-stage output norms; Swin only — ResNet is the same in both).")
    var mode = FeatureMode.classification

    @Flag(help: "Also write `logits` from the classification head in the weights.")
    var logits = false

    @Option(help: "fp32; bf16: convolutions and matmuls on the CPU's bf16 units (AMX / AVX512-BF16), the rest fp32; int8 (with --config): calibrated int8 convolutions (VNNI).")
    var precision: Precision = .fp32

    @OptionGroup var int8: Int8Options

    @Option(name: .customLong("memory-limit"), parsing: .unconditional,
            help: "Refuse inputs whose activations would need more than this many GiB (default: 80% of physical memory).")
    var memoryLimit: Double?

    func validate() throws {
        guard (input == nil) != image.isEmpty else { throw ValidationError("give exactly one of --input and --image") }
        if let memoryLimit { guard memoryLimit.isFinite && memoryLimit > 0 else { throw ValidationError("--memory-limit must be a positive number of GiB") } }
        if config != nil || checkpoint != nil {
            guard config != nil && checkpoint != nil else { throw ValidationError("--config and --checkpoint go together") }
            guard arch == nil && weights == nil else { throw ValidationError("give --arch/--weights or --config/--checkpoint, not both") }
            guard !logits else { throw ValidationError("--logits needs --arch/--weights (a trained detector's backbone has no classifier)") }
        } else {
            guard let arch, weights != nil else { throw ValidationError("give --arch and --weights, or --config and --checkpoint") }
            guard BackboneRegistry.allArchs.contains(arch) else {
                throw ValidationError("unknown --arch '\(arch)'; known: \(BackboneRegistry.allArchs.joined(separator: ", "))")
            }
        }
        try int8.check(precision: precision)
    }

    func run() throws {
        try MixedPrecision.select(precision)
        try refuseOverwriting(("--output", output), inputs: [("--weights", weights), ("--config", config), ("--checkpoint", checkpoint),
                                                             ("--quantized", int8.quantized), ("--input", input)] + image.map { ("--image", $0) })
        let extractor: FeatureExtractor
        if let config, let checkpoint {
            extractor = try FeatureExtractor(config: .file(config), checkpoint: checkpoint, precision: precision)
            try int8.prepare(extractor, precision: precision, config: config, overrides: [])
        } else {
            extractor = try FeatureExtractor(arch: arch!, weights: weights!, mode: mode, precision: precision)
        }
        let mode = config == nil ? self.mode : .dense
        func features(_ x: Tensor) throws -> [(String, Tensor)] {
            try checkMemory(x.shape, arch: extractor.arch)
            let outputs = try extractor.features(x, logits: logits)
            if extractor.usedDefaultNorms && !warnedNorms {
                warnedNorms = true
                writeStderr("export-features: note: \(extractor.checkpointPath) has no dense output norms; using weight 1, bias 0\n")
            }
            return outputs.map { ($0.name, $0.tensor) }
        }
        guard !image.isEmpty else {
            try write(try features(try loadInput()), metadata: ["input": input!, "input_key": inputKey, "arch": extractor.arch,
                                                                 "mode": mode.rawValue], to: output)
            return
        }
        // Images: one file for one image, else a folder of STEM.safetensors.
        let list = ImageList(image)
        try list.requireImages()
        var problems = InputProblems(tool: "export-features", list: list)
        let toFolder = list.files.count + list.problems.count > 1 || image.contains { isDirectory($0) }
        for s in list.stems where toFolder { try ProtectedInputs.check("\(output)/\(s).safetensors", option: "--output") }
        if toFolder { try createDirectory(output) }
        var bar = ProgressBar(total: list.files.count, enabled: toFolder, unit: "img")
        for (i, file) in list.files.enumerated() {
            defer { bar.update(i + 1) }
            // An input that cannot be used is reported and skipped; a failed write (full disk) stops the run.
            let result: (outputs: [(String, Tensor)], metadata: [String: String])
            do {
                // Decoded as RGB, normalised with the ImageNet mean/std (mmcv's Normalize with to_rgb), batch of one.
                let decoded = try readImage(file)   // its errors name the file
                do {
                    let x = FeatureExtractor.input(decoded)
                    let meta = ["file_name": file, "height": "\(decoded.height)", "width": "\(decoded.width)",
                                "preprocess": "RGB, no resize, (x - mean) / std with mean \(Normalize.imageNetMean) std \(Normalize.imageNetStd)"]
                    result = (try features(x), meta)
                } catch let e as KitError {
                    throw e.prefixed("\(file) (\(decoded.width)x\(decoded.height)): ")
                }
            } catch let e as KitError where e.exitCode == 1 {
                problems.add("\(e)", bar: &bar)
                continue
            }
            try write(result.outputs, metadata: result.metadata.merging(["arch": extractor.arch, "mode": mode.rawValue]) { a, _ in a }, to: toFolder ? "\(output)/\(list.stems[i]).safetensors" : output)
        }
        bar.finish()
        try problems.finish()
    }

    func isDirectory(_ path: String) -> Bool {
        var d: ObjCBool = false
        return FileManager.default.fileExists(atPath: path, isDirectory: &d) && d.boolValue
    }

    func write(_ outputs: [(String, Tensor)], metadata: [String: String], to path: String) throws {
        try SafeTensors.write(outputs, metadata: metadata, to: path)
    }

    /// Refuses an input whose activations would not fit (`ActivationMemory`), probed on a model of the same arch.
    func checkMemory(_ shape: [Int], arch: String) throws {
        try BackboneRegistry.checkActivationMemory(arch: arch, n: shape[0], height: shape[2], width: shape[3],
                                                   limit: memoryLimit.map { $0 * 1_073_741_824 }, hint: "use a smaller input or raise --memory-limit")
    }

    func loadInput() throws -> Tensor {
        let f = try SafeTensors.read(path: input!)
        guard let t = f.tensors[inputKey] else {
            throw KitError.usage("\(input!): no tensor '\(inputKey)' (has: \(f.names.joined(separator: ", ")))")
        }
        guard t.rank == 4, t.shape[1] == 3, t.shape[0] >= 1 else {
            throw KitError.usage("\(input!): '\(inputKey)' has shape \(t.shape), expected (N, 3, H, W)")
        }
        // NaN or infinity would come out as NaN features with exit status 0.
        let bad = t.nonFiniteCount
        if bad > 0 { throw KitError.data("\(input!): '\(inputKey)' holds \(bad) NaN or infinite value\(bad == 1 ? "" : "s") of \(t.count)") }
        return t
    }
}

/// The dense-norm note is printed once per run, not once per image.
nonisolated(unsafe) var warnedNorms = false

// Errors thrown from run() (bad files, wrong shapes, missing keys) print as one line with their exit code.
ExportFeatures.mainReportingErrors()
