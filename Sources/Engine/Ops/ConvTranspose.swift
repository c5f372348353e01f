/// 2-D transposed convolution (PyTorch's conv_transpose2d: stride, padding; no output padding, dilation or
/// groups). It is the adjoint of conv2d, so it runs on conv2d's kernels with the roles swapped: its forward is
/// conv2d's input gradient, its input gradient is conv2d's forward, its weight gradient conv2d's weight gradient
/// with input and output exchanged.

/// x [N, Cin, H, W], weight [Cin, Cout, kh, kw] (PyTorch's layout), bias [Cout]
/// → [N, Cout, (H − 1)·stride − 2·padding + kh, (W − 1)·stride − 2·padding + kw].
public func convTranspose2d(_ x: Tensor, _ weight: Tensor, _ bias: Tensor? = nil,
                            stride: (Int, Int) = (1, 1), padding: (Int, Int) = (0, 0)) -> Tensor {
    precondition(x.rank == 4 && weight.rank == 4 && weight.shape[0] == x.shape[1],
                 "conv_transpose2d: input \(x.shape), weight \(weight.shape)")
    let (n, cin, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
    let (cout, kh, kw) = (weight.shape[1], weight.shape[2], weight.shape[3])
    let ho = (h - 1) * stride.0 - 2 * padding.0 + kh, wo = (w - 1) * stride.1 - 2 * padding.1 + kw
    precondition(ho > 0 && wo > 0 && stride.0 > 0 && stride.1 > 0, "conv_transpose2d: output \(ho)x\(wo)")
    precondition(bias == nil || bias!.shape == [cout], "conv_transpose2d: bias \(bias!.shape) for \(cout) channels")
    // The conv2d whose input gradient this is: input [N, Cout, Ho, Wo] → output [N, Cin, H, W].
    let g = Conv2dGeometry(n: n, c: cout, h: ho, w: wo, o: cin, kh: kh, kw: kw, sh: stride.0, sw: stride.1,
                           ph: padding.0, pw: padding.1, dh: 1, dw: 1, groups: 1, ho: h, wo: w)
    let out = Tensor(zeros: [n, cout, ho, wo])
    FlopCounter.add("conv_transpose", x.count * cout * kh * kw, weight: weight)
    if MixedPrecision.active {
        // bf16: the float32 kernel on rounded operands (the mask head's one deconvolution; bf16 numerics, float32 speed).
        withRoundedOperands(x.data, count: x.count, weight.data, count: weight.count) { rx, rw in
            convBackward(g, out.data, rw, rx, out.data, nil)
        }
    } else {
        convBackward(g, out.data, weight.data, x.data, out.data, nil)
    }
    if let bias {
        let y = out.data, b = bias.data, plane = ho * wo
        parallelFor(n * cout, cost: plane) { i in
            let v = b[i % cout], p = y + i * plane
            for j in 0..<plane { p[j] += v }
        }
    }
    let inputs = [x, weight] + (bias.map { [$0] } ?? [])
    return out.record("conv_transpose2d", inputs) { gy in
        var gx: Tensor? = nil, gw: Tensor? = nil, gb: Tensor? = nil
        if x.requiresGrad {
            gx = Tensor(uninitialized: x.shape)
            convForward(g, gy.data, weight.data, nil, gx!.data)
        }
        if weight.requiresGrad {
            gw = Tensor(zeros: weight.shape)
            convBackward(g, gy.data, weight.data, x.data, nil, gw!.data)
        }
        if let bias, bias.requiresGrad { gb = gy.sum(axes: [0, 2, 3]) }
        return [gx, gw, gb]
    }
}
