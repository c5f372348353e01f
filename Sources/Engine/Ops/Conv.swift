import Dispatch

/// 2-D convolution (PyTorch's conv2d: stride, padding, dilation, groups, bias).
/// Each pass (forward, backward-data, backward-weights) runs in oneDNN or in the engine's kernels, whichever
/// measured faster for its shape (`ConvPolicy`). The engine's: 1×1 stride-1 convolutions are one sgemm per image
/// with no im2col; depthwise convolutions use a direct kernel; everything else is im2col + sgemm per image and
/// group. The backward recomputes im2col rather than keeping the column matrix alive between forward and backward.

public struct Conv2dGeometry {
    public let n, c, h, w, o, kh, kw, sh, sw, ph, pw, dh, dw, groups, ho, wo: Int
    var cg: Int { c / groups }
    var og: Int { o / groups }
    var k: Int { cg * kh * kw }
    var isPointwise: Bool { kh == 1 && kw == 1 && sh == 1 && sw == 1 && ph == 0 && pw == 0 }
    /// Grouped convolutions with few inputs per output (depthwise, ACmix's shift conv with 9 per group) run as a
    /// direct kernel: per group an im2col and a tiny sgemm would cost far more than the arithmetic.
    var isDirect: Bool { groups > 1 && cg * kh * kw <= 128 }
    /// Output rows per im2col strip: the column matrix stays near 16 MB (in cache-friendly pieces, never the
    /// gigabyte a 2048-channel 3×3 conv at 128×128 would need whole).
    var stripRows: Int { max(1, min(ho, (4 << 20) / max(k * wo, 1))) }
    /// Whether bf16 (`--precision bf16`, `amp`) runs this convolution on bf16 operands. Those with fewer than 16 inputs
    /// per output, and the direct kernel's grouped ones (ACmix's shift convolution, its 12→9 attention projection, its
    /// positional encoding), stay float32: too little arithmetic per byte for the matrix units, and the conversions
    /// made them 2–4× slower than float32 (ACmix-ResNet-50 amp training step, Zen 4).
    var takesBF16: Bool { !isDirect && k >= 16 }
    /// Whether a bf16 pass runs in oneDNN's blocked layouts rather than on dense NCHW (its gemm convolution). Training
    /// passes of unpadded 1×1 convolutions (any stride) run dense: blocked, every pass relaid out the weight (and the
    /// weight gradient back), and the forward its float32 output back to NCHW, which cost 10–25 % of the product on
    /// ResNet's shapes; dense, the input, weight and output gradient are converted once and shared by the passes
    /// (`DenseBF16Operands`). In the ACmix-ResNet-50 amp step that took the conversions from 107 to 29 thread-ms per
    /// step, the products from 257 to 267 (ONEDNN_VERBOSE, Zen 4). At inference the forward stays blocked, where the
    /// converted weights are kept.
    func bf16Blocked(_ pass: ConvPass, training: Bool = true) -> Bool {
        !(kh == 1 && kw == 1 && ph == 0 && pw == 0) || pass == .forward && !training
    }
}

/// x [N, C, H, W], weight [O, C/groups, kh, kw], bias [O] → [N, O, Ho, Wo]. With `relu`, the ReLU runs in the
/// convolution's epilogue and its mask in the backward: the values and gradients of `conv2d(...).relu()`.
public func conv2d(_ x: Tensor, _ weight: Tensor, _ bias: Tensor? = nil,
                   stride: (Int, Int) = (1, 1), padding: (Int, Int) = (0, 0),
                   dilation: (Int, Int) = (1, 1), groups: Int = 1, relu: Bool = false) -> Tensor {
    let g = Conv2dGeometry(x.shape, weight.shape, stride: stride, padding: padding, dilation: dilation, groups: groups)
    let out = Tensor(uninitialized: [g.n, g.o, g.ho, g.wo])
    FlopCounter.add("conv", out.count * g.k, weight: weight)
    let inputs = [x, weight] + (bias.map { [$0] } ?? [])
    let inference = !GradMode.isEnabled || !inputs.contains(where: { $0.requiresGrad })
    let dense = inference ? nil : DenseBF16Operands(g, x: x, weight: weight, bias: bias, y: out, relu: relu)
    if dense == nil {
        convForward(g, x.data, weight.data, bias?.data, out.data, epilogue: ConvEpilogue(relu: relu), inference: inference)
    }
    let ys = relu ? out.detached() : nil   // the ReLU's mask (not `out` itself: out → node → closure → out is a cycle)
    return out.record(relu ? "conv2d_relu" : "conv2d", inputs) { gOut in
        let gy = ys.map { reluMasked(gOut, by: $0) } ?? gOut
        let (gx, gw) = dense?.gradients(g, gy, input: x.requiresGrad, weight: weight.requiresGrad)
            ?? conv2dGradients(g, x, weight, gy, input: x.requiresGrad, weight: weight.requiresGrad)
        var gb: Tensor? = nil
        if let bias, bias.requiresGrad { gb = gy.sum(axes: [0, 2, 3]) }
        return [gx, gw, gb]
    }
}

