import Engine
import NN

/// What `EncoderDecoder` needs from a decode or auxiliary head: mmseg's BaseDecodeHead contract. The head gets every
/// backbone/neck level and picks its own (`in_index`), returning logits [N, numClasses, h, w] at its own scale
/// (1/4 of the input for UPerHead/FPNHead, 1/16 for the FCN auxiliary head on C4).
public protocol SegmentationDecodeHead: Module {
    var numClasses: Int { get }
    /// The 1×1 classifier (`cls_seg`'s convolution).
    var conv_seg: Conv2d { get }
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
