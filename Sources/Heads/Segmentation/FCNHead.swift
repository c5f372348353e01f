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