/// The gradients of conv2d with respect to its input (when `input`) and its weight (when `weight`) for the output
/// gradient gy [N, O, Ho, Wo] (PyTorch's torch.nn.grad.conv2d_input / conv2d_weight); records nothing.
public func conv2dGradients(_ x: Tensor, _ weight: Tensor, _ gy: Tensor, stride: (Int, Int) = (1, 1),
                            padding: (Int, Int) = (0, 0), dilation: (Int, Int) = (1, 1), groups: Int = 1,
                            input: Bool = true, weight needWeight: Bool = true) -> (Tensor?, Tensor?) {
    let g = Conv2dGeometry(x.shape, weight.shape, stride: stride, padding: padding, dilation: dilation, groups: groups)
    precondition(gy.shape == [g.n, g.o, g.ho, g.wo], "conv2dGradients: gy \(gy.shape) for output [\(g.n), \(g.o), \(g.ho), \(g.wo)]")
    return conv2dGradients(g, x, weight, gy, input: input, weight: needWeight)
}

func conv2dGradients(_ g: Conv2dGeometry, _ x: Tensor, _ weight: Tensor, _ gy: Tensor, input: Bool, weight needWeight: Bool)
    -> (Tensor?, Tensor?) {
    // Uninitialised: oneDNN overwrites them, and `convBackward` zeroes them where the engine's kernels accumulate.
    let gx = input ? Tensor(uninitialized: x.shape) : nil
    let gw = needWeight ? Tensor(uninitialized: weight.shape) : nil
    if MixedPrecision.active && g.takesBF16 {
        // bf16 training (`amp`): both gradients from bf16 operands, accumulated in float32; natively oneDNN's bf16
        // backward kernels, else the float32 kernels on rounded copies.
        if MixedPrecision.native {
            let dataDone = gx.map { oneDNNConv(.backwardData, g, blocked: g.bf16Blocked(.backwardData), x: $0.data, w: weight.data, y: gy.data, bf16: true) } ?? true
            let weightDone = gw.map { oneDNNConv(.backwardWeights, g, blocked: g.bf16Blocked(.backwardWeights), x: x.data, w: $0.data, y: gy.data, bf16: true) } ?? true
            if dataDone && weightDone {
                MixedPrecision.count(native: true)
                return (gx, gw)
            }
        }
        withRoundedOperands([(UnsafePointer(x.data), x.count), (UnsafePointer(weight.data), weight.count), (UnsafePointer(gy.data), gy.count)]) { r in
            convBackward(g, r[0], r[1], r[2], gx?.data, gw?.data)
        }
    } else {
        MixedPrecision.float32 { convBackward(g, x.data, weight.data, gy.data, gx?.data, gw?.data) }
    }
    return (gx, gw)
}

extension Conv2dGeometry {
    /// The same convolution on `n` images.
    func images(_ n: Int) -> Conv2dGeometry {
        Conv2dGeometry(n: n, c: c, h: h, w: w, o: o, kh: kh, kw: kw, sh: sh, sw: sw, ph: ph, pw: pw, dh: dh, dw: dw, groups: groups,
                       ho: ho, wo: wo)
    }

