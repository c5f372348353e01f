import Engine

/// What a state-dict load found, key by key.
public struct LoadReport: CustomStringConvertible {
    public var loaded: [String] = []
    public var missing: [String] = []
    public var unexpected: [String] = []
    public var mismatched: [(key: String, expected: [Int], found: [Int])] = []
    /// The file's safetensors metadata (e.g. "classes" from scripts/convert_pth.py: the source's dataset_meta).
    public var metadata: [String: String] = [:]

    public var isClean: Bool { missing.isEmpty && unexpected.isEmpty && mismatched.isEmpty }

    public var description: String { problems().joined(separator: "\n") }

    /// One line per kind of problem, each key list cut after `limit` names.
    public func problems(limit: Int = .max) -> [String] {
        func list(_ keys: [String]) -> String {
            keys.prefix(limit).joined(separator: ", ") + (keys.count > limit ? ", ... (\(keys.count - limit) more)" : "")
        }
        var lines: [String] = []
        if !missing.isEmpty { lines.append("missing keys (\(missing.count)): " + list(missing)) }
        if !unexpected.isEmpty { lines.append("unexpected keys (\(unexpected.count)): " + list(unexpected)) }
        if !mismatched.isEmpty {
            lines.append("shape mismatches (\(mismatched.count)): "
                         + list(mismatched.map { "\($0.key) model \($0.expected) vs checkpoint \($0.found)" }))
        }
        return lines
    }
}

extension KitError {
    /// A state dict that does not fit the model, with the load report.
    public static func stateDict(_ report: LoadReport, source: String) -> KitError {
        .checkpoint("\(source): state dict does not match the model: " + report.problems(limit: 6).joined(separator: "; "))
    }
}

extension Module {
    /// Keys a checkpoint may carry or omit without consequence (derived buffers such as `attn_mask`,
    /// `relative_position_index`, `num_batches_tracked`); matched by their last component.
    public static var derivedKeySuffixes: Set<String> { ["attn_mask", "relative_position_index", "num_batches_tracked"] }

    /// Copies matching tensors into the model. `stripPrefix` (e.g. "backbone.") is removed from checkpoint keys
    /// that carry it. Strict mode throws listing every missing, unexpected and shape-mismatched key; non-strict
    /// loads what matches and returns the report.
    @discardableResult
    public func load(stateDict: [String: Tensor], strict: Bool = true, stripPrefix: String? = nil,
                     source: String = "state dict") throws -> LoadReport {
        FrozenWeights.clear()   // packed copies of the weights it replaces would go stale
        var incoming: [String: Tensor] = [:]
        for (k, v) in stateDict {
            if let p = stripPrefix, k.hasPrefix(p) { incoming[String(k.dropFirst(p.count))] = v } else { incoming[k] = v }
        }
        func derived(_ k: String) -> Bool { Self.derivedKeySuffixes.contains(String(k.split(separator: ".").last ?? "")) }
        var report = LoadReport()
        var used = Set<String>()
        var assignments: [(String, Tensor, Tensor)] = []
        for (key, t) in namedTensors() {
            guard let src = incoming[key] else {
                if !derived(key) { report.missing.append(key) }
                continue
            }
            used.insert(key)
            if src.count != t.count || (src.shape != t.shape && !(src.count == 1 && t.count == 1)) {
                report.mismatched.append((key, t.shape, src.shape))
                continue
            }
            assignments.append((key, t, src))
            report.loaded.append(key)
        }
        report.unexpected = incoming.keys.filter { !used.contains($0) && !derived($0) }.sorted()
        if strict && !report.isClean { throw KitError.stateDict(report, source: source) }
        // A NaN or infinite weight makes every output NaN or saturated, silently: refused before anything is assigned.
        for (key, _, src) in assignments {
            let bad = src.nonFiniteCount
            if bad > 0 {
                throw KitError.checkpoint("\(source): \(key) holds \(bad) NaN or infinite value\(bad == 1 ? "" : "s") of \(src.count): "
                                          + "the weights are unusable (a diverged training run?)")
            }
        }
        for (_, dst, src) in assignments { dst.data.update(from: src.data, count: dst.count) }
        return report
    }
}
