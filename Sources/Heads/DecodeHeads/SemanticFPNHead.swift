import Config
import Engine
import NN

/// mmseg's FPNHead (Semantic / Panoptic FPN, https://arxiv.org/abs/1901.02446) on a neck's outputs.
///
/// Level i (stride s_i) gets `scale_heads.i`: max(1, log2(s_i/s_0)) 3×3 ConvModules (norm from the config: BN as
/// mmseg's configs use it, or GN(32) as the paper), each followed by a 2× bilinear Upsample unless i is the finest
/// level, so every level arrives at stride s_0 (1/4). The levels are summed, then Dropout2d + `conv_seg`.
/// Keys: `scale_heads.i.0.conv.weight`, `scale_heads.i.2.conv.weight` (the Upsamples take indices 1, 3, ...).
///
/// Input: any neck's levels as [Tensor] (the first inChannels.count are used), [N, inChannels[i], H/s_i, W/s_i].
/// Output: [N, numClasses, H/s_0, W/s_0].
public final class SemanticFPNHead: Module, SegmentationDecodeHead {
    public let scale_heads: [Sequential]
    public let conv_seg: Conv2d
    public let featureStrides: [Int]
    public let inChannels: [Int]
    public let numClasses: Int
    public let dropoutRatio: Float
    public var lossDecode = SegmentationLoss()
    public var convSegInitStd: Float?

    public init(inChannels: [Int] = [256, 256, 256, 256], featureStrides: [Int] = [4, 8, 16, 32], channels: Int = 128,
                numClasses: Int, norm: ConvNorm = .bn, dropoutRatio: Float = 0.1) {
        precondition(inChannels.count == featureStrides.count, "FPNHead: \(inChannels.count) channels for \(featureStrides.count) strides")
        precondition(featureStrides.min() == featureStrides[0], "FPNHead: the first level must be the finest")
        self.inChannels = inChannels
        self.featureStrides = featureStrides
        self.numClasses = numClasses
        self.dropoutRatio = dropoutRatio
        func log2i(_ v: Int) -> Int { Int.bitWidth - 1 - v.leadingZeroBitCount }
        scale_heads = zip(inChannels, featureStrides).map { cin, s in
            precondition(s > 0 && s & (s - 1) == 0, "FPNHead: stride \(s) is not a power of 2")
            let length = max(1, log2i(s) - log2i(featureStrides[0]))
            var layers: [any UnaryLayer] = []
            for k in 0..<length {
                layers.append(ConvModule(k == 0 ? cin : channels, channels, kernelSize: 3, padding: 1, norm: norm))
                if s != featureStrides[0] { layers.append(BilinearUpsample(scaleFactor: 2)) }
            }
            return Sequential(layers)
        }
        conv_seg = makeConvSeg(channels, numClasses)
    }

    public func callAsFunction(_ levels: [Tensor]) -> Tensor {
        // in_index = [0, ..., k−1]: a 5-level neck's extra P6 is not used.
        precondition(levels.count >= scale_heads.count, "FPNHead: \(levels.count) levels for \(scale_heads.count) scale heads")
        var out = scale_heads[0](levels[0])
        for i in 1..<scale_heads.count {
            // mmseg resizes each upsampled level to the finest one's size (odd sizes make 2^k·h differ by a pixel).
            out = out + scale_heads[i](levels[i]).resizeBilinear(out.shape[2], out.shape[3])
        }
        return conv_seg(out.dropout2d(dropoutRatio, training: training))
    }
}

/// mmseg's `Upsample(scale_factor=2, mode='bilinear', align_corners=False)` as a Sequential member (no parameters,
/// but it occupies an index, so the ConvModules after it keep mmseg's `scale_heads.i.2`, `.4` keys).
/// mmseg computes the output size as int(side·factor) and resizes to that size, so that is what this does.
public final class BilinearUpsample: Module, UnaryLayer {
    public let scaleFactor: Int

    public init(scaleFactor: Int = 2) { self.scaleFactor = scaleFactor }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        x.resizeBilinear(x.shape[2] * scaleFactor, x.shape[3] * scaleFactor)
    }
}

extension SemanticFPNHead {
    /// mmseg's FPNHead (`type` "FPNHead") on the first `feature_strides.count` neck levels.
    static func register(in r: Registry<any SegmentationDecodeHead, DecodeHeadContext>) {
        r.register("FPNHead", fields: decodeHeadFields(channels: 128) + [
            .init("feature_strides", .array(.positiveInt), default: [4, 8, 16, 32]),
        ]) { c, context in
            let strides = try c.ints("feature_strides")
            guard strides.count <= context.inChannels.count, !strides.isEmpty, strides.min() == strides[0],
                  strides.allSatisfy({ $0 & ($0 - 1) == 0 }) else {
                throw c.fail("feature_strides", "\(strides): need powers of 2, finest first, at most one per level (\(context.inChannels.count))")
            }
            let inChannels = Array(context.inChannels.prefix(strides.count))
            let head = SemanticFPNHead(inChannels: inChannels, featureStrides: strides, channels: try c.int("channels"),
                                       numClasses: try c.int("num_classes"), norm: try convNorm(c),
                                       dropoutRatio: Float(try c.double("dropout_ratio")))
            return try finishDecodeHead(head, c, inChannels: inChannels)
        }
    }
}
