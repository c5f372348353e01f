import Engine
import NN

/// ResNet and ACmix-ResNet (torchvision / authors' keys: conv1, bn1, layer1..4, fc) as a classifier and as a
/// detection backbone; `resnet50_v1c` is mmseg/mmdet's ResNetV1c, whose 7×7 stem is a `DeepStem` (keys stem.*).
/// Input [N, 3, H, W]; features C2..C5 are the outputs of layer1..layer4 (strides 4..32).
public final class ResNet: Module {
    public let conv1: Conv2d?
    public let bn1: BatchNorm2d?
    public let stem: DeepStem?
    public let layer1: [Bottleneck]
    public let layer2: [Bottleneck]
    public let layer3: [Bottleneck]
    public let layer4: [Bottleneck]
    /// Classification head; nil for a pure backbone.
    public let fc: Linear?
    /// Stages frozen as mmdetection's `frozen_stages`: −1 none, 0 the stem, k the stem and layer1..layerk.
    public let frozenStages: Int
    /// mmdetection's `norm_eval`: every BatchNorm uses running statistics, even in train mode.
    public let normEval: Bool
    /// Channels of the stem and of layer1's bottleneck width (64 in every published model; smaller values give the
    /// narrow variants small experiments train from scratch). Stage outputs are 4·w, 8·w, 16·w, 32·w.
    public let baseWidth: Int

    public static let depths: [String: [Int]] = [
        "acmix_resnet26": [1, 2, 4, 1], "acmix_resnet38": [2, 3, 5, 2], "acmix_resnet50": [3, 4, 6, 3], "resnet50": [3, 4, 6, 3],
        "resnet50_v1c": [3, 4, 6, 3],
    ]

    public init(layers: [Int], acmix: ACmixSettings?, numClasses: Int? = 1000, frozenStages: Int = -1, normEval: Bool = false,
                baseWidth: Int = 64, deepStem: Bool = false) {
        precondition(layers.count == 4, "ResNet needs 4 stage depths")
        precondition(baseWidth > 0 && baseWidth % (acmix?.head ?? 1) == 0, "ResNet base width must divide into the ACmix heads")
        if deepStem {
            conv1 = nil; bn1 = nil; stem = DeepStem(channels: baseWidth)
        } else {
            conv1 = Conv2d(3, baseWidth, kernelSize: 7, stride: 2, padding: 3, bias: false)
            bn1 = BatchNorm2d(baseWidth); stem = nil
        }
        var inplanes = baseWidth
        func stage(_ planes: Int, _ depth: Int, _ stride: Int) -> [Bottleneck] {
            (0..<depth).map { j in
                defer { inplanes = planes * Bottleneck.expansion }
                return Bottleneck(inplanes: inplanes, planes: planes, stride: j == 0 ? stride : 1, acmix: acmix)
            }
        }
        layer1 = stage(baseWidth, layers[0], 1)
        layer2 = stage(2 * baseWidth, layers[1], 2)
        layer3 = stage(4 * baseWidth, layers[2], 2)
        layer4 = stage(8 * baseWidth, layers[3], 2)
        fc = numClasses.map { Linear(32 * baseWidth, $0) }
        self.baseWidth = baseWidth
        self.frozenStages = frozenStages
        self.normEval = normEval
        super.init()
        // torchvision: kaiming_normal(fan_out) convolutions (the ACmix shift kernels keep their initialisation).
        for (name, m) in namedModules() {
            if let c = m as? Conv2d, !name.hasSuffix("dep_conv") { c.weight.assign(Init.kaimingNormalFanOut(c.weight.shape)) }
        }
        applyFreezing()
    }

    /// Builds a named architecture: acmix_resnet26/38/50, resnet50 or resnet50_v1c.
    public convenience init(arch: String, numClasses: Int? = 1000, frozenStages: Int = -1, normEval: Bool = false,
                            baseWidth: Int = 64) throws {
        guard let layers = Self.depths[arch] else {
            throw KitError.model("unknown ResNet arch '\(arch)'; known: \(Self.depths.keys.sorted().joined(separator: ", "))")
        }
        self.init(layers: layers, acmix: arch.hasPrefix("acmix") ? ACmixSettings() : nil, numClasses: numClasses,
                  frozenStages: frozenStages, normEval: normEval, baseWidth: baseWidth, deepStem: arch.hasSuffix("_v1c"))
    }

    public var stages: [[Bottleneck]] { [layer1, layer2, layer3, layer4] }

