import Config
import Engine
import NN

/// mmseg's FCNHead, as the UPerNet configs use it for the auxiliary loss: `in_index=2` (C4), `num_convs=1` ConvModule
/// 3×3 of 256 channels, `concat_input=False`, Dropout2d(0.1), `conv_seg`. Keys: `convs.0.conv.weight`, ...,
/// `conv_cat.*` when `concatInput`, `conv_seg.*`.
///
/// Input: the level list; uses levels[inIndex] [N, inChannels, h, w]. Output: logits [N, numClasses, h, w].
public final class FCNHead: Module, SegmentationDecodeHead {
    public let convs: Sequential
    public let conv_cat: ConvModule?
    public let conv_seg: Conv2d
    public let inIndex: Int
    public let inChannels: Int
    public let numClasses: Int
    public let dropoutRatio: Float
    public var lossDecode = SegmentationLoss()
    public var convSegInitStd: Float?

    public init(inChannels: Int, channels: Int = 256, numClasses: Int, inIndex: Int = 2, numConvs: Int = 1,
                kernelSize: Int = 3, concatInput: Bool = false, norm: ConvNorm = .bn, dropoutRatio: Float = 0.1) {
        precondition(numConvs >= 1, "FCNHead needs at least one conv")
        self.inIndex = inIndex
        self.inChannels = inChannels
        self.numClasses = numClasses
        self.dropoutRatio = dropoutRatio
        convs = Sequential((0..<numConvs).map { i in
            ConvModule(i == 0 ? inChannels : channels, channels, kernelSize: kernelSize, padding: kernelSize / 2, norm: norm)
        })
        conv_cat = concatInput
            ? ConvModule(inChannels + channels, channels, kernelSize: kernelSize, padding: kernelSize / 2, norm: norm) : nil
        conv_seg = makeConvSeg(channels, numClasses)
    }

    public func callAsFunction(_ levels: [Tensor]) -> Tensor {
        let x = levels[inIndex]
        precondition(x.shape[1] == inChannels, "FCNHead: level \(inIndex) is \(x.shape), expected \(inChannels) channels")
        var y = convs(x)
        if let conv_cat { y = conv_cat(concat([x, y], axis: 1)) }
        return conv_seg(y.dropout2d(dropoutRatio, training: training))
    }
}

extension FCNHead {
    /// mmseg's FCNHead as the UPerNet configs use it for the auxiliary head (`in_index` 2, one conv, no concat).
    static func register(in r: Registry<any SegmentationDecodeHead, DecodeHeadContext>) {
        r.register("FCNHead", fields: decodeHeadFields(channels: 256) + [
            .init("in_index", .nonNegativeInt, default: 2), .init("num_convs", .positiveInt, default: 1),
            .init("kernel_size", .intRange(1...15), default: 3), .init("concat_input", .bool, default: false),
        ]) { c, context in
            let i = try c.int("in_index")
            guard i < context.inChannels.count else { throw c.fail("in_index", "\(i) but there are \(context.inChannels.count) levels") }
            let k = try c.int("kernel_size")
            guard k % 2 == 1 else { throw c.fail("kernel_size", "must be odd, got \(k)") }
            let head = FCNHead(inChannels: context.inChannels[i], channels: try c.int("channels"), numClasses: try c.int("num_classes"),
                               inIndex: i, numConvs: try c.int("num_convs"), kernelSize: k, concatInput: try c.bool("concat_input"),
                               norm: try convNorm(c), dropoutRatio: Float(try c.double("dropout_ratio")))
            return try finishDecodeHead(head, c, inChannels: [context.inChannels[i]])
        }
    }
}
