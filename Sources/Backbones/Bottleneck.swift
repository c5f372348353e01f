import Engine
import NN

/// torchvision's v1.5 bottleneck (stride on the middle op): 1×1 → 3×3 (or ACmix) → 1×1 (×4 channels), residual.
/// Input [N, inplanes, H, W] → [N, planes·4, Ho, Wo].
public final class Bottleneck: Module {
    public static let expansion = 4
    public let conv1: Conv2d
    public let bn1: BatchNorm2d
    /// The middle op: `ACmix` in ACmix-ResNet, a 3×3 `Conv2d` in plain ResNet.
    public let conv2: any UnaryLayer
    public let bn2: BatchNorm2d
    public let conv3: Conv2d
    public let bn3: BatchNorm2d
    public let downsample: Sequential?

    public init(inplanes: Int, planes: Int, stride: Int = 1, acmix: ACmixSettings?) {
        let out = planes * Self.expansion
        conv1 = Conv2d(inplanes, planes, kernelSize: 1, bias: false)
        bn1 = BatchNorm2d(planes)
        if let a = acmix {
            conv2 = ACmix(inPlanes: planes, outPlanes: planes, kernelAtt: a.kernelAtt, head: a.head, kernelConv: a.kernelConv, stride: stride)
        } else {
            conv2 = Conv2d(planes, planes, kernelSize: 3, stride: stride, padding: 1, bias: false)
        }
        bn2 = BatchNorm2d(planes)
        conv3 = Conv2d(planes, out, kernelSize: 1, bias: false)
        bn3 = BatchNorm2d(out)
        downsample = stride != 1 || inplanes != out
            ? Sequential([Conv2d(inplanes, out, kernelSize: 1, stride: stride, bias: false), BatchNorm2d(out)]) : nil
    }

    public override func children() -> [(String, Module)] {
        [("conv1", conv1), ("bn1", bn1), ("conv2", conv2), ("bn2", bn2), ("conv3", conv3), ("bn3", bn3)]
            + (downsample.map { [("downsample", $0)] } ?? [])
    }

    /// Each BatchNorm folds into its convolution's epilogue, with the shortcut and the ReLU, where nothing needs a
    /// gradient (`convBN`); otherwise the layers run one by one.
    public func callAsFunction(_ x: Tensor) -> Tensor {
        var y = convBN(x, conv1, bn1, relu: true)
        if let conv2 = conv2 as? Conv2d { y = convBN(y, conv2, bn2, relu: true) } else { y = bnReLU(conv2(y), bn2) }
        return convBN(y, conv3, bn3, residual: shortcut(x), relu: true)
    }

    /// Whether the block can run on chained activations (`ConvChain`): a plain 3×3 middle convolution, BatchNorms on
    /// running statistics, a convolution + BatchNorm shortcut (or none).
    public var chainable: Bool {
        guard let conv2 = conv2 as? Conv2d, conv2.groups == 1, conv1.groups == 1, conv3.groups == 1 else { return false }
        if downsample != nil && shortcutConvBN == nil { return false }
        return ([bn1, bn2, bn3] + (shortcutConvBN.map { [$0.bn] } ?? [])).allSatisfy(\.usesRunningStatistics)
    }

    /// The shortcut's convolution and BatchNorm, when the shortcut is exactly those two (torchvision's downsample).
    var shortcutConvBN: (conv: Conv2d, bn: BatchNorm2d)? {
        guard let downsample, downsample.layers.count == 2, let conv = downsample.layers[0] as? Conv2d,
              let bn = downsample.layers[1] as? BatchNorm2d else { return nil }
        return (conv, bn)
    }

    /// The block on a chained activation (inference, `chainable`): x [N, inplanes, H, W] → [N, planes·4, Ho, Wo]. With
    /// the identity shortcut the output is written into x's buffer (x must not be read afterwards).
    public func callAsFunction(_ x: ChainTensor) -> ChainTensor {
        let shortcut = shortcutConvBN.map { convBN(x, $0.conv, $0.bn, relu: false) } ?? x
        var y = convBN(x, conv1, bn1, relu: true)
        y = convBN(y, conv2 as! Conv2d, bn2, relu: true)
        return convBN(y, conv3, bn3, residual: shortcut, relu: true)
    }

    /// The block's convolutions' int8 forms (conv1, conv2, conv3, the shortcut's), when `model` quantized all of them
    /// for u8 inputs.
    func quantized(_ model: Int8Model) -> [QuantizedConv]? {
        guard chainable, let conv2 = conv2 as? Conv2d else { return nil }
        let convs = [conv1, conv2, conv3] + (shortcutConvBN.map { [$0.conv] } ?? [])
        let q = convs.compactMap { model.layer(weight: $0.weight) }
        return q.count == convs.count && q.allSatisfy({ !$0.inputSigned }) ? q : nil
    }

    /// The int8 block on chained activations (`ConvChain.int8Active`, `quantized` not nil): x u8 → u8 with
    /// `outputScale` (the next block's input scale), or float32 when nil (the last block). An identity shortcut into a
    /// u8 output is summed from x's u8 values into x's buffer (x must not be read afterwards), a downsample's from its s8
    /// output where calibration recorded its range (`QuantizedConv.outputScale`); the others are added in bf16 (their
    /// real values).
    public func callAsFunction(_ x: ChainTensor, quantized q: [QuantizedConv], outputScale: Float?) -> ChainTensor {
        // A downsample calibrated for it writes s8, which conv3 sums in place into its u8 output; else bf16.
        let shortcut = shortcutConvBN.map { s in
            if let os = q[3].outputScale, outputScale != nil {
                return convBN(x, s.conv, s.bn, quantized: q[3], relu: false, output: .s8, outputScale: os)
            }
            return convBN(x, s.conv, s.bn, quantized: q[3], relu: false, output: .bf16)
        } ?? (outputScale == nil ? ConvChain.floatInput(x) : x)
        var y = convBN(x, conv1, bn1, quantized: q[0], relu: true, output: .u8, outputScale: q[1].inputScale)
        y = convBN(y, conv2 as! Conv2d, bn2, quantized: q[1], relu: true, output: .u8, outputScale: q[2].inputScale)
        return convBN(y, conv3, bn3, quantized: q[2], residual: shortcut, relu: true, output: outputScale == nil ? .f32 : .u8,
                      outputScale: outputScale ?? 1)
    }

    func shortcut(_ x: Tensor) -> Tensor {
        guard let downsample else { return x }
        if let s = shortcutConvBN { return convBN(x, s.conv, s.bn, relu: false) }
        return downsample(x)
    }
}

extension ACmix: UnaryLayer {}

/// ACmix hyper-parameters of a ResNet: attention window, heads, shift-conv kernel.
public struct ACmixSettings: Equatable {
    public var kernelAtt = 7, head = 4, kernelConv = 3
    public init(kernelAtt: Int = 7, head: Int = 4, kernelConv: Int = 3) {
        self.kernelAtt = kernelAtt; self.head = head; self.kernelConv = kernelConv
    }
}