    func applyFreezing() {
        if frozenStages >= 0 {
            for m in [conv1, bn1, stem] as [Module?] { m?.freeze() }
            for bn in [bn1] + (stem?.bns ?? []) { bn?.frozen = true }
        }
        for (i, s) in stages.enumerated() where i < frozenStages {
            for blk in s {
                blk.freeze()
                for (_, m) in blk.namedModules() { (m as? BatchNorm2d)?.frozen = true }
            }
        }
        if normEval { for (_, m) in namedModules() { (m as? BatchNorm2d)?.frozen = true } }
    }

    /// C2..C5 (the outputs of layer1..layer4), NCHW.
    public func features(_ x: Tensor) -> [Tensor] {
        if let chained = chainedFeatures(x) { return chained.map { $0.tensor() } }
        var y = (stem.map { $0(x) } ?? convBN(x, conv1!, bn1!, relu: true)).maxPool2d(kernel: 3, stride: 2, padding: 1)
        var out: [Tensor] = []
        for s in stages {
            for blk in s { y = blk(y) }
            out.append(y)
        }
        return out
    }

    /// C2..C5 on chained bf16 activations (`ConvChain`): bf16 inference with plain bottlenecks (float32 inference on
    /// float32 ones where the CPU has the kernels, `ConvChain.f32Active`); nil otherwise. The 7×7
    /// stem joins the chain where the layout has a kernel for 3 input channels (nhwc); else it runs on its own.
    public func chainedFeatures(_ x: Tensor) -> [ChainTensor]? {
        precondition(x.rank == 4 && x.shape[1] == 3, "ResNet expects [N, 3, H, W], got \(x.shape)")
        if ConvChain.int8Active { return int8ChainedFeatures(x) }
        guard ConvChain.active || ConvChain.f32Active && float32ChainPays(x), stages.allSatisfy({ $0.allSatisfy(\.chainable) })
        else { return nil }
        var c: ChainTensor
        if let conv1, let bn1, ConvChain.layout == .nhwc, bn1.usesRunningStatistics {
            c = convBN(ConvChain.enter(x), conv1, bn1, relu: true)
        } else {
            c = ConvChain.enter(stem.map { $0(x) } ?? convBN(x, conv1!, bn1!, relu: true))
        }
        c = ConvChain.maxPool(c, kernel: 3, stride: 2, padding: 1)
        var out: [ChainTensor] = []
        for s in stages {
            for (j, blk) in s.enumerated() {
                // A block with the identity shortcut sums into its input: not into the previous stage's output.
                c = blk(j == 0 && blk.downsample == nil && !out.isEmpty ? c.copy() : c)
            }
            out.append(c)
        }
        return out
    }

    /// Whether float32 inference chains an input of x's size: only where none of the blocks' 3×3 convolutions would run
    /// Winograd per convolution, which the chain has not (on large inputs: RetinaNet R50 at 800×1333 with the backbone
    /// chained took 1.85 s against 1.71 s, Zen 4).
    func float32ChainPays(_ x: Tensor) -> Bool {
        func half(_ s: Int) -> Int { (s - 1) / 2 + 1 }
        var (h, w) = (half(half(x.shape[2])), half(half(x.shape[3])))   // the stride-2 stem and max-pooling
        for (i, stage) in stages.enumerated() {
            if i > 0 { (h, w) = (half(h), half(w)) }
            for blk in stage {
                guard let c = blk.conv2 as? Conv2d else { continue }
                let g = Conv2dGeometry([x.shape[0], c.weight.shape[1], h, w], c.weight.shape, padding: c.padding, dilation: c.dilation)
                if ConvPolicy.takesWinograd(g) { return false }
            }
        }
        return true
    }

