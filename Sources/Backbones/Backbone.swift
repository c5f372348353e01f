import Config
import Engine
import Foundation
import NN

/// What detection/segmentation necks and `export-features` need from a backbone.
public protocol Backbone: Module {
    /// Names of the outputs of `features`: c2…c5 (ResNet family) or stage1…stage4 (Swin family).
    var featureNames: [String] { get }
    /// Channels of each output of `features`.
    var featureChannels: [Int] { get }
    /// Multi-scale features, NCHW.
    func features(_ x: Tensor) -> [Tensor]
    /// Classification logits [N, classes], or nil when the model has no head.
    func logits(_ x: Tensor) -> Tensor?
    /// Throws a clear error when the model cannot run on an input of this size.
    func validate(height: Int, width: Int) throws
    /// `features` as chained bf16 activations (`ConvChain`), or nil when the chain is off or this model does not run
    /// on it; necks and heads that chain take them without a round trip through float32 NCHW.
    func chainedFeatures(_ x: Tensor) -> [ChainTensor]?
}

extension Backbone {
    public func chainedFeatures(_ x: Tensor) -> [ChainTensor]? { nil }
}

extension ResNet: Backbone {
    public var featureNames: [String] { ["c2", "c3", "c4", "c5"] }
    public var featureChannels: [Int] { [4, 8, 16, 32].map { $0 * baseWidth } }
    public func logits(_ x: Tensor) -> Tensor? { fc == nil ? nil : callAsFunction(x) }
}

extension SwinTransformer: Backbone {
    public var featureNames: [String] { (config.mode == .dense ? config.outputStages : Array(0..<config.depths.count)).map { "stage\($0 + 1)" } }
    public var featureChannels: [Int] { (config.mode == .dense ? config.outputStages : Array(0..<config.depths.count)).map(config.stageDim) }
    public func logits(_ x: Tensor) -> Tensor? { head == nil ? nil : callAsFunction(x) }
    public func validate(height: Int, width: Int) throws { try validate(inputShape: [1, 3, height, width]) }
}

/// Backbone names `export-features` and configs accept.
public enum BackboneRegistry {
    public static var resnetArchs: [String] { ResNet.depths.keys.sorted() }
    public static let swinArchs = ["swin_tiny", "swin_small", "swin_base", "acmix_swin_tiny", "acmix_swin_small", "acmix_swin_base"]
    public static var allArchs: [String] { resnetArchs + swinArchs }

    /// Builds `arch`; `numClasses` nil builds no classification head. Swin in classification mode is the
    /// authors' fixed-size model for `imageSize`; `dense` builds mmdetection's any-size backbone with per-stage norms.
    public static func make(arch: String, numClasses: Int?, dense: Bool = false, imageSize: Int = 224, frozenStages: Int = -1,
                            normEval: Bool = false) throws -> any Backbone {
        if ResNet.depths[arch] != nil {
            return try ResNet(arch: arch, numClasses: numClasses, frozenStages: frozenStages, normEval: normEval)
        }
        if swinArchs.contains(arch) {
            return try SwinTransformer.make(arch: arch, mode: dense ? .dense : .classification(imageSize: imageSize),
                                            numClasses: numClasses ?? 0)
        }
        throw KitError.model("unknown backbone arch '\(arch)'; known: \(allArchs.joined(separator: ", "))")
    }

    /// Refuses an n×3×h×w input whose activations through `arch` would not fit (`ActivationMemory`), probed on a
    /// dense (any-size) backbone of that arch with random weights.
    public static func checkActivationMemory(arch: String, n: Int, height: Int, width: Int, limit: Double?, hint: String) throws {
        try ActivationMemory.check(n: n, height: height, width: width, limit: limit, hint: hint) { h, w in
            let probe = try make(arch: arch, numClasses: nil, dense: true)
            try probe.validate(height: h, width: w)
            probe.eval()
            _ = withNoGrad { probe.features(Tensor(zeros: [1, 3, h, w])) }
        }
    }

    /// Classes of the classification head stored in a state dict (`fc.weight` or `head.weight`), if any.
    public static func numClasses(in stateDict: [String: Tensor]) -> Int? {
        for key in ["fc.weight", "head.weight", "backbone.fc.weight", "backbone.head.weight"] {
            if let w = stateDict[key], w.rank == 2 { return w.shape[0] }
        }
        return nil
    }
}

// MARK: registry

extension BackboneRegistry {
    /// `model.backbone` sections, picked by `arch`. Dense mode for Swin (any input size), no classification head;
    /// `pretrained` weights (a classification or detection state dict, `backbone.` prefix optional) are loaded.
    public static let registry: Registry<any Backbone, Void> = {
        let r = Registry<any Backbone, Void>(kind: "backbone", tag: "arch")
        r.register(resnetArchs, fields: [
            .init("frozen_stages", .intRange(-1...4), default: -1), .init("norm_eval", .bool, default: false),
            .init("base_width", .optional(.intRange(4...4096))), .init("pretrained", .optional(.string)),
            // mmcv's norm_cfg: SyncBN takes batch statistics over every process of a data-parallel job.
            .init("norm_cfg", .object([.init("type", .oneOf(["BN", "SyncBN"]), required: true),
                                       .init("requires_grad", .exactly(true))])),
        ]) { c, _ in
            let w = try c.has("base_width") ? c.int("base_width") : 64
            guard w % 4 == 0 else { throw c.fail("base_width", "must be a multiple of 4, got \(w)") }
            let net = try ResNet(arch: c.string("arch"), numClasses: nil, frozenStages: c.int("frozen_stages"),
                                 normEval: c.bool("norm_eval"), baseWidth: w)
            if c.has("norm_cfg"), try c.string("norm_cfg.type") == "SyncBN" { net.useSyncBatchNorm() }
            return try loadPretrained(net, c)
        }
        // mmdet's Swin options that this backbone does not implement are accepted only at their inactive value.
        r.register(swinArchs, fields: [
            .init("frozen_stages", .exactly(-1), default: -1), .init("norm_eval", .exactly(false), default: false),
            .init("out_indices", .array(.intRange(0...3)), default: [0, 1, 2, 3]), .init("pretrained", .optional(.string)),
            .init("drop_path_rate", .optional(.numberRange(0...0.99))),
        ]) { c, _ in
            let out = try c.ints("out_indices")
            guard !out.isEmpty, out == out.sorted(), Set(out).count == out.count else {
                throw c.fail("out_indices", "\(out): need distinct stages in increasing order")
            }
            let dropPath = c.has("drop_path_rate") ? Float(try c.double("drop_path_rate")) : nil
            return try loadPretrained(try SwinTransformer.make(arch: c.string("arch"), mode: .dense, numClasses: 0, dropPathRate: dropPath,
                                                               outIndices: out), c)
        }
        return r
    }()

    /// Loads `pretrained` (when set) non-strictly into `backbone`, skipping classification heads.
    static func loadPretrained(_ backbone: any Backbone, _ c: Config) throws -> any Backbone {
        guard let p = try c.optionalString("pretrained") else { return backbone }
        guard FileManager.default.fileExists(atPath: p) else { throw c.fail("pretrained", "file not found: \(p)") }
        let sd = try SafeTensors.read(path: p).tensors.filter { !$0.key.hasPrefix("fc.") && !$0.key.hasPrefix("head.") }
        let report = try backbone.load(stateDict: sd, strict: false, stripPrefix: "backbone.", source: p)
        if report.loaded.isEmpty { throw KitError.checkpoint("\(p): no tensor of this file matches backbone '\(try c.string("arch"))'") }
        return backbone
    }
}
