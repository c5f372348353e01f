import Engine
import NN

/// ACmix's Swin attention (authors' `WindowAttention_acmix`): the window attention above plus a convolution
/// path fed by the same q/k/v projections, mixed as rate1·attention + rate2·convolution.
///
/// The convolution path runs over the whole map the block hands in (cyclically shifted in shifted blocks,
/// padded in dense mode), not per window: per pixel, `fc` (1×1 conv with bias, 3·heads → 9) mixes the
/// 3·heads feature groups of hd channels into 9 maps for each of the hd channels; `dep_conv` (3×3, groups hd,
/// no bias, initialised as shift kernels) turns the hd·9 maps into C channels. Keys: `rate1`, `rate2`,
/// `fc.weight` (9, 3·heads, 1, 1), `fc.bias` (9), `dep_conv.weight` (C, 9, 3, 3), plus the attention's.
public final class WindowAttentionACmix: WindowAttention {
    public let rate1: Tensor
    public let rate2: Tensor
    public let fc: Conv2d
    public let dep_conv: Conv2d
    public let kernelConv: Int

    public init(dim: Int, heads: Int, window: Int, qkvBias: Bool = true, kernelConv: Int = 3) {
        let headDim = dim / heads, kk = kernelConv * kernelConv
        rate1 = Init.constant([1], 0.5)
        rate2 = Init.constant([1], 0.5)
        fc = Conv2d(3 * heads, kk, kernelSize: 1, bias: true)
        dep_conv = Conv2d(kk * headDim, dim, kernelSize: kernelConv, padding: kernelConv / 2, groups: headDim, bias: false)
        // Shift-kernel initialisation: input map j of each group is a one-hot at tap j.
        let w = dep_conv.weight
        w.fill(0)
        for o in 0..<dim { for j in 0..<kk { w.data[(o * kk + j) * kk + j] = 1 } }
        self.kernelConv = kernelConv
        super.init(dim: dim, heads: heads, window: window, qkvBias: qkvBias)
    }

    /// x: (B, Hp, Wp, C) → (B, Hp, Wp, C).
    public override func callAsFunction(_ x: Tensor, mask: Tensor?) -> Tensor {
        let q = qkv(x)
        let att = proj(attend(q, mask: mask))
        let conv = acmixConvPath(q, heads: heads, fcWeight: fc.weight, fcBias: fc.bias, depWeight: dep_conv.weight)
        return weightedSum(att, rate1, conv, rate2)
    }
}
