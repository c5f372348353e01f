import Engine
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
}

extension ResNet: Backbone {
    public var featureNames: [String] { ["c2", "c3", "c4", "c5"] }
    public var featureChannels: [Int] { [4, 8, 16, 32].map { $0 * baseWidth } }
    public func logits(_ x: Tensor) -> Tensor? { fc == nil ? nil : callAsFunction(x) }
}

extension SwinTransformer: Backbone {
    public var featureNames: [String] { (1...config.depths.count).map { "stage\($0)" } }
    public var featureChannels: [Int] { (0..<config.depths.count).map(config.stageDim) }
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
        throw BackboneError("unknown backbone arch '\(arch)'; known: \(allArchs.joined(separator: ", "))")
    }

    /// Classes of the classification head stored in a state dict (`fc.weight` or `head.weight`), if any.
    public static func numClasses(in stateDict: [String: Tensor]) -> Int? {
        for key in ["fc.weight", "head.weight", "backbone.fc.weight", "backbone.head.weight"] {
            if let w = stateDict[key], w.rank == 2 { return w.shape[0] }
        }
        return nil
    }
}