    /// The geometry of conv2d on an input of shape `x` with a weight of shape `w`, checked.
    public init(_ x: [Int], _ w: [Int], stride: (Int, Int) = (1, 1), padding: (Int, Int) = (0, 0), dilation: (Int, Int) = (1, 1),
                groups: Int = 1) {
        precondition(x.count == 4 && w.count == 4, "conv2d expects 4-D input and weight, got \(x), \(w)")
        let (n, c, h, wd) = (x[0], x[1], x[2], x[3])
        let (o, kh, kw) = (w[0], w[2], w[3])
        precondition(c % groups == 0 && o % groups == 0 && w[1] == c / groups, "conv2d: input \(x), weight \(w), groups \(groups)")
        let ho = (h + 2 * padding.0 - dilation.0 * (kh - 1) - 1) / stride.0 + 1
        let wo = (wd + 2 * padding.1 - dilation.1 * (kw - 1) - 1) / stride.1 + 1
        precondition(ho > 0 && wo > 0, "conv2d: input \(h)x\(wd) too small for kernel \(kh)x\(kw)")
        self.init(n: n, c: c, h: h, w: wd, o: o, kh: kh, kw: kw, sh: stride.0, sw: stride.1, ph: padding.0, pw: padding.1,
                  dh: dilation.0, dw: dilation.1, groups: groups, ho: ho, wo: wo)
    }
}

/// What a forward convolution does to its output after the bias: y = act(y·scale + shift + residual), each part
/// optional; scale and shift per output channel, the residual the output's shape, act ReLU or none.
struct ConvEpilogue {
    var scale: UnsafeMutablePointer<Float>? = nil
    var shift: UnsafeMutablePointer<Float>? = nil
    var residual: UnsafeMutablePointer<Float>? = nil
    var relu = false
    var isEmpty: Bool { scale == nil && shift == nil && residual == nil && !relu }

    /// Applies the epilogue in place to y [N, O, S] (the engine's kernels; oneDNN fuses it into the convolution).
    func apply(_ y: UnsafeMutablePointer<Float>, n: Int, o: Int, plane s: Int) {
        if isEmpty { return }
        parallelFor(n * o, cost: s) { p in applyRow(y, p, o: o, plane: s) }
    }

    /// Applies it on this thread to the images and output channels of one slice of y [N, O, S].
    func apply(_ y: UnsafeMutablePointer<Float>, images: Range<Int>, channels: Range<Int>, o: Int, plane s: Int) {
        if isEmpty { return }
        for b in images { for ch in channels { applyRow(y, b * o + ch, o: o, plane: s) } }
    }

    /// Row p (image p / o, channel p % o) of y [N, O, S].
    @inline(__always)
    private func applyRow(_ y: UnsafeMutablePointer<Float>, _ p: Int, o: Int, plane s: Int) {
        apply(y + p * s, count: s, channel: p % o, residualAt: p * s)
    }

    /// Applies it on this thread to `count` consecutive outputs of output channel `ch`, which sit at `offset` in y
    /// (the residual's same elements are at that offset in it).
    @inline(__always)
    func apply(_ row: UnsafeMutablePointer<Float>, count: Int, channel ch: Int, residualAt offset: Int) {
        let sc = scale?[ch] ?? 1, sh = shift?[ch] ?? 0
        if let residual {
            let r = residual + offset
            if relu { for i in 0..<count { row[i] = Swift.max(row[i] * sc + sh + r[i], 0) } }
            else { for i in 0..<count { row[i] = row[i] * sc + sh + r[i] } }
        } else {
            if relu { for i in 0..<count { row[i] = Swift.max(row[i] * sc + sh, 0) } }
            else { for i in 0..<count { row[i] = row[i] * sc + sh } }
        }
    }
}

