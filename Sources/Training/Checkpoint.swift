import Engine
import Foundation
import NN

/// A training checkpoint in one safetensors file (written atomically): the model's state dict under "model.",
/// the optimizer's buffers under "optimizer.", and in the metadata the completed iteration count, the engine RNG
/// state, the best metric so far and free-form extras. `--load-from` also accepts plain state dicts.
public struct Checkpoint {
    public var iteration: Int
    public var rngState: UInt64
    public var bestMetric: Double?
    public var metadata: [String: String]

    public static let modelPrefix = "model.", optimizerPrefix = "optimizer."

    public init(iteration: Int, rngState: UInt64, bestMetric: Double? = nil, metadata: [String: String] = [:]) {
        self.iteration = iteration; self.rngState = rngState; self.bestMetric = bestMetric; self.metadata = metadata
    }

    /// Writes model + optimizer + this record to `path` (temporary file, then rename: never a half-written checkpoint).
    public func save(model: Module, optimizer: Optimizer?, to path: String) throws {
        var tensors: [(String, Tensor)] = model.namedTensors().map { (Self.modelPrefix + $0.0, $0.1) }
        if let optimizer { tensors += optimizer.stateTensors().map { (Self.optimizerPrefix + $0.0, $0.1) } }
        var meta = metadata
        meta["iteration"] = String(iteration)
        meta["rng_state"] = String(rngState)
        if let bestMetric { meta["best_metric"] = String(bestMetric) }
        try SafeTensors.write(tensors, metadata: meta, to: path)
    }

    /// Reads a checkpoint and restores the model (strictly) and, if given, the optimizer.
    public static func restore(from path: String, model: Module, optimizer: Optimizer?) throws -> Checkpoint {
        let file = try SafeTensors.read(path: path)
        guard let it = file.metadata["iteration"].flatMap(Int.init), let rng = file.metadata["rng_state"].flatMap(UInt64.init) else {
            throw KitError.checkpoint("\(path): not a training checkpoint (no iteration / rng_state metadata)")
        }
        var modelSD: [String: Tensor] = [:], optSD: [String: Tensor] = [:]
        for (k, t) in file.tensors {
            if k.hasPrefix(modelPrefix) { modelSD[String(k.dropFirst(modelPrefix.count))] = t }
            else if k.hasPrefix(optimizerPrefix) { optSD[String(k.dropFirst(optimizerPrefix.count))] = t }
        }
        try model.load(stateDict: modelSD, strict: true, source: path)
        if let optimizer { try optimizer.loadState(optSD) }
        return Checkpoint(iteration: it, rngState: rng, bestMetric: file.metadata["best_metric"].flatMap(Double.init),
                          metadata: file.metadata)
    }

    /// Loads weights only (a checkpoint's "model." tensors or a plain state dict) non-strictly; returns the report.
    @discardableResult
    public static func loadWeights(from path: String, into model: Module) throws -> LoadReport {
        let file = try SafeTensors.read(path: path)
        let hasPrefix = file.tensors.keys.contains { $0.hasPrefix(modelPrefix) }
        var sd: [String: Tensor] = [:]
        for (k, t) in file.tensors {
            if hasPrefix { if k.hasPrefix(modelPrefix) { sd[String(k.dropFirst(modelPrefix.count))] = t } } else { sd[k] = t }
        }
        var report = try model.load(stateDict: sd, strict: false, source: path)
        report.metadata = file.metadata
        if report.loaded.isEmpty {
            throw KitError.checkpoint("\(path): no tensor matches the model: " + report.problems(limit: 6).joined(separator: "; "))
        }
        return report
    }

    /// Weights for evaluation: like `loadWeights`, but every model tensor must be found with its shape (unexpected
    /// extra tensors are tolerated, as mmdet's test script does).
    @discardableResult
    public static func loadForInference(from path: String, into model: Module) throws -> LoadReport {
        guard FileManager.default.fileExists(atPath: path) else { throw KitError.io("\(path): checkpoint not found") }
        let report = try loadWeights(from: path, into: model)
        guard report.missing.isEmpty && report.mismatched.isEmpty else {
            throw KitError.checkpoint("\(path): checkpoint does not fit the model: " + report.problems(limit: 4).joined(separator: "; "))
        }
        return report
    }
}
