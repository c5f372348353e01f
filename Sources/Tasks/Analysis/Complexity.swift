import Backbones
import Config
import Engine
import Foundation
import Heads
import NN

/// Parameters and FLOPs of a model's forward pass (mmdetection's tools/analysis_tools/get_flops.py, which counts with
/// mmengine in fvcore's convention; see `FlopCounter`), per top-level module and per operator.
public struct Complexity {
    public struct Row: Equatable {
        public var name: String
        public var params: Int
        public var flops: Int
    }

    /// Input [N, 3, H, W].
    public var input: [Int]
    /// Top-level modules in the model's order (state-dict prefixes: backbone, neck, rpn_head, roi_head, ...; a
    /// classifier's conv1, layer1, ...), then "(unattributed)" for work before any weight was used.
    public var modules: [Row]
    /// FLOPs by operator kind (conv, linear, matmul, batch_norm, ...), largest first.
    public var operators: [(op: String, flops: Int)]
    public var params: Int { modules.reduce(0) { $0 + $1.params } }
    public var flops: Int { modules.reduce(0) { $0 + $1.flops } }

    /// Runs `forward` (the model's inference on an input of shape `input`) once with the counter on; each op's work
    /// goes to the top-level module owning the weight it used.
    public static func measure(_ model: Module, input: [Int], forward: () throws -> Void) rethrows -> Complexity {
        let named = model.namedParameters()
        var owner: [ObjectIdentifier: String] = [:], order: [String] = [], params: [String: Int] = [:]
        for (path, t) in named {
            let top = String(path.split(separator: ".").first ?? Substring(path))
            if params[top] == nil { order.append(top) }
            params[top, default: 0] += t.count
            owner[ObjectIdentifier(t)] = top
        }
        FlopCounter.reset()
        FlopCounter.enabled = true
        defer { FlopCounter.enabled = false }
        try withNoGrad { try forward() }
        var flops: [String: Int] = [:], byOp: [String: Int] = [:]
        let other = "(unattributed)"
        // A weight that is no parameter (ACmix's q|k|v weights concatenated for one GEMM) counts for the module of
        // the last parameter seen.
        var current: String?
        for r in FlopCounter.records {
            if let top = r.weight.flatMap({ owner[$0] }) { current = top }
            flops[current ?? other, default: 0] += r.flops
            byOp[r.op, default: 0] += r.flops
        }
        FlopCounter.reset()
        var rows = order.map { Row(name: $0, params: params[$0]!, flops: flops[$0] ?? 0) }
        if let f = flops[other] { rows.append(Row(name: other, params: 0, flops: f)) }
        return Complexity(input: input, modules: rows, operators: byOp.sorted { $0.value > $1.value }.map { ($0.key, $0.value) })
    }

    /// A detection or segmentation config's model (random weights) on a random image of `height`×`width`: the
    /// detector's whole test-time forward (RoI heads run on the proposals its RPN gives), the segmentor's
    /// whole-image inference.
    public static func measure(config path: String, overrides: [String], height: Int, width: Int) throws -> Complexity {
        /// The forward pass measured, after the size checks; its module for the table.
        func prepared(_ model: TaskModel, _ h: Int, _ w: Int) throws -> (Module, (Tensor) -> Void) {
            switch model {
            case let .detector(m):
                try m.backbone.validate(height: h, width: w)
                m.eval()
                return (m, { _ = m.predict($0, imgShapes: [(h, w)], scaleFactors: [[1, 1, 1, 1]], oriShapes: [(h, w)]) })
            case let .segmentor(m):
                try m.validate(height: h, width: w)
                m.eval()
                return (m, { _ = m.inference($0, mode: .whole, outputSize: nil) })
            }
        }
        // A large input is probed on a second model first; the probe leaves the random stream as it was, so the
        // measured model and its input are those of any other size.
        try ActivationMemory.check(n: 1, height: height, width: width, limit: nil, hint: "use a smaller --shape") { h, w in
            let (_, forward) = try prepared(try TaskModel.build(config: path, overrides: overrides).model, h, w)
            withNoGrad { forward(Tensor(zeros: [1, 3, h, w])) }
        }
        EngineRandom.seed(0)
        let x = Init.normal([1, 3, height, width], std: 1)
        let (model, forward) = try prepared(try TaskModel.build(config: path, overrides: overrides).model, height, width)
        return measure(model, input: x.shape) { forward(x) }
    }

    /// A backbone `arch` (random weights) on a random input: `dense` as detectors use it (features), else the
    /// authors' classifier with its 1000-class head (logits).
    public static func measure(arch: String, dense: Bool, height: Int, width: Int) throws -> Complexity {
        EngineRandom.seed(0)
        let model = try BackboneRegistry.make(arch: arch, numClasses: dense ? nil : 1000, dense: dense, imageSize: height)
        try model.validate(height: height, width: width)
        model.eval()
        // Probed as a dense backbone of the same arch, which takes any size (the classifier may take only its own).
        try BackboneRegistry.checkActivationMemory(arch: arch, n: 1, height: height, width: width, limit: nil, hint: "use a smaller --shape")
        let x = Init.normal([1, 3, height, width], std: 1)
        return measure(model, input: x.shape) { if dense { _ = model.features(x) } else { _ = model.logits(x) } }
    }

    /// The report as mmdet prints it, with the per-module and per-operator tables.
    public var table: String {
        func g(_ v: Int) -> String { String(format: "%.3f G", Double(v) / 1e9) }
        func m(_ v: Int) -> String { String(format: "%.3f M", Double(v) / 1e6) }
        let w = max(14, (modules.map(\.name.count) + operators.map(\.op.count)).max() ?? 0)
        func pad(_ s: String) -> String { s.padding(toLength: w, withPad: " ", startingAt: 0) }
        var lines = ["Input shape: (\(input.map(String.init).joined(separator: ", ")))", "Flops: \(g(flops))", "Params: \(m(params))", "",
                     "\(pad("module"))  \("params".padding(toLength: 12, withPad: " ", startingAt: 0))  flops"]
        for r in modules { lines.append("\(pad(r.name))  \(m(r.params).padding(toLength: 12, withPad: " ", startingAt: 0))  \(g(r.flops))") }
        lines += ["", "\(pad("operator"))  flops"]
        for (op, f) in operators { lines.append("\(pad(op))  \(g(f))") }
        return lines.joined(separator: "\n")
    }

    public var json: JSON {
        .object([("input", .array(input.map { .int($0) })), ("flops", .int(flops)), ("params", .int(params)),
                 ("modules", .array(modules.map { .object([("name", .string($0.name)), ("params", .int($0.params)), ("flops", .int($0.flops))]) })),
                 ("operators", .object(operators.map { ($0.op, JSON.int($0.flops)) }))])
    }
}
