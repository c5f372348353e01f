import Engine
import NN

/// W-MSA / SW-MSA of Swin: multi-head self-attention inside non-overlapping ws×ws windows, with a learned
/// relative position bias per head. State-dict keys as the authors': `qkv`, `proj`,
/// `relative_position_bias_table` ((2ws−1)², heads); `relative_position_index` is derived, never stored.
///
/// Works on channels-last maps already padded to window multiples (and cyclically shifted, for SW-MSA):
/// (B, Hp, Wp, C) → (B, Hp, Wp, C). The window partition is fused into the attention kernel, so no windowed
/// copy of the map is ever made.
open class WindowAttention: Module {
    public let relative_position_bias_table: Tensor
    public let qkv: Linear
    public let proj: Linear
    public let dim: Int, heads: Int, window: Int
    public let scale: Float
    /// Row of the bias table for each (query, key) pair of a window, N·N entries (derived).
    public let relativeIndex: [Int32]

    public init(dim: Int, heads: Int, window: Int, qkvBias: Bool = true) {
        precondition(dim % heads == 0, "WindowAttention: dim \(dim) is not divisible by \(heads) heads")
        self.dim = dim; self.heads = heads; self.window = window
        scale = 1 / Float(dim / heads).squareRoot()
        relative_position_bias_table = Init.truncNormal([(2 * window - 1) * (2 * window - 1), heads], std: 0.02)
        relativeIndex = swinRelativePositionIndex(window: window)
        qkv = Linear(dim, 3 * dim, bias: qkvBias)
        proj = Linear(dim, dim)
        swinInitLinear(qkv)
        swinInitLinear(proj)
    }

    /// Attention output before the projection, from the projected q|k|v map (B, Hp, Wp, 3C).
    @inline(__always)
    final func attend(_ qkvMap: Tensor, mask: Tensor?) -> Tensor {
        windowAttention(qkvMap, heads: heads, window: window, scale: scale, biasTable: relative_position_bias_table,
                        relativeIndex: relativeIndex, mask: mask)
    }

    /// x: (B, Hp, Wp, C), Hp and Wp multiples of the window; mask: (nW, N, N) for shifted windows, else nil.
    open func callAsFunction(_ x: Tensor, mask: Tensor?) -> Tensor {
        proj(attend(qkv(x), mask: mask))
    }
}
