import Engine
import NN

/// One Swin Transformer block (authors' `SwinTransformerBlock`), plain or ACmix:
///
///     x = x + DropPath(unshift(Attn(shift(pad(LN1(x))))))
///     x = x + DropPath(MLP(LN2(x)))
///
/// Tokens (B, H·W, C) → (B, H·W, C) for any H×W: the normalised map is zero-padded at the bottom/right to
/// window multiples (as mmdetection does) and, when `shift` > 0, rolled by −shift with the matching
/// attention mask, which the block derives for the padded size and caches.
public final class SwinBlock: Module {
    public let norm1: LayerNorm
    public let attn: WindowAttention
    public let norm2: LayerNorm
    public let mlp: Mlp
    public let window: Int, shift: Int
    /// Stochastic-depth probability of both residual branches.
    public let dropPathRate: Float
    private var maskCache: [Int: Tensor] = [:]

    public init(dim: Int, heads: Int, window: Int, shift: Int, mlpRatio: Float = 4, qkvBias: Bool = true,
                acmix: Bool, dropPath: Float = 0) {
        precondition(shift >= 0 && shift < window, "SwinBlock: shift \(shift) must be in 0..<window (\(window))")
        norm1 = LayerNorm(dim)
        attn = acmix ? WindowAttentionACmix(dim: dim, heads: heads, window: window, qkvBias: qkvBias)
                     : WindowAttention(dim: dim, heads: heads, window: window, qkvBias: qkvBias)
        norm2 = LayerNorm(dim)
        mlp = Mlp(dim, hidden: Int(Float(dim) * mlpRatio))
        self.window = window; self.shift = shift; self.dropPathRate = dropPath
    }

    /// The (nW, N, N) mask of shifted windows over a padded Hp×Wp map; nil for unshifted blocks.
    public func attentionMask(paddedHeight hp: Int, paddedWidth wp: Int) -> Tensor? {
        guard shift > 0 else { return nil }
        let key = hp << 32 | wp
        if let m = maskCache[key] { return m }
        let m = swinShiftedWindowMask(height: hp, width: wp, window: window, shift: shift)
        maskCache[key] = m
        return m
    }

    /// x: (B, H·W, C) tokens of an H×W map, row-major → (B, H·W, C).
    public func callAsFunction(_ x: Tensor, height h: Int, width w: Int) -> Tensor {
        let (b, l, c) = (x.shape[0], x.shape[1], x.shape[2])
        precondition(l == h * w, "SwinBlock: \(l) tokens for a \(h)x\(w) map")
        let hp = (h + window - 1) / window * window, wp = (w + window - 1) / window * window
        var y = norm1(x).reshape([b, h, w, c]).windowPadShift(height: hp, width: wp, shift: shift)
        y = attn(y, mask: attentionMask(paddedHeight: hp, paddedWidth: wp))
        y = y.windowUnshiftCrop(height: h, width: w, shift: shift).reshape([b, l, c])
        let x1 = x + y.dropPath(dropPathRate, training: training)
        return x1 + mlp(norm2(x1)).dropPath(dropPathRate, training: training)
    }
}