/// `inference`: no gradient will be taken through this pass, so it may run the Winograd kernel
/// (`ConvPolicy.winogradAtInference`), the int8 kernels of a quantized model (`Int8Inference`), and calibration's
/// observer sees it.
func convForward(_ g: Conv2dGeometry, _ x: UnsafeMutablePointer<Float>, _ w: UnsafeMutablePointer<Float>,
                 _ bias: UnsafeMutablePointer<Float>?, _ y: UnsafeMutablePointer<Float>, epilogue: ConvEpilogue = ConvEpilogue(),
                 inference: Bool = false) {
    if inference && MixedPrecision.inference == .int8, let q = Int8Inference.model?.layer(for: w, g) {
        int8ConvForward(g, x, q, bias, y, epilogue: epilogue, native: Int8Inference.native)
    } else {
        convForwardFloat(g, x, w, bias, y, epilogue: epilogue, inference: inference)
    }
    if inference, let observer = Int8Inference.observer {
        observer.observe(weight: w, groups: g.groups, input: UnsafeBufferPointer(start: x, count: g.n * g.c * g.h * g.w),
                         output: UnsafeBufferPointer(start: y, count: g.n * g.o * g.ho * g.wo))
    }
}

/// The float32 or bf16 forward (`MixedPrecision`).
func convForwardFloat(_ g: Conv2dGeometry, _ x: UnsafeMutablePointer<Float>, _ w: UnsafeMutablePointer<Float>,
                      _ bias: UnsafeMutablePointer<Float>?, _ y: UnsafeMutablePointer<Float>, epilogue: ConvEpilogue,
                      inference: Bool) {
    if MixedPrecision.active && g.takesBF16 && !(inference && ConvPolicy.winogradOverBF16(g)) {
        // bf16: natively oneDNN's bf16 kernels (AMX / AVX512-BF16) with the epilogue in float32; else the float32
        // kernels on rounded operands (never Winograd, whose transforms would round differently).
        if MixedPrecision.native && bf16ConvForward(g, x, w, bias, y, epilogue: epilogue) {
            MixedPrecision.count(native: true)
            return
        }
        withRoundedOperands(x, count: g.n * g.c * g.h * g.w, w, count: g.o * g.cg * g.kh * g.kw) { rx, rw in
            convForward32(g, rx, rw, bias, y, epilogue: epilogue, inference: false)
        }
        return
    }
    MixedPrecision.float32 { convForward32(g, x, w, bias, y, epilogue: epilogue, inference: inference) }
}

/// A bf16 forward through oneDNN's blocked bf16 kernels, with the same epilogue handling as the float32 blocked one;
/// false when oneDNN has none for this geometry.
func bf16ConvForward(_ g: Conv2dGeometry, _ x: UnsafeMutablePointer<Float>, _ w: UnsafeMutablePointer<Float>,
                     _ bias: UnsafeMutablePointer<Float>?, _ y: UnsafeMutablePointer<Float>, epilogue: ConvEpilogue) -> Bool {
    // Packed weights only in passes without gradients (amp training changes its weights every step).
    let packed = MixedPrecision.trainingPass ? nil : FrozenWeights.packed(w)
    let blocked = g.bf16Blocked(.forward, training: MixedPrecision.trainingPass)
    if epilogue.residual == nil {
        return oneDNNConv(.forward, g, blocked: blocked, x: x, w: w, y: y, bias: bias, epilogue: epilogue, bf16: true, packed: packed)
    }
    return oneDNNConv(.forward, g, blocked: blocked, x: x, w: w, y: y, bias: bias, epilogue: ConvEpilogue(scale: epilogue.scale, shift: epilogue.shift),
                      then: ConvEpilogue(residual: epilogue.residual, relu: epilogue.relu), bf16: true, packed: packed)
}

