import Engine
import NN

/// One pyramid branch of mmseg's PPM: nn.Sequential(AdaptiveAvgPool2d(scale), ConvModule 1×1), so its ConvModule
/// sits at index 1 (`psp_modules.i.1.conv.weight`); index 0 is the parameter-free pool.
public final class PPMBranch: Module, UnaryLayer {
    public let poolScale: Int
    public let conv: ConvModule

    public init(poolScale: Int, inChannels: Int, channels: Int, norm: ConvNorm) {
        self.poolScale = poolScale
        conv = ConvModule(inChannels, channels, kernelSize: 1, norm: norm)
    }

    public override func children() -> [(String, Module)] { [("1", conv)] }

    /// [N, in, H, W] → [N, channels, scale, scale].
    public func callAsFunction(_ x: Tensor) -> Tensor { conv(x.adaptiveAvgPool2d(poolScale, poolScale)) }
}

/// Pooling Pyramid Module (PSPNet; mmseg `PPM`, an nn.ModuleList of `PPMBranch`): for each pool scale, adaptive
/// average pooling → 1×1 ConvModule → bilinear upsampling (align_corners=False) back to the input size.
public final class PPM: Module {
    public let branches: [PPMBranch]
    public var poolScales: [Int] { branches.map(\.poolScale) }

    public init(poolScales: [Int] = [1, 2, 3, 6], inChannels: Int, channels: Int, norm: ConvNorm = .bn) {
        branches = poolScales.map { PPMBranch(poolScale: $0, inChannels: inChannels, channels: channels, norm: norm) }
    }

    /// Keys `0`, `1`, ... directly, as the ModuleList subclass has no attribute name of its own.
    public override func children() -> [(String, Module)] { branches.enumerated().map { ("\($0.offset)", $0.element) } }

    /// x [N, in, H, W] → one [N, channels, H, W] map per pool scale (the caller concatenates them with x).
    public func callAsFunction(_ x: Tensor) -> [Tensor] {
        let (h, w) = (x.shape[2], x.shape[3])
        return branches.map { $0(x).resizeBilinear(h, w) }
    }
}
