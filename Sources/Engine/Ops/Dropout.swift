/// Dropout and drop-path (stochastic depth); identity when not training or when p == 0.

/// The engine's default generator for dropout and initialisation; seed it for reproducible runs.
public enum EngineRandom {
    nonisolated(unsafe) public static var generator = SplitMix64(seed: 0)
    public static func seed(_ s: UInt64) { generator = SplitMix64(seed: s) }
}

extension Tensor {
    /// Zeroes each element with probability p and scales the rest by 1/(1−p).
    public func dropout(_ p: Float, training: Bool) -> Tensor {
        guard training && p > 0 else { return self }
        return self * Tensor.dropoutMask(shape, p)
    }

    /// nn.Dropout2d: zeroes whole channels of [N, C, H, W] with probability p and scales the rest by 1/(1−p)
    /// (mmseg's decode heads use it in front of their classifier).
    public func dropout2d(_ p: Float, training: Bool) -> Tensor {
        guard training && p > 0 else { return self }
        return self * Tensor.dropoutMask([shape[0], shape[1]] + [Int](repeating: 1, count: rank - 2), p)
    }

    /// 0 with probability p, else 1/(1−p), per element of `shape` (broadcast over the rest by the caller).
    static func dropoutMask(_ shape: [Int], _ p: Float) -> Tensor {
        let mask = Tensor(uninitialized: shape)
        let scale = 1 / (1 - p)
        for i in 0..<mask.count { mask.data[i] = Float(EngineRandom.generator.uniform()) < p ? 0 : scale }
        return mask
    }

    /// Drops whole samples (dim 0) with probability p, as timm's drop_path.
    public func dropPath(_ p: Float, training: Bool) -> Tensor {
        guard training && p > 0 else { return self }
        let keep = 1 - p
        var maskShape = [Int](repeating: 1, count: rank)
        maskShape[0] = shape[0]
        let mask = Tensor(uninitialized: maskShape)
        for i in 0..<shape[0] { mask.data[i] = Float(EngineRandom.generator.uniform()) < keep ? 1 / keep : 0 }
        return self * mask
    }
}
