import Engine

extension BatchNorm2d {
    /// Whether this layer normalises with its running statistics (eval mode, or frozen as mmdetection's norm_eval).
    public var usesRunningStatistics: Bool { !training || frozen }

    /// The per-channel affine of running-statistics normalisation: y = x·scale + shift. Computed once while the model
    /// is frozen (`FrozenWeights`: inference, where every chained convolution asks for it on every call).
    public func runningAffine() -> (scale: Tensor, shift: Tensor) {
        let generation = FrozenWeights.generation
        if let generation, let cached = frozenAffine, cached.generation == generation { return (cached.scale, cached.shift) }
        let c = weight.count
        let scale = Tensor(uninitialized: [c]), shift = Tensor(uninitialized: [c])
        for ch in 0..<c {
            scale.data[ch] = weight.data[ch] / (running_var.data[ch] + eps).squareRoot()
            shift.data[ch] = bias.data[ch] - running_mean.data[ch] * scale.data[ch]
        }
        frozenAffine = generation.map { ($0, scale, shift) }
        return (scale, shift)
    }

    /// Whether `bn(conv(x))` can be folded: running statistics and nothing that will need a gradient.
    func foldable(_ conv: Conv2d?, _ inputs: [Tensor]) -> Bool {
        guard usesRunningStatistics else { return false }
        guard GradMode.isEnabled else { return true }
        let tensors = inputs + [weight, bias] + (conv.map { [$0.weight] + ($0.bias.map { [$0] } ?? []) } ?? [])
        return !tensors.contains { $0.requiresGrad }
    }
}

/// bn(conv(x)) [+ residual] [then ReLU]: when the BatchNorm uses running statistics and nothing needs a gradient
/// (inference, frozen stages) it is folded into the convolution's epilogue with the residual and the ReLU
/// (`conv2dFused`: no pass over the output per op); otherwise (training) the BatchNorm, residual and ReLU run as one
/// op with gradients, bit for bit the three.
public func convBN(_ x: Tensor, _ conv: Conv2d, _ bn: BatchNorm2d, residual: Tensor? = nil, relu: Bool) -> Tensor {
    guard bn.foldable(conv, [x] + (residual.map { [$0] } ?? [])) else { return bn(conv(x), residual: residual, relu: relu) }
    let (scale, shift) = bn.runningAffine()
    return conv2dFused(x, conv.weight, conv.bias, scale: scale, shift: shift, residual: residual, relu: relu,
                       stride: conv.stride, padding: conv.padding, dilation: conv.dilation, groups: conv.groups)
}

/// relu(bn(x)) in one pass when the BatchNorm uses running statistics and nothing needs a gradient.
public func bnReLU(_ x: Tensor, _ bn: BatchNorm2d) -> Tensor {
    guard bn.foldable(nil, [x]) else { return bn(x, residual: nil, relu: true) }
    FlopCounter.add("batch_norm", 2 * x.count, weight: bn.weight)
    let (scale, shift) = bn.runningAffine()
    return channelAffine(x, scale: scale, shift: shift, relu: true)
}

/// bn(conv(x)) [+ residual] [then ReLU] on a chained bf16 activation (`ConvChain`, inference only): the BatchNorm's
/// running affine folds into the weights and bias, the residual and the ReLU into the kernel. The result is written
/// into `residual`'s buffer when there is one.
///
/// int8 (`ConvChain.int8Mixed`): a convolution calibration quantized runs at int8 on its input as u8 or s8, its output
/// in bf16 (summed into the shortcut's buffer, as bf16's) or u8 (see `feeding`).
public func convBN(_ x: ChainTensor, _ conv: Conv2d, _ bn: BatchNorm2d, residual: ChainTensor? = nil, relu: Bool,
                   feeding next: Conv2d? = nil) -> ChainTensor {
    precondition(bn.usesRunningStatistics && conv.groups == 1, "a chained convBN needs running statistics and no groups")
    let (scale, shift) = bn.runningAffine()
    return conv.chained(x, scale: scale, shift: shift, residual: residual, relu: relu, f32: false, feeding: next)
}

extension Conv2d {
    /// The convolution [+ residual] [then ReLU] on a chained bf16 activation (`ConvChain`, inference only; the result
    /// is written into `residual`'s buffer); with `f32` its output is float32 (a head's final logits). int8 as `convBN`'s.
    public func callAsFunction(_ x: ChainTensor, residual: ChainTensor? = nil, relu: Bool = false, f32: Bool = false,
                               feeding next: Conv2d? = nil) -> ChainTensor {
        chained(x, scale: nil, shift: nil, residual: residual, relu: relu, f32: f32, feeding: next)
    }

    /// Both forms, with a BatchNorm's running affine (scale, shift) or none. int8: when `next`, the one convolution that
    /// reads the output, is quantized for u8 inputs, the output is written as u8 with its input scale (what it would
    /// quantize a bf16 output to), else in bf16.
    func chained(_ x: ChainTensor, scale: Tensor?, shift: Tensor?, residual: ChainTensor?, relu: Bool, f32: Bool,
                 feeding next: Conv2d?) -> ChainTensor {
        precondition(groups == 1, "a chained convolution has no groups")
        if ConvChain.int8Mixed, let model = Int8Inference.model, let q = model.layer(weight: weight) {
            let consumer = next.flatMap { model.layer(weight: $0.weight) }.flatMap { $0.inputSigned ? nil : $0 }
            return ConvChain.conv(ConvChain.int8Input(x, q), quantized: q, weight: weight, bias: bias, scale: scale, shift: shift,
                                  stride: stride, padding: padding, dilation: dilation, relu: relu, residual: residual,
                                  output: f32 ? .f32 : consumer == nil ? .bf16 : .u8, outputScale: consumer?.inputScale ?? 1)
        }
        return ConvChain.conv(ConvChain.floatInput(x), weight: weight, bias: bias, scale: scale, shift: shift, stride: stride,
                              padding: padding, dilation: dilation, relu: relu, residual: residual, f32: f32)
    }
}

/// The int8 form on chained activations (`ConvChain.int8Active`): x u8, the convolution's calibrated int8 weights `q`,
/// the BatchNorm in the kernel's epilogue, the shortcut (bf16, real values) added there; output u8 with `outputScale`
/// (the next convolution's input scale), or bf16 / float32.
public func convBN(_ x: ChainTensor, _ conv: Conv2d, _ bn: BatchNorm2d, quantized q: QuantizedConv, residual: ChainTensor? = nil,
                   relu: Bool, output: ChainType, outputScale: Float = 1) -> ChainTensor {
    precondition(bn.usesRunningStatistics && conv.groups == 1, "a chained convBN needs running statistics and no groups")
    let (scale, shift) = bn.runningAffine()
    return ConvChain.conv(x, quantized: q, weight: conv.weight, bias: conv.bias, scale: scale, shift: shift, stride: conv.stride,
                          padding: conv.padding, dilation: conv.dilation, relu: relu, residual: residual, output: output,
                          outputScale: outputScale)
}
