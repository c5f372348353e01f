import Engine

/// nn.BatchNorm2d over [N, C, H, W]. In eval mode, or when `frozen` (mmdetection's norm_eval), it uses the
/// running statistics and leaves them untouched. With `sync` it is mmcv's SyncBN: in a data-parallel job, training
/// statistics are those of every process's batch together (`BatchNormSync`); in one process it is plain BN.
public final class BatchNorm2d: Module {
    public let weight: Tensor
    public let bias: Tensor
    public let running_mean: Tensor
    public let running_var: Tensor
    public let num_batches_tracked: Tensor
    public let eps: Float, momentum: Float
    /// norm_eval: always use running statistics, even in train mode.
    public var frozen = false
    /// SyncBN (`norm_cfg.type = "SyncBN"`): batch statistics over every process of a data-parallel job.
    public var sync = false
    /// `runningAffine` of the frozen model of that `FrozenWeights.generation`.
    var frozenAffine: (generation: Int, scale: Tensor, shift: Tensor)?

    public override var bufferNames: Set<String> { ["running_mean", "running_var", "num_batches_tracked"] }

    public init(_ channels: Int, eps: Float = 1e-5, momentum: Float = 0.1) {
        weight = Init.constant([channels], 1)
        bias = Init.constant([channels], 0)
        running_mean = Tensor(zeros: [channels])
        running_var = Tensor(zeros: [channels], value: 1)
        num_batches_tracked = Tensor(zeros: [])
        self.eps = eps; self.momentum = momentum
    }

    public func callAsFunction(_ x: Tensor) -> Tensor { callAsFunction(x, residual: nil, relu: false) }

    /// bn(x), then `+ residual` and a ReLU when given, in one op.
    public func callAsFunction(_ x: Tensor, residual: Tensor?, relu: Bool) -> Tensor {
        let useBatch = training && !frozen
        if useBatch { num_batches_tracked.data[0] += 1 }
        return batchNorm(x, runningMean: running_mean, runningVar: running_var, weight: weight, bias: bias,
                         training: useBatch, momentum: momentum, eps: eps, sync: sync, residual: residual, relu: relu)
    }
}

extension Module {
    /// Makes every `BatchNorm2d` of this subtree a SyncBN (or plain BN again): PyTorch's `convert_sync_batchnorm`.
    public func useSyncBatchNorm(_ on: Bool = true) {
        for case let (_, bn as BatchNorm2d) in namedModules() { bn.sync = on }
    }
}

/// nn.LayerNorm over the last dim: [..., C] → [..., C].
public final class LayerNorm: Module {
    public let weight: Tensor
    public let bias: Tensor
    public let eps: Float

    public init(_ channels: Int, eps: Float = 1e-5) {
        weight = Init.constant([channels], 1)
        bias = Init.constant([channels], 0)
        self.eps = eps
    }

    public func callAsFunction(_ x: Tensor) -> Tensor { layerNorm(x, weight: weight, bias: bias, eps: eps) }
}

/// nn.GroupNorm over [N, C, ...].
public final class GroupNorm: Module {
    public let weight: Tensor
    public let bias: Tensor
    public let numGroups: Int, eps: Float

    public init(numGroups: Int, channels: Int, eps: Float = 1e-5) {
        weight = Init.constant([channels], 1)
        bias = Init.constant([channels], 0)
        self.numGroups = numGroups; self.eps = eps
    }

    public func callAsFunction(_ x: Tensor) -> Tensor { groupNorm(x, groups: numGroups, weight: weight, bias: bias, eps: eps) }
}
