/// Convolution with its output epilogue fused: act(conv2d(x, weight, bias)·scale + shift + residual).
///
/// scale and shift are per output channel ([O]; an eval-mode BatchNorm's running-statistics affine), residual has
/// the output's shape [N, O, Ho, Wo] (a ResNet shortcut), act is ReLU when `relu`. Without gradients the epilogue
/// runs inside the convolution (oneDNN post-ops, or one pass after the engine's kernel) instead of one pass over the
/// output per op, and no intermediate is allocated. When an input needs a gradient it records the same ops unfused,
/// so the result and every gradient are those of the composition.
public func conv2dFused(_ x: Tensor, _ weight: Tensor, _ bias: Tensor? = nil, scale: Tensor? = nil, shift: Tensor? = nil,
                        residual: Tensor? = nil, relu: Bool = false, stride: (Int, Int) = (1, 1), padding: (Int, Int) = (0, 0),
                        dilation: (Int, Int) = (1, 1), groups: Int = 1) -> Tensor {
    let g = Conv2dGeometry(x.shape, weight.shape, stride: stride, padding: padding, dilation: dilation, groups: groups)
    precondition(scale == nil || scale!.count == g.o, "conv2dFused: scale \(scale!.shape) for \(g.o) channels")
    precondition(shift == nil || shift!.count == g.o, "conv2dFused: shift \(shift!.shape) for \(g.o) channels")
    precondition(residual == nil || residual!.shape == [g.n, g.o, g.ho, g.wo],
                 "conv2dFused: residual \(residual!.shape) for output [\(g.n), \(g.o), \(g.ho), \(g.wo)]")
    let inputs = [x, weight] + [bias, scale, shift, residual].compactMap { $0 }
    if GradMode.isEnabled && inputs.contains(where: { $0.requiresGrad }) {
        var y = conv2d(x, weight, bias, stride: stride, padding: padding, dilation: dilation, groups: groups)
        if let scale { y = y * scale.reshape([1, g.o, 1, 1]) }
        if let shift { y = y + shift.reshape([1, g.o, 1, 1]) }
        if let residual { y = y + residual }
        return relu ? y.relu() : y
    }
    let out = Tensor(uninitialized: [g.n, g.o, g.ho, g.wo])
    FlopCounter.add("conv", out.count * g.k, weight: weight)
    if scale != nil { FlopCounter.add("batch_norm", 2 * out.count) }
    convForward(g, x.data, weight.data, bias?.data, out.data,
                epilogue: ConvEpilogue(scale: scale?.data, shift: shift?.data, residual: residual?.data, relu: relu),
                inference: true)
    OpProfile.forward("conv2d_fused", inputs)
    return out
}

/// act(x·scale + shift) per channel of x [N, C, ...] (scale, shift [C]; act ReLU when `relu`) in one pass; records
/// the unfused ops when an input needs a gradient.
public func channelAffine(_ x: Tensor, scale: Tensor, shift: Tensor, relu: Bool) -> Tensor {
    let c = x.shape[1]
    precondition(scale.count == c && shift.count == c, "channelAffine: scale \(scale.shape), shift \(shift.shape) for \(x.shape)")
    if GradMode.isEnabled && (x.requiresGrad || scale.requiresGrad || shift.requiresGrad) {
        let b = [1, c] + [Int](repeating: 1, count: x.rank - 2)
        let y = x * scale.reshape(b) + shift.reshape(b)
        return relu ? y.relu() : y
    }
    let out = Tensor(uninitialized: x.shape)
    let s = x.count / (x.shape[0] * c), xd = x.data, y = out.data, sc = scale.data, sh = shift.data
    parallelFor(x.shape[0] * c, cost: s) { p in
        let a = sc[p % c], b = sh[p % c], src = xd + p * s, dst = y + p * s
        if relu { for i in 0..<s { dst[i] = Swift.max(src[i] * a + b, 0) } } else { for i in 0..<s { dst[i] = src[i] * a + b } }
    }
    OpProfile.forward("channel_affine", [x, scale, shift])
    return out
}