/// The float32 forward: Winograd where allowed, then the implementation `ConvPolicy` picks.
func convForward32(_ g: Conv2dGeometry, _ x: UnsafeMutablePointer<Float>, _ w: UnsafeMutablePointer<Float>,
                   _ bias: UnsafeMutablePointer<Float>?, _ y: UnsafeMutablePointer<Float>, epilogue: ConvEpilogue = ConvEpilogue(),
                   inference: Bool = false) {
    if inference && ConvPolicy.engineWinograd(g) {
        EngineWinograd.forward(g, x, w, bias, y, epilogue: epilogue)
        ConvPolicy.winogradRuns.add(1, ordering: .relaxed)
        return
    }
    let impl = ConvPolicy.implementation(for: g, .forward)
    // A frozen model's weights keep their blocked (and Winograd-transformed) forms across calls.
    let packed = inference && impl == .oneDNNBlocked ? FrozenWeights.packed(w) : nil
    if inference && impl == .oneDNNBlocked && ConvPolicy.winograd(g) {
        // Its kernel takes an eltwise post-op (the ReLU) but no per-channel affine: that one runs as a pass after.
        let alone = epilogue.scale == nil && epilogue.shift == nil && epilogue.residual == nil
        if oneDNNConv(.forward, g, blocked: true, x: x, w: w, y: y, bias: bias, epilogue: alone ? epilogue : ConvEpilogue(),
                      then: alone ? ConvEpilogue() : epilogue, winograd: true, packed: packed) {
            ConvPolicy.winogradRuns.add(1, ordering: .relaxed)
            return
        }
    }
    switch impl {
    case .oneDNNBlocked:
        // Its JIT kernels apply the per-channel affine and the ReLU in registers, as post-ops. They take a sum
        // post-op (the residual) only first, before the affine: the residual and what follows it then take one pass.
        if epilogue.residual == nil {
            if oneDNNConv(.forward, g, blocked: true, x: x, w: w, y: y, bias: bias, epilogue: epilogue, packed: packed) { return }
        } else if oneDNNConv(.forward, g, blocked: true, x: x, w: w, y: y, bias: bias,
                             epilogue: ConvEpilogue(scale: epilogue.scale, shift: epilogue.shift),
                             then: ConvEpilogue(residual: epilogue.residual, relu: epilogue.relu), packed: packed) {
            return
        }
    case .oneDNNPlain:
        // Its gemm convolution runs binary and sum post-ops element by element (40× slower): each slice applies the
        // epilogue to its own output right after its product instead, while it is still in cache.
        if oneDNNConv(.forward, g, blocked: false, x: x, w: w, y: y, bias: bias, then: epilogue) { return }
    case .engine: break
    }
    engineConvForward(g, x, w, bias, y)
    epilogue.apply(y, n: g.n, o: g.o, plane: g.ho * g.wo)
}

/// Writes gx and gw (each when asked for; their previous contents are ignored).
func convBackward(_ g: Conv2dGeometry, _ x: UnsafeMutablePointer<Float>, _ w: UnsafeMutablePointer<Float>,
                  _ gy: UnsafeMutablePointer<Float>, _ gx: UnsafeMutablePointer<Float>?, _ gw: UnsafeMutablePointer<Float>?) {
    var gx = gx, gw = gw
    if let out = gx {
        let impl = ConvPolicy.implementation(for: g, .backwardData)
        if impl != .engine && oneDNNConv(.backwardData, g, blocked: impl == .oneDNNBlocked, x: out, w: w, y: gy) { gx = nil }
    }
    if let out = gw {
        let impl = ConvPolicy.implementation(for: g, .backwardWeights)
        if impl != .engine && oneDNNConv(.backwardWeights, g, blocked: impl == .oneDNNBlocked, x: x, w: out, y: gy) { gw = nil }
    }
    // The engine's kernels accumulate.
    if let gx { parallelChunks(g.n * g.c * g.h * g.w, minimum: 1 << 18) { a, b in (gx + a).update(repeating: 0, count: b - a) } }
    if let gw { parallelChunks(g.o * g.k, minimum: 1 << 18) { a, b in (gw + a).update(repeating: 0, count: b - a) } }
    if gx != nil || gw != nil { engineConvBackward(g, x, w, gy, gx, gw) }
}

