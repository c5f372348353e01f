import Config
import Data
import Engine
import Foundation
import Heads
import NN

/// A calibrated int8 model on disk (what `quantize` writes and `--quantized` reads), safetensors: per quantized
/// convolution NAME, `NAME.qweight` (I8, the weight's shape), `NAME.weight_scale` (F32 [O]), `NAME.input_scale`
/// (F32 [1]) and `NAME.input_signed` (U8 [1]); its metadata names the format, the SHA-256 of the checkpoint it was
/// calibrated from, a digest of the model's architecture (every tensor's name and shape), the scale method and the
/// calibration's errors. The float parts of the model still come from the checkpoint, which must be that one.
public enum Int8ModelFile {
    public static let format = "acmix-int8-v1"

    /// A digest of the model's tensor names and shapes: another architecture (another config's model) differs.
    public static func architecture(of model: Module) -> String {
        let text = model.namedTensors().map { "\($0.0):\($0.1.shape.map(String.init).joined(separator: "x"))" }.sorted().joined(separator: ";")
        return SHA256.hex(Array(text.utf8))
    }

    public static func write(_ m: Int8Model, report: Int8CalibrationReport, calibration: String, model: Module,
                             checkpointSHA256: String, to path: String) throws {
        // The scales and signs of every entry in one owned buffer, valid for the whole write (pointers into arrays
        // must not leave their `withUnsafeBytes`); the int8 weights lie in each QuantizedConv's own allocation.
        var blob: [UInt8] = [], small: [(name: String, dtype: String, shape: [Int], range: Range<Int>)] = []
        func append(_ name: String, _ dtype: String, _ shape: [Int], _ bytes: [UInt8]) {
            small.append((name, dtype, shape, blob.count..<blob.count + bytes.count))
            blob += bytes
        }
        for e in m.entries {
            append(e.name + ".weight_scale", "F32", [e.conv.weightScale.count], e.conv.weightScale.withUnsafeBytes { Array($0) })
            append(e.name + ".input_scale", "F32", [1], withUnsafeBytes(of: e.conv.inputScale) { Array($0) })
            append(e.name + ".input_signed", "U8", [1], [e.conv.inputSigned ? 1 : 0])
            if let o = e.conv.outputScale { append(e.name + ".output_scale", "F32", [1], withUnsafeBytes(of: o) { Array($0) }) }
        }
        try blob.withUnsafeBytes { b in
            var raw: [SafeTensors.RawTensor] = []
            var next = 0
            for e in m.entries {
                raw.append(.init(name: e.name + ".qweight", dtype: "I8", shape: e.weight.shape, bytes: UnsafeRawBufferPointer(e.conv.qweight)))
                let count = e.conv.outputScale == nil ? 3 : 4
                for t in small[next..<(next + count)] {
                    raw.append(.init(name: t.name, dtype: t.dtype, shape: t.shape, bytes: UnsafeRawBufferPointer(rebasing: b[t.range])))
                }
                next += count
            }
            let errors = report.errors.map { "\($0.method.rawValue)=\(String(format: "%.6f", $0.error))" }.joined(separator: ", ")
            try SafeTensors.write(raw: raw, metadata: [
                "format": format, "checkpoint_sha256": checkpointSHA256, "architecture_sha256": architecture(of: model),
                "scale_method": report.chosen.rawValue, "calibration": calibration, "output_errors": errors,
                "kept_float": report.kept.map { "\($0.name) (\($0.reason))" }.joined(separator: ", "),
            ], to: path)
        }
    }

