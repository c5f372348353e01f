import Engine
import NN

/// One Swin stage (authors' `BasicLayer`): `depth` blocks alternating W-MSA and SW-MSA (shift window/2 on
/// odd blocks), then an optional PatchMerging. Keys `blocks.i.*`, `downsample.*`.
public final class BasicLayer: Module {
    public let blocks: [SwinBlock]
    public let downsample: PatchMerging?

    /// `fixedResolution` is the authors' classifier rule: a stage whose map is no larger than the window uses
    /// window = resolution and no shift. Dense mode passes nil and always uses the configured window.
    public init(dim: Int, depth: Int, heads: Int, window: Int, mlpRatio: Float, qkvBias: Bool, acmix: Bool,
                dropPath: [Float], downsample: Bool, fixedResolution: Int? = nil) {
        precondition(dropPath.count == depth, "BasicLayer: \(dropPath.count) drop-path rates for \(depth) blocks")
        var ws = window, shiftable = true
        if let r = fixedResolution, r <= window { ws = r; shiftable = false }
        blocks = (0..<depth).map { i in
            SwinBlock(dim: dim, heads: heads, window: ws, shift: shiftable && i % 2 == 1 ? ws / 2 : 0,
                      mlpRatio: mlpRatio, qkvBias: qkvBias, acmix: acmix, dropPath: dropPath[i])
        }
        self.downsample = downsample ? PatchMerging(dim: dim) : nil
    }

    /// Runs the blocks on (B, H·W, C). Returns the stage output before merging, and the merged tokens with
    /// their grid (the stage output itself when there is no downsample).
    public func callAsFunction(_ x: Tensor, height h: Int, width w: Int)
        -> (out: Tensor, next: Tensor, height: Int, width: Int) {
        var t = x
        for blk in blocks { t = blk(t, height: h, width: w) }
        guard let downsample else { return (t, t, h, w) }
        return (t, downsample(t, height: h, width: w), (h + 1) / 2, (w + 1) / 2)
    }
}