    /// C2..C5 of a calibrated int8 model on chained u8 activations: each block's output is quantized with the next
    /// block's input scale (the last one's stays float32); the stem runs on its own. Nil when a block's convolutions are
    /// not all quantized for u8 inputs.
    func int8ChainedFeatures(_ x: Tensor) -> [ChainTensor]? {
        guard let model = Int8Inference.model else { return nil }
        let blocks = stages.flatMap { $0 }
        let quantized = blocks.compactMap { $0.quantized(model) }
        guard quantized.count == blocks.count, let first = quantized.first?[0] else { return nil }
        var c: ChainTensor
        if let conv1, let bn1, bn1.usesRunningStatistics, ConvChain.layout == .nhwc, MixedPrecision.native {
            // The 7×7 stem (kept in floating point) and the max pooling chained in bf16 where the CPU has it.
            let y = ConvChain.maxPool(convBN(ConvChain.enter(x), conv1, bn1, relu: true), kernel: 3, stride: 2, padding: 1)
            c = ConvChain.quantized(y, scale: first.inputScale)
        } else {
            let y = (stem.map { $0(x) } ?? convBN(x, conv1!, bn1!, relu: true)).maxPool2d(kernel: 3, stride: 2, padding: 1)
            c = ConvChain.enter(y, type: .u8, scale: first.inputScale)
        }
        var out: [ChainTensor] = [], i = 0
        for s in stages {
            for (j, blk) in s.enumerated() {
                // As in bf16: a block with the identity shortcut sums into its input, not into the previous stage's output.
                let input = j == 0 && blk.downsample == nil && !out.isEmpty ? c.copy() : c
                c = blk(input, quantized: quantized[i], outputScale: i + 1 < blocks.count ? quantized[i + 1][0].inputScale : nil)
                i += 1
            }
            out.append(c)
        }
        return out
    }

    /// Logits [N, numClasses] (global average pool of C5, then fc).
    public func callAsFunction(_ x: Tensor) -> Tensor {
        guard let fc else { preconditionFailure("this ResNet was built without a classification head") }
        // Chained, the pooling runs in the chain too: only [N, C, 1, 1] leaves it.
        let pooled = chainedFeatures(x).map { ConvChain.globalAveragePool($0[3]).tensor() } ?? features(x)[3].adaptiveAvgPool2d(1, 1)
        return fc(pooled.flatten(from: 1))
    }
}


/// mmseg / mmdet's ResNetV1c deep stem, [N, 3, H, W] → [N, C, H/2, W/2]: three 3×3 convolutions (C/2, C/2, C; the
/// first with stride 2), each followed by BN and ReLU. Keys are those of its nn.Sequential: stem.0 / stem.1 (conv,
/// bn), stem.3 / stem.4, stem.6 / stem.7 (the ReLUs at 2, 5, 8 hold nothing).
public final class DeepStem: Module {
    public let convs: [Conv2d]
    public let bns: [BatchNorm2d]

    public init(channels c: Int) {
        precondition(c % 2 == 0, "a deep stem needs an even channel count")
        convs = [Conv2d(3, c / 2, kernelSize: 3, stride: 2, padding: 1, bias: false), Conv2d(c / 2, c / 2, kernelSize: 3, padding: 1, bias: false),
                 Conv2d(c / 2, c, kernelSize: 3, padding: 1, bias: false)]
        bns = [BatchNorm2d(c / 2), BatchNorm2d(c / 2), BatchNorm2d(c)]
    }

    public override func children() -> [(String, Module)] {
        (0..<3).flatMap { i in [("\(3 * i)", convs[i] as Module), ("\(3 * i + 1)", bns[i] as Module)] }
    }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        var y = x
        for i in 0..<3 { y = convBN(y, convs[i], bns[i], relu: true) }
        return y
    }
}

extension ResNet {
    /// Spatial size of each ACmix input map for an image side `n` (reflection padding needs it > k_att/2).
    func acmixInputSides(_ n: Int) -> [Int] {
        var s = (n - 1) / 2 + 1            // conv1, stride 2
        s = (s - 1) / 2 + 1                // max-pool, stride 2
        var sides: [Int] = []
        for (i, stage) in stages.enumerated() {
            for (j, blk) in stage.enumerated() where blk.conv2 is ACmix {
                sides.append(s)
                if i > 0 && j == 0 { s = (s - 1) / 2 + 1 }
            }
            if !(stage.first?.conv2 is ACmix) && i > 0 { s = (s - 1) / 2 + 1 }
        }
        return sides
    }

    /// Throws a clear error when an input of this size would leave an ACmix map too small for reflection padding.
    public func validate(height: Int, width: Int) throws {
        guard let a = layer1.first?.conv2 as? ACmix else { return }
        let pad = a.kernelAtt / 2
        func minimum() -> Int { (1...4096).first { n in acmixInputSides(n).allSatisfy { $0 > pad } } ?? 4096 }
        if acmixInputSides(height).contains(where: { $0 <= pad }) || acmixInputSides(width).contains(where: { $0 <= pad }) {
            throw KitError.model("input \(height)x\(width) is too small for ACmix-ResNet: every ACmix feature map must be larger than "
                                + "\(pad) pixels for the \(a.kernelAtt)x\(a.kernelAtt) reflection-padded window; use at least \(minimum())x\(minimum())")
        }
    }
}