func engineConvForward(_ g: Conv2dGeometry, _ x: UnsafeMutablePointer<Float>, _ w: UnsafeMutablePointer<Float>,
                       _ bias: UnsafeMutablePointer<Float>?, _ y: UnsafeMutablePointer<Float>) {
    let hw = g.h * g.w, howo = g.ho * g.wo
    if let bias {
        parallelFor(g.n * g.o, cost: howo) { i in (y + i * howo).update(repeating: bias[i % g.o], count: howo) }
    }
    let beta: Float = bias == nil ? 0 : 1
    if g.isDirect {
        if bias == nil { y.update(repeating: 0, count: g.n * g.o * howo) }
        directForward(g, x, w, y)
        return
    }
    if g.isPointwise && g.groups == 1 {
        for b in 0..<g.n {
            sgemm(m: g.o, n: hw, k: g.c, a: w, lda: g.c, b: x + b * g.c * hw, ldb: hw, beta: beta, c: y + b * g.o * howo, ldc: hw)
        }
        return
    }
    let strip = g.stripRows, cols = Storage(count: g.k * strip * g.wo)
    for b in 0..<g.n {
        for gr in 0..<g.groups {
            for r0 in stride(from: 0, to: g.ho, by: strip) {
                let rows = r0..<min(g.ho, r0 + strip), n = rows.count * g.wo
                im2col(g, x + (b * g.c + gr * g.cg) * hw, cols.pointer, rows: rows)
                sgemm(m: g.og, n: n, k: g.k, a: w + gr * g.og * g.k, lda: g.k, b: cols.pointer, ldb: n,
                      beta: beta, c: y + (b * g.o + gr * g.og) * howo + r0 * g.wo, ldc: howo)
            }
        }
    }
}

func engineConvBackward(_ g: Conv2dGeometry, _ x: UnsafeMutablePointer<Float>, _ w: UnsafeMutablePointer<Float>,
                        _ gy: UnsafeMutablePointer<Float>, _ gx: UnsafeMutablePointer<Float>?, _ gw: UnsafeMutablePointer<Float>?) {
    let hw = g.h * g.w, howo = g.ho * g.wo
    if g.isDirect { directBackward(g, x, w, gy, gx, gw); return }
    // Images split over the threads, each with its own columns and (after the first) its own weight-gradient sum,
    // added in slice order at the end: one parallel region per convolution instead of two per image and strip
    // (small maps' products were too short to split well; RetinaNet's shapes step about 5 % faster on 2 threads).
    // Not where the weight gradient outnumbers the activations (small maps): each slice's partial sum then cost more
    // than its product, and the products split by weight rows inside `sgemm` instead (ACmix-ResNet-50's 1×1 weight
    // gradients on 7×7 and 14×14 maps scaled 1.5–1.6× on 2 threads).
    let weightBound = gw != nil && g.o * g.k > g.n * (g.c * hw + g.o * howo)
    let parts = g.n * g.o * howo * g.k >= 1 << 20 && !weightBound ? min(Threads.serialHere ? 1 : Threads.count, g.n) : 1
    if parts > 1 {
        let wCount = g.o * g.k
        let extra = gw == nil ? nil : UnsafeMutablePointer<Float>.allocate(capacity: (parts - 1) * wCount)
        extra?.initialize(repeating: 0, count: (parts - 1) * wCount)
        defer { extra?.deallocate() }
        Threads.run(parts) { p in
            let b0 = g.n * p / parts, b1 = g.n * (p + 1) / parts
            serially {
                engineConvBackward(g.images(b1 - b0), x + b0 * g.c * hw, w, gy + b0 * g.o * howo, gx.map { $0 + b0 * g.c * hw },
                                   p == 0 ? gw : extra.map { $0 + (p - 1) * wCount })
            }
        }
        if let gw, let extra {
            for p in 1..<parts {
                let src = extra + (p - 1) * wCount
                parallelChunks(wCount) { a, b in for j in a..<b { gw[j] += src[j] } }
            }
        }
        return
    }
    if g.isPointwise && g.groups == 1 {
        for b in 0..<g.n {
            if let gx {
                sgemm(transA: true, m: g.c, n: hw, k: g.o, a: w, lda: g.c, b: gy + b * g.o * hw, ldb: hw, c: gx + b * g.c * hw, ldc: hw)
            }
            if let gw {
                sgemm(transB: true, m: g.o, n: g.c, k: hw, a: gy + b * g.o * hw, lda: hw, b: x + b * g.c * hw, ldb: hw,
                      beta: 1, c: gw, ldc: g.c)
            }
        }
        return
    }
    let strip = g.stripRows, cols = Storage(count: g.k * strip * g.wo)
    for b in 0..<g.n {
        for gr in 0..<g.groups {
            let gyg = gy + (b * g.o + gr * g.og) * howo
            for r0 in stride(from: 0, to: g.ho, by: strip) {
                let rows = r0..<min(g.ho, r0 + strip), n = rows.count * g.wo
                if let gw {
                    im2col(g, x + (b * g.c + gr * g.cg) * hw, cols.pointer, rows: rows)
                    sgemm(transB: true, m: g.og, n: g.k, k: n, a: gyg + r0 * g.wo, lda: howo, b: cols.pointer, ldb: n,
                          beta: 1, c: gw + gr * g.og * g.k, ldc: g.k)
                }
                if let gx {
                    sgemm(transA: true, m: g.k, n: n, k: g.og, a: w + gr * g.og * g.k, lda: g.k, b: gyg + r0 * g.wo, ldb: howo,
                          c: cols.pointer, ldc: n)
                    col2im(g, cols.pointer, gx + (b * g.c + gr * g.cg) * hw, rows: rows)
                }
            }
        }
    }
}

