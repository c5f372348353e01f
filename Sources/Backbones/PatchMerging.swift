import Engine
import NN

/// Patch merging between stages (authors' `PatchMerging`): each 2×2 neighbourhood's four C-vectors are
/// concatenated in the order (row, col) = (0,0), (1,0), (0,1), (1,1), normalised, and reduced to 2C by a
/// bias-free Linear. (B, H·W, C) → (B, ⌈H/2⌉·⌈W/2⌉, 2C); odd maps are zero-padded at the bottom/right first
/// (mmdetection's dense convention). Keys: `norm` (4C), `reduction.weight` (2C, 4C).
public final class PatchMerging: Module {
    public let norm: LayerNorm
    public let reduction: Linear

    public init(dim: Int) {
        norm = LayerNorm(4 * dim)
        reduction = Linear(4 * dim, 2 * dim, bias: false)
        reduction.weight.assign(Init.truncNormal(reduction.weight.shape, std: 0.02))
    }

    public func callAsFunction(_ x: Tensor, height h: Int, width w: Int) -> Tensor {
        let (b, l, c) = (x.shape[0], x.shape[1], x.shape[2])
        precondition(l == h * w, "PatchMerging: \(l) tokens for a \(h)x\(w) map")
        var t = x.reshape([b, h, w, c])
        if h % 2 == 1 || w % 2 == 1 { t = t.pad([(0, 0), (0, h % 2), (0, w % 2), (0, 0)]) }
        let h2 = (h + 1) / 2, w2 = (w + 1) / 2
        // (B, h2, 2[row], w2, 2[col], C) → (B, h2, w2, 2[col], 2[row], C): one copy gives the authors' x0..x3 order.
        t = t.reshape([b, h2, 2, w2, 2, c]).permute([0, 1, 3, 4, 2, 5]).reshape([b, h2 * w2, 4 * c])
        return reduction(norm(t))
    }
}