    /// Reads a quantized model for `model`, refusing one calibrated from another checkpoint or for another
    /// architecture, and any entry that does not fit.
    public static func read(_ path: String, model: Module, checkpoint: String) throws -> Int8Model {
        let file = try SafeTensors.read(path: path)
        func fail(_ p: String) -> KitError { .usage("\(path): \(p)") }
        guard file.metadata["format"] == format else {
            throw fail("not a quantized model (its metadata has no format \"\(format)\"; make one with quantize)")
        }
        let hash = try SHA256.hex(fileAt: checkpoint)
        guard file.metadata["checkpoint_sha256"] == hash else {
            throw fail("calibrated from another checkpoint (sha256 \(file.metadata["checkpoint_sha256"]?.prefix(12) ?? "none")…), "
                       + "not \(checkpoint) (sha256 \(hash.prefix(12))…); run quantize on this one")
        }
        guard let arch = file.metadata["architecture_sha256"] else {
            throw fail("its metadata has no architecture_sha256 (damaged, or not written by quantize); run quantize again")
        }
        guard arch == architecture(of: model) else {
            throw fail("calibrated for another model than the config's (its tensors' names and shapes differ); run quantize with this config")
        }
        let params = Dictionary(model.namedTensors(), uniquingKeysWith: { a, _ in a })
        var entries: [(name: String, weight: Tensor, conv: QuantizedConv)] = []
        for key in file.names where key.hasSuffix(".qweight") {
            let name = String(key.dropLast(".qweight".count))
            guard let weight = params[name + ".weight"], weight.shape.count == 4 || weight.shape.count == 2 else {
                throw fail("\(key): the model has no convolution or linear layer \(name)")
            }
            let q = file.tensors[key]!
            guard q.shape == weight.shape else { throw fail("\(key): shape \(q.shape), the model's weight is \(weight.shape)") }
            guard let ws = file.tensors[name + ".weight_scale"], ws.shape == [weight.shape[0]],
                  let xs = file.tensors[name + ".input_scale"], xs.count == 1,
                  let sg = file.tensors[name + ".input_signed"], sg.count == 1 else {
                throw fail("\(name): needs weight_scale [\(weight.shape[0])], input_scale [1] and input_signed [1]")
            }
            let scales = Array(UnsafeBufferPointer(start: ws.data, count: ws.count))
            guard scales.allSatisfy({ $0 > 0 && $0.isFinite }) else { throw fail("\(name).weight_scale: every scale must be positive and finite") }
            guard xs.data[0] > 0 && xs.data[0].isFinite else { throw fail("\(name).input_scale: must be positive and finite") }
            guard sg.data[0] == 0 || sg.data[0] == 1 else { throw fail("\(name).input_signed: must be 0 or 1") }
            var values = [Int8](repeating: 0, count: q.count)
            for i in 0..<q.count {
                let v = q.data[i]
                guard v >= -127 && v <= 127 && v == v.rounded() else { throw fail("\(key): value \(v) is not an integer in -127...127") }
                values[i] = Int8(v)
            }
            let conv = QuantizedConv(qweight: values, weightScale: scales, inputScale: xs.data[0], inputSigned: sg.data[0] == 1)
            // Optional (files written before it was recorded have none: their downsamples write bf16).
            if let os = file.tensors[name + ".output_scale"] {
                guard os.count == 1, os.data[0] > 0 && os.data[0].isFinite else { throw fail("\(name).output_scale: must be one positive, finite value") }
                conv.outputScale = os.data[0]
            }
            entries.append((name, weight, conv))
        }
        guard !entries.isEmpty else { throw fail("no quantized convolutions in it") }
        return Int8Model(entries)
    }
}

/// Where calibration images come from: `count` images spread evenly over a config's training split (deterministic:
/// indices ⌊i·size/count⌋), or every image of a folder of the user's own.
public enum CalibrationImages {
    /// The images (loaded on demand) and a line that says what they are.
    public static func source(config path: String, overrides: [String], count: Int, folder: String?) throws
        -> (count: Int, image: (Int) throws -> Image, description: String) {
        if let folder {
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: folder, isDirectory: &isDir), isDir.boolValue else {
                throw KitError.usage("--calibration-dir \(folder): no such folder")
            }
            let names = ((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? [])
                .filter { ["jpg", "jpeg", "png"].contains(($0 as NSString).pathExtension.lowercased()) }.sorted()
            guard !names.isEmpty else { throw KitError.usage("--calibration-dir \(folder): no JPEG or PNG files in the folder") }
            let files = names.map { (folder as NSString).appendingPathComponent($0) }
            return (files.count, { try readImage(files[$0]) }, "\(files.count) images of \(folder)")
        }
        let type = try Config.load(path: path, overrides: overrides).string("model.type")
        let train: AnyDatasetImages
        if Registries.detectors.names.contains(type) {
            let c = try DetectionConfig.load(path: path, overrides: overrides)
            let data = try DetectionDatasets.registry.build(c.section("data"), DetectionDataContext(seed: UInt64(try c.int("seed", default: 0))))
            train = AnyDatasetImages(count: data.train.count, image: data.train.sourceImage)
        } else {
            let c = try SegmentationConfig.load(path: path, overrides: overrides)
            let data = try SegmentationDatasets.registry.build(c.section("data"), UInt64(try c.int("seed", default: 0)))
            train = AnyDatasetImages(count: data.train.count, image: data.train.sourceImage)
        }
        guard train.count > 0 else { throw KitError.data("\(path): the training split has no images to calibrate on") }
        let n = min(count, train.count)
        return (n, { try train.image($0 * train.count / n) }, "\(n) of the \(train.count) training images of \(path)")
    }