/// Column matrix [cg·kh·kw, rows·Wo] of one image's group of channels for output rows `rows`; zero where the
/// window leaves the image.
func im2col(_ g: Conv2dGeometry, _ x: UnsafeMutablePointer<Float>, _ cols: UnsafeMutablePointer<Float>, rows: Range<Int>) {
    let howo = rows.count * g.wo
    parallelFor(g.cg, cost: g.kh * g.kw * howo) { c in
        let plane = x + c * g.h * g.w
        for ki in 0..<g.kh {
            for kj in 0..<g.kw {
                let row = cols + ((c * g.kh + ki) * g.kw + kj) * howo
                let (lo, hi) = validRange(g.wo, g.w, g.sw, g.pw, kj * g.dw)
                for oh in rows {
                    let ih = oh * g.sh - g.ph + ki * g.dh
                    let dst = row + (oh - rows.lowerBound) * g.wo
                    if ih < 0 || ih >= g.h { dst.update(repeating: 0, count: g.wo); continue }
                    let src = plane + ih * g.w - g.pw + kj * g.dw
                    if lo > 0 { dst.update(repeating: 0, count: lo) }
                    if g.sw == 1 {
                        if hi > lo { (dst + lo).update(from: src + lo, count: hi - lo) }
                    } else {
                        for ow in lo..<max(lo, hi) { dst[ow] = src[ow * g.sw] }
                    }
                    if hi < g.wo { (dst + max(hi, lo)).update(repeating: 0, count: g.wo - max(hi, lo)) }
                }
            }
        }
    }
}

/// Adds a column matrix of output rows `rows` back into an image's group of channels (the adjoint of im2col).
func col2im(_ g: Conv2dGeometry, _ cols: UnsafeMutablePointer<Float>, _ x: UnsafeMutablePointer<Float>, rows: Range<Int>) {
    let howo = rows.count * g.wo
    parallelFor(g.cg, cost: g.kh * g.kw * howo) { c in
        let plane = x + c * g.h * g.w
        for ki in 0..<g.kh {
            for kj in 0..<g.kw {
                let row = cols + ((c * g.kh + ki) * g.kw + kj) * howo
                let (lo, hi) = validRange(g.wo, g.w, g.sw, g.pw, kj * g.dw)
                for oh in rows {
                    let ih = oh * g.sh - g.ph + ki * g.dh
                    if ih < 0 || ih >= g.h { continue }
                    let src = row + (oh - rows.lowerBound) * g.wo
                    let dst = plane + ih * g.w - g.pw + kj * g.dw
                    for ow in lo..<max(lo, hi) { dst[ow * g.sw] += src[ow] }
                }
            }
        }
    }
}

/// Output columns [lo, hi) whose input column ow·s − p + off lies inside 0..<w.
@inline(__always)
func validRange(_ wo: Int, _ w: Int, _ s: Int, _ p: Int, _ off: Int) -> (Int, Int) {
    // ow·s ≥ p − off  and  ow·s ≤ w − 1 + p − off
    let lo = max(0, (p - off + s - 1) / s)
    let hiIncl = w - 1 + p - off
    let hi = hiIncl < 0 ? 0 : min(wo, hiIncl / s + 1)
    return (min(lo, wo), hi)
}
