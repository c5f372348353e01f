import Backbones
import Engine
import Heads
import NN

/// A small strided-conv backbone (strides 4, 8, 16, 32) so head and segmentor tests run in milliseconds.
final class TinyBackbone: Module, Backbone {
    let stem: ConvModule
    let stages: [ConvModule]
    let featureChannels: [Int]

    init(channels: [Int] = [8, 16, 32, 64]) {
        featureChannels = channels
        stem = ConvModule(3, channels[0], kernelSize: 3, stride: 2, padding: 1)
        var prev = channels[0]
        stages = channels.enumerated().map { i, c in
            defer { prev = c }
            return ConvModule(prev, c, kernelSize: 3, stride: 2, padding: 1)
        }
    }

    var featureNames: [String] { ["c2", "c3", "c4", "c5"] }
    func features(_ x: Tensor) -> [Tensor] {
        var y = stem(x)
        return stages.map { y = $0(y); return y }
    }
    func logits(_ x: Tensor) -> Tensor? { nil }
    func validate(height: Int, width: Int) throws {}
}

/// Four stride-1 levels from 1×1 convolutions: every output pixel depends on its input pixel only, so sliding-window
/// inference must reproduce whole-image inference exactly, overlaps included.
final class PointwiseBackbone: Module, Backbone {
    let convs: [ConvModule]
    let featureChannels = [4, 4, 4, 4]

    override init() { convs = (0..<4).map { _ in ConvModule(3, 4, kernelSize: 1, norm: .none) } }

    var featureNames: [String] { ["p0", "p1", "p2", "p3"] }
    func features(_ x: Tensor) -> [Tensor] { convs.map { $0(x) } }
    func logits(_ x: Tensor) -> Tensor? { nil }
    func validate(height: Int, width: Int) throws {}
}

/// Deterministic pseudo-random tensor in [−1, 1).
func randomTensor(_ shape: [Int], seed: UInt64, requiresGrad: Bool = false) -> Tensor {
    var rng = SplitMix64(seed: seed)
    let t = Tensor(uninitialized: shape)
    for i in 0..<t.count { t.data[i] = Float(rng.uniform(-1, 1)) }
    t.requiresGrad = requiresGrad
    return t
}

/// The state-dict keys mmcv's ConvModule with BN writes under `prefix`.
func convBNKeys(_ prefix: String) -> [String] {
    ["conv.weight", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var", "bn.num_batches_tracked"].map { "\(prefix).\($0)" }
}
