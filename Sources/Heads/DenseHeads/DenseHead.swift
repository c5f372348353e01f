import Config
import Engine
import NN

/// A dense detection head (mmdet's BaseDenseHead): losses from neck features, and final detections.
public protocol DenseHead: Module {
    /// Object classes it scores (background not counted).
    var numClasses: Int { get }
    /// Named loss terms for a batch; `feats` are the neck's levels, targets in input-pixel coordinates.
    func loss(_ feats: [Tensor], targets: [DetectionTarget]) -> [(String, Tensor)]
    /// Detections per image, rescaled to the original image by `scaleFactors` ([w, h, w, h] per image).
    func predict(_ feats: [Tensor], imgShapes: [(height: Int, width: Int)], scaleFactors: [[Float]]) -> [ImageDetections]
    /// Whether `predict(chained:)` runs on chained bf16 activations (`ConvChain`).
    var predictsChained: Bool { get }
    /// `predict` on the neck's maps as chained activations.
    func predict(chained feats: [ChainTensor], imgShapes: [(height: Int, width: Int)], scaleFactors: [[Float]]) -> [ImageDetections]
}

extension DenseHead {
    public var predictsChained: Bool { false }
    public func predict(chained feats: [ChainTensor], imgShapes: [(height: Int, width: Int)], scaleFactors: [[Float]]) -> [ImageDetections] {
        predict(feats.map { $0.tensor() }, imgShapes: imgShapes, scaleFactors: scaleFactors)
    }
}

/// What a dense head's builder gets from its detector: the neck's channels and the detector's `train_cfg` /
/// `test_cfg` sections (nil when absent), whose schema the head owns.
public struct DenseHeadContext {
    public var inChannels: Int
    /// The neck's number of output levels, when it says (the anchor strides must match it).
    public var levels: Int?
    public var trainCfg: Config?
    public var testCfg: Config?
    public init(inChannels: Int, levels: Int? = nil, trainCfg: Config? = nil, testCfg: Config? = nil) {
        self.inChannels = inChannels; self.levels = levels; self.trainCfg = trainCfg; self.testCfg = testCfg
    }
}
