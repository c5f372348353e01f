import Engine
import NN

/// mmcv's `norm_cfg` for ConvModule (necks and heads): BN and SyncBN both become `BatchNorm2d`, SyncBN with `sync`
/// set (statistics over every process of a data-parallel job; plain batch statistics in one process).
public enum ConvNorm: Equatable, Sendable {
    case none
    case batchNorm
    case syncBatchNorm
    case groupNorm(groups: Int)

    /// mmseg's usual `norm_cfg = dict(type='SyncBN', requires_grad=True)`.
    public static let bn = ConvNorm.batchNorm
    /// `dict(type='GN', num_groups=32)`, the Panoptic-FPN paper's choice.
    public static let gn32 = ConvNorm.groupNorm(groups: 32)
}

/// mmcv's ConvModule in its default order (conv → norm → act): input [N, in, H, W] → [N, out, Ho, Wo].
///
/// Keys follow mmcv exactly: the convolution is `conv`; the norm is named by `build_norm_layer`'s abbreviation, so
/// `bn` for BN/SyncBN and `gn` for GN; the activation has no parameters. `bias='auto'` gives the convolution a
/// bias only when there is no norm (a bias in front of a norm is cancelled by its mean).
public final class ConvModule: Module, UnaryLayer {
    public let conv: Conv2d
    public let bn: BatchNorm2d?
    public let gn: GroupNorm?
    /// `act_cfg=dict(type='ReLU')` when true, `act_cfg=None` when false.
    public let relu: Bool

    public init(_ inChannels: Int, _ outChannels: Int, kernelSize: Int, stride: Int = 1, padding: Int = 0,
                dilation: Int = 1, norm: ConvNorm = .bn, relu: Bool = true) {
        let withNorm = norm != .none
        conv = Conv2d(inChannels, outChannels, kernelSize: kernelSize, stride: stride, padding: padding,
                      dilation: dilation, bias: !withNorm)
        switch norm {
        case .none: bn = nil; gn = nil
        case .batchNorm, .syncBatchNorm: bn = BatchNorm2d(outChannels); bn!.sync = norm == .syncBatchNorm; gn = nil
        case .groupNorm(let groups):
            precondition(outChannels % groups == 0, "ConvModule: \(outChannels) channels in \(groups) GN groups")
            bn = nil; gn = GroupNorm(numGroups: groups, channels: outChannels)
        }
        self.relu = relu
        super.init()
        // mmcv ConvModule.init_weights: kaiming_init(conv, nonlinearity='relu') = kaiming normal, fan_out, bias 0;
        // the norm keeps weight 1 / bias 0.
        conv.weight.assign(Init.kaimingNormalFanOut(conv.weight.shape))
        conv.bias?.fill(0)
    }

    /// Whether it can run on chained activations (`ConvChain`): no groups, no GroupNorm, BatchNorm on running statistics.
    public var chainable: Bool { conv.groups == 1 && gn == nil && (bn?.usesRunningStatistics ?? true) }

    /// The module on a chained activation (inference, `chainable`); `next`: the one convolution that reads its output,
    /// if any (int8 then hands it u8 directly, see `Conv2d.callAsFunction(_:residual:relu:f32:feeding:)`).
    public func callAsFunction(_ x: ChainTensor, feeding next: Conv2d? = nil) -> ChainTensor {
        if let bn { return convBN(x, conv, bn, relu: relu, feeding: next) }
        return conv(x, relu: relu, feeding: next)
    }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        if let bn { return convBN(x, conv, bn, relu: relu) }
        guard let gn else { return conv(x, relu: relu) }
        let y = gn(conv(x))
        return relu ? y.relu() : y
    }
}
