import Config
import Engine
import NN

/// mmseg's UPerHead (UPerNet, https://arxiv.org/abs/1807.10221) with `in_index=[0, 1, 2, 3]`.
///
/// The coarsest level goes through the PPM and `bottleneck` (3×3); the others through 1×1 `lateral_convs`. A
/// top-down pass adds each level, bilinearly upsampled, into the next finer one; `fpn_convs` (3×3) smooth all but
/// the PPM level; every level is upsampled to the finest, concatenated, fused by `fpn_bottleneck` (3×3) and
/// classified by Dropout2d(0.1) + `conv_seg`.
///
/// Input: levels [N, inChannels[i], H/s_i, W/s_i] (finest first; extra trailing levels are ignored).
/// Output: logits [N, numClasses, H/s_0, W/s_0].
public final class UPerHead: Module, SegmentationDecodeHead {
    public let psp_modules: PPM
    public let bottleneck: ConvModule
    public let lateral_convs: [ConvModule]
    public let fpn_convs: [ConvModule]
    public let fpn_bottleneck: ConvModule
    public let conv_seg: Conv2d
    public let inChannels: [Int]
    public let channels: Int
    public let numClasses: Int
    public let dropoutRatio: Float
    public var lossDecode = SegmentationLoss()
    public var convSegInitStd: Float?

    public init(inChannels: [Int], channels: Int = 512, numClasses: Int, poolScales: [Int] = [1, 2, 3, 6],
                norm: ConvNorm = .bn, dropoutRatio: Float = 0.1) {
        precondition(inChannels.count >= 2, "UPerHead needs at least two levels, got \(inChannels)")
        self.inChannels = inChannels
        self.channels = channels
        self.numClasses = numClasses
        self.dropoutRatio = dropoutRatio
        let top = inChannels.last!
        psp_modules = PPM(poolScales: poolScales, inChannels: top, channels: channels, norm: norm)
        bottleneck = ConvModule(top + poolScales.count * channels, channels, kernelSize: 3, padding: 1, norm: norm)
        lateral_convs = inChannels.dropLast().map { ConvModule($0, channels, kernelSize: 1, norm: norm) }
        fpn_convs = inChannels.dropLast().map { _ in ConvModule(channels, channels, kernelSize: 3, padding: 1, norm: norm) }
        fpn_bottleneck = ConvModule(inChannels.count * channels, channels, kernelSize: 3, padding: 1, norm: norm)
        conv_seg = makeConvSeg(channels, numClasses)
    }

    /// PPM on the coarsest level: concat(x, branches) → `bottleneck`, [N, channels, h, w].
    func pspForward(_ x: Tensor) -> Tensor { bottleneck(concat([x] + psp_modules(x), axis: 1)) }

    /// The fused [N, channels, H/s_0, W/s_0] map before `cls_seg` (useful for feature inspection).
    public func fused(_ allLevels: [Tensor]) -> Tensor {
        // in_index = [0, ..., k−1]: a neck may return extra coarser levels (P6), which UPerNet does not use.
        precondition(allLevels.count >= inChannels.count, "UPerHead: \(allLevels.count) levels for in_channels \(inChannels)")
        let levels = Array(allLevels.prefix(inChannels.count))
        for (x, c) in zip(levels, inChannels) { precondition(x.shape[1] == c, "UPerHead: level \(x.shape) for \(c) channels") }
        var laterals = zip(lateral_convs, levels).map { conv, x in conv(x) }
        laterals.append(pspForward(levels.last!))
        // Top-down: each coarser lateral, resized to the finer one's size, is added into it (not in place: the
        // coarser lateral is still needed for its own output).
        for i in stride(from: laterals.count - 1, to: 0, by: -1) {
            let fine = laterals[i - 1]
            laterals[i - 1] = fine + laterals[i].resizeBilinear(fine.shape[2], fine.shape[3])
        }
        var outs = zip(fpn_convs, laterals).map { conv, x in conv(x) }
        outs.append(laterals.last!)
        let (h, w) = (outs[0].shape[2], outs[0].shape[3])
        outs = outs.map { $0.resizeBilinear(h, w) }
        return fpn_bottleneck(concat(outs, axis: 1))
    }

    public func callAsFunction(_ levels: [Tensor]) -> Tensor {
        conv_seg(fused(levels).dropout2d(dropoutRatio, training: training))
    }
}

extension UPerHead {
    /// mmseg's UPerHead over every level (`in_index` [0, 1, 2, 3]).
    static func register(in r: Registry<any SegmentationDecodeHead, DecodeHeadContext>) {
        r.register("UPerHead", fields: decodeHeadFields(channels: 512) + [
            .init("pool_scales", .array(.positiveInt), default: [1, 2, 3, 6]),
        ]) { c, context in
            guard context.inChannels.count >= 2 else { throw c.fail("type", "UPerHead needs at least two levels, got \(context.inChannels)") }
            let head = UPerHead(inChannels: context.inChannels, channels: try c.int("channels"), numClasses: try c.int("num_classes"),
                                poolScales: try c.ints("pool_scales"), norm: try convNorm(c),
                                dropoutRatio: Float(try c.double("dropout_ratio")))
            return try finishDecodeHead(head, c, inChannels: context.inChannels)
        }
    }
}
