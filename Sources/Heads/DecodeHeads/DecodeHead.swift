import Config
import Engine
import NN

/// What `EncoderDecoder` needs from a decode or auxiliary head: mmseg's BaseDecodeHead contract. The head gets every
/// backbone/neck level and picks its own (`in_index`), returning logits [N, numClasses, h, w] at its own scale
/// (1/4 of the input for UPerHead/FPNHead, 1/16 for the FCN auxiliary head on C4).
public protocol SegmentationDecodeHead: Module {
    var numClasses: Int { get }
    /// The 1×1 classifier (`cls_seg`'s convolution).
    var conv_seg: Conv2d { get }
    /// mmseg's `loss_decode`: the head's loss on its logits (resized to the labels).
    var lossDecode: SegmentationLoss { get set }
    /// The config's `init_cfg` std for `conv_seg`, applied by the segmentor's `initWeights()` once the whole model is
    /// built (as mmengine's `init_weights`, so random draws follow module order); nil keeps the construction init.
    var convSegInitStd: Float? { get set }
    /// `levels`: the multi-scale features, finest first (C2..C5, or the neck's P2..P5).
    func callAsFunction(_ levels: [Tensor]) -> Tensor
}

/// mmseg's `cls_seg`: Dropout2d(dropout_ratio) then the 1×1 `conv_seg` classifier, [N, channels, h, w] →
/// [N, numClasses, h, w]. Shared by every head so the classifier keys are `conv_seg.weight` / `conv_seg.bias`.
func makeConvSeg(_ channels: Int, _ numClasses: Int) -> Conv2d {
    let c = Conv2d(channels, numClasses, kernelSize: 1)
    initConvSeg(c, std: 0.01)
    return c
}

/// BaseDecodeHead.init_weights: normal_init(conv_seg, std) with bias 0; mmseg's default std is 0.01, and a config's
/// `init_cfg` (`{"type": "Normal", "std": s}`) can change it.
public func initConvSeg(_ c: Conv2d, std: Float) {
    c.weight.assign(Init.normal(c.weight.shape, std: std))
    c.bias?.fill(0)
}

/// What a decode head's builder gets from its segmentor: the channels of every level it can pick from (the neck's
/// outputs, or the backbone's when there is no neck), finest first.
public struct DecodeHeadContext {
    public var inChannels: [Int]
    public init(inChannels: [Int]) { self.inChannels = inChannels }
}

/// The keys every decode head reads (mmseg's BaseDecodeHead), with `channels`' default given per head.
func decodeHeadFields(channels: Int) -> [ConfigSchema.Field] {
    [
        .init("num_classes", .intRange(1...255), required: true), .init("channels", .positiveInt, default: .int(channels)),
        .init("in_channels", .anyOf([.positiveInt, .array(.positiveInt)])),
        .init("norm", .oneOf(["BN", "SyncBN", "GN", "none"]), default: "BN"), .init("dropout_ratio", .fraction, default: 0.1),
        .init("loss_weight", .nonNegativeNumber, default: 1),
        .init("init_cfg", .object([.init("type", .oneOf(["Normal"]), required: true), .init("std", .positiveNumber, required: true)])),
    ]
}

/// The common keys of a built head: `in_channels` (when given) must match what the head sees, the classifier's
/// `init_cfg` and the loss weight are applied.
func finishDecodeHead<H: SegmentationDecodeHead>(_ head: H, _ c: Config, inChannels: [Int]) throws -> H {
    if c.has("in_channels") {
        let given = try c["in_channels"]!.intValue.map { [$0] } ?? c.ints("in_channels")
        if given != inChannels { throw c.fail("in_channels", "\(given) but the head is fed \(inChannels)") }
    }
    if c.has("init_cfg") {
        head.convSegInitStd = Float(try c.double("init_cfg.std"))
    }
    head.lossDecode.lossWeight = Float(try c.double("loss_weight"))
    return head
}

/// `norm`: BN, SyncBN (statistics over every process of a data-parallel job; plain BN in one process), GN with 32
/// groups, or none.
func convNorm(_ c: Config) throws -> ConvNorm {
    switch try c.string("norm") {
    case "GN": return .gn32
    case "none": return .none
    case "SyncBN": return .syncBatchNorm
    default: return .bn
    }
}
