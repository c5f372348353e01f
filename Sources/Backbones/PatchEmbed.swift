import Engine
import NN

/// Image to patch tokens (authors' `PatchEmbed`): a patch×patch stride-patch conv, then LayerNorm.
/// (B, 3, H, W) → (B, h·w, C) with h = ⌈H/patch⌉, w = ⌈W/patch⌉: inputs that are not patch multiples are
/// zero-padded at the bottom/right first, as mmdetection's Swin does (the authors' classifier only sees
/// multiples).
public final class PatchEmbed: Module {
    public let proj: Conv2d
    public let norm: LayerNorm?
    public let patchSize: Int

    public init(patchSize: Int = 4, inChannels: Int = 3, embedDim: Int, patchNorm: Bool = true) {
        proj = Conv2d(inChannels, embedDim, kernelSize: patchSize, stride: patchSize)
        norm = patchNorm ? LayerNorm(embedDim) : nil
        self.patchSize = patchSize
    }

    /// Returns the tokens and the patch grid size (h, w).
    public func callAsFunction(_ x: Tensor) -> (tokens: Tensor, height: Int, width: Int) {
        precondition(x.rank == 4, "PatchEmbed expects (B, C, H, W), got \(x.shape)")
        let p = patchSize
        let padH = (p - x.shape[2] % p) % p, padW = (p - x.shape[3] % p) % p
        let xp = padH + padW > 0 ? x.pad([(0, 0), (0, 0), (0, padH), (0, padW)]) : x
        let y = proj(xp)                                          // B, C, h, w
        let (b, c, h, w) = (y.shape[0], y.shape[1], y.shape[2], y.shape[3])
        var t = y.reshape([b, c, h * w]).transpose(1, 2)          // B, h·w, C
        if let norm { t = norm(t) }
        return (t, h, w)
    }
}