    struct AnyDatasetImages {
        let count: Int
        let image: (Int) throws -> Image
    }
}

/// A trained model that can run int8: what calibration and the quantized file need from it.
public protocol QuantizableModel: AnyObject {
    /// The calibrated int8 model, once `calibrateInt8` or `loadInt8` has made one.
    var int8: Int8Model? { get set }
    /// The checkpoint its weights came from (a quantized file records its SHA-256).
    var checkpointPath: String { get }
    var quantizedModule: Module { get }
    /// One image through the test pipeline and the model, outputs discarded.
    func calibrationForward(_ image: Image) throws
}

extension QuantizableModel {
    /// Calibrates on `count` images (`Int8Calibration`) and keeps the result as `int8`.
    @discardableResult
    public func calibrateInt8(count: Int, image: (Int) throws -> Image, progress: (Int, Int) -> Void = { _, _ in }) throws
        -> Int8CalibrationReport {
        let (m, report) = try withNoGrad {
            try Int8Calibration.calibrate(model: quantizedModule, count: count, forward: { try calibrationForward(try image($0)) },
                                          progress: progress)
        }
        int8 = m
        return report
    }

    /// Loads a quantized file made for this model and checkpoint (`Int8ModelFile.read`).
    public func loadInt8(_ path: String) throws {
        int8 = try Int8ModelFile.read(path, model: quantizedModule, checkpoint: checkpointPath)
    }

    /// Writes `int8` (after `calibrateInt8`) to `path`.
    public func saveInt8(to path: String, report: Int8CalibrationReport, calibration: String) throws {
        guard let int8 else { throw KitError.usage("no calibrated int8 model to write") }
        try Int8ModelFile.write(int8, report: report, calibration: calibration, model: quantizedModule,
                                checkpointSHA256: try SHA256.hex(fileAt: checkpointPath), to: path)
    }

    /// Runs `body` with `precision` selected for the engine and this model's int8 convolutions installed, restoring the
    /// previous state after; the model's weights are frozen (packed once, `FrozenWeights`). int8
    /// without a calibrated model is a usage error.
    public func withPrecision<T>(_ precision: Precision, _ body: () throws -> T) throws -> T {
        if precision == .int8 && int8 == nil {
            throw KitError.usage("precision int8: calibrate the model first (calibrateInt8 or loadInt8; the tools: --quantized, or calibration "
                                 + "on --calibration-images / --calibration-dir)")
        }
        let previous = (MixedPrecision.inference, Int8Inference.model)
        try MixedPrecision.select(precision)
        // int8 too: what stays in floating point (the first and the final convolutions) reads packed weights.
        FrozenWeights.install(module: quantizedModule)
        Int8Inference.model = precision == .int8 ? int8 : nil
        defer { try? MixedPrecision.select(previous.0); Int8Inference.model = previous.1 }
        return try body()
    }
}

extension Int8CalibrationReport {
    /// What a tool prints after calibrating.
    public var summary: String {
        let errs = errors.map { "\($0.method.rawValue) \(String(format: "%.4f", $0.error))" }.joined(separator: ", ")
        return "int8 calibration on \(images) images: \(quantized.count) convolutions and linear layers quantized, \(kept.count) kept in float32 "
            + "(\(kept.map(\.name).joined(separator: ", "))); output error against fp32 (relative RMS of \(compared.joined(separator: ", "))): "
            + "\(errs); using \(chosen.rawValue)"
    }
}

/// A model and its forward pass as `QuantizableModel` (for tools that build the model themselves).
public final class QuantizableRun: QuantizableModel {
    public var int8: Int8Model?
    public let checkpointPath: String
    public let quantizedModule: Module
    let forward: (Image) throws -> Void

    public init(_ module: Module, checkpoint: String, forward: @escaping (Image) throws -> Void) {
        quantizedModule = module; checkpointPath = checkpoint; self.forward = forward
    }

    public func calibrationForward(_ image: Image) throws { try forward(image) }
}
