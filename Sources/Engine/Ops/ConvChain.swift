import CDNNL
import Foundation

/// bf16 inference with the activations kept in oneDNN's own layout between convolutions, as OpenVINO and PyTorch's
/// autocast keep them: the tensor enters the chain once (one reorder to bf16), each convolution reads and writes bf16
/// in that layout with its BatchNorm folded into the weights and its shortcut sum and ReLU fused as post-ops, and the
/// tensor leaves once where a float32 NCHW consumer needs it (a ResNet stage's output). Measured on ResNet-50, the
/// per-convolution path spent about a fifth of its convolution time in reorders to and from NCHW float32 and in the
/// separate residual pass; here there are none inside a stage.
///
/// Numbers: the weights are folded first and then rounded to bf16 (PyTorch and OpenVINO fold the same way), and the
/// activations, the shortcut included, are stored as bf16 (autocast's residual stream is bf16 too); sums run in float32.
/// int8 (`int8Active`): u8 activations with a per-tensor scale, always nhwc (oneDNN's int8 kernels take no other), s8
/// weights with the BatchNorm in the epilogue, each output quantized with its consumer's calibrated input scale.
///
/// Threads (`threading`): by default each primitive runs on oneDNN's own OpenMP threads. Otherwise each pass is split
/// into independent single-threaded slices, as `oneDNNConv` does: by images when there are enough, else, per image, by
/// output-channel blocks (nChw16c: one block range is contiguous) or by output rows (nhwc: one row range is
/// contiguous; each slice reads the input rows its window needs, with its own padding).
public enum ConvChain {
    /// Whether passes may chain now: bf16 inference on native kernels, no gradient recorded, `enabled`.
    public static var active: Bool {
        enabled && !GradMode.isEnabled && MixedPrecision.suspended == 0 && MixedPrecision.inference == .bf16
            && MixedPrecision.native
    }

    /// Whether float32 inference chains a backbone (ResNet): float32 activations between oneDNN's convolution kernels in
    /// `layout`, BatchNorm folded into the weights, shortcut and ReLU fused, where the CPU has kernels for it that are
    /// not oneDNN's gemm or reference ones (`float32Kernels`). ResNet-50 at 224 on Zen 4, 2 threads: 44.5–51.7 →
    /// 38.7–40.6 ms. Necks and heads stay per convolution at float32: their large 3×3 convolutions run Winograd there,
    /// which a chain has not (RetinaNet R50 at 800×1333 with them chained: 1.69 → 2.33 s). Off while calibration
    /// observes each convolution (`Int8Inference.observer`) and while `get-flops` counts the ops as fvcore does
    /// (BatchNorm apart from the convolution).
    public static var f32Active: Bool {
        enabled && !GradMode.isEnabled && MixedPrecision.suspended == 0 && MixedPrecision.inference == .fp32
            && Int8Inference.observer == nil && !FlopCounter.enabled && float32Kernels
    }

    /// Whether oneDNN has a direct float32 kernel for a ResNet 3×3 convolution in `layout` on this CPU (brgemm or its
    /// AVX-512 one; not gemm or reference).
    public static let float32Kernels: Bool = {
        let k = ChainPlanKey(threads: 1, layout: layout, n: 1, c: 64, h: 56, w: 56, o: 64, kh: 3, kw: 3, sh: 1, sw: 1, pt: 1, pl: 1, dh: 1, dw: 1,
                             ho: 56, wo: 56, relu: true, sum: false, sumScale: 1, dst: .f32, src: .f32, residualAdd: false, outScale: 1)
        return ChainPlan.make(k) != nil
    }()

    /// Whether int8 passes may chain now: inference of a calibrated model (`Int8Inference`) on native kernels, outside
    /// calibration, `enabled`. Backbones chain their quantized convolutions with u8 activations between them.
    public static var int8Active: Bool {
        enabled && !GradMode.isEnabled && MixedPrecision.inference == .int8 && Int8Inference.model != nil
            && Int8Inference.observer == nil && Int8Inference.native
    }

    /// Whether int8 inference runs necks and heads on chained activations too: int8 chains, and the CPU has native bf16
    /// kernels for what stays unquantized between the int8 convolutions (an FPN's sums, a head's final convolutions) in
    /// nhwc, the int8 kernels' layout. Each quantized convolution then reads its input as u8 or s8 (`int8Input`).
    public static var int8Mixed: Bool { int8Active && MixedPrecision.native && layout == .nhwc }

    /// Whether inference passes chain now, in bf16 (`active`) or int8 (`int8Mixed`).
    public static var chaining: Bool { active || int8Mixed }

    /// `ACMIX_CONV_CHAIN=0` turns chaining off (every convolution then converts its own operands, as before).
    nonisolated(unsafe) public static var enabled = ProcessInfo.processInfo.environment["ACMIX_CONV_CHAIN"] != "0"

    /// The activation layout: the one oneDNN's bf16 kernels pick on this CPU for a ResNet 3×3 convolution (nhwc for its
    /// brgemm kernels, on Zen 4 and AMX CPUs alike; nChw16c where only its older AVX-512 kernels run), or
    /// `ACMIX_CHAIN_LAYOUT=nChw16c|nhwc`.
    nonisolated(unsafe) public static var layout: ChainLayout = {
        if let name = ProcessInfo.processInfo.environment["ACMIX_CHAIN_LAYOUT"], let l = ChainLayout(rawValue: name) { return l }
        return ChainLayout.preferred()
    }()

    /// How chained passes use the engine's threads: oneDNN's own OpenMP threads inside each primitive (the default:
    /// back-to-back primitives keep OpenMP's threads busy, and each splits its work its own way; ResNet-50 bf16 on
    /// Zen 4, 2 threads: 22.1–22.7 → 20.8–21.1 ms), or independent single-threaded slices on the engine's pool
    /// (`ACMIX_CHAIN_THREADS=slices`).
    public enum Threading: String, Sendable { case openMP = "openmp", slices }
    nonisolated(unsafe) public static var threading: Threading =
        ProcessInfo.processInfo.environment["ACMIX_CHAIN_THREADS"].flatMap(Threading.init(rawValue:)) ?? .openMP

    /// The OpenMP threads a chained primitive is created for and runs on (1 where the pool splits the work, and inside
    /// one slice of a region).
    static var primitiveThreads: Int { threading == .openMP && !Threads.serialHere ? Threads.count : 1 }

    /// What the chain ran so far, for `bench`: "nhwc, openmp, 53 convolutions (1 fell back), brgconv:avx512_core_bf16, …".
    public static var summary: String {
        "\(layout.rawValue), \(threading.rawValue), \(passes) convolutions (\(fallbacks) fell back), "
            + ChainPlan.implementations.sorted().joined(separator: " ")
    }

    /// Chained convolutions run so far (tests check that the chain really ran), and those that fell back.
    nonisolated(unsafe) public static var passes = 0, fallbacks = 0

    /// `x` [N, C, H, W] float32 NCHW as a chained bf16 activation (float32 with `f32`, and in a float32 chain).
    public static func enter(_ x: Tensor, f32: Bool = false) -> ChainTensor { enter(x, type: f32 || f32Active ? .f32 : .bf16) }

    /// `x` as a chained activation of `type`; u8 or s8 quantized with `scale` (rounded to nearest even, saturated to
    /// 0...255 or −128...127), always nhwc: oneDNN's int8 kernels read no other layout (`layout` picks another for the other types).
    public static func enter(_ x: Tensor, type: ChainType, scale: Float = 1, layout: ChainLayout? = nil) -> ChainTensor {
        precondition(x.rank == 4, "ConvChain.enter expects [N, C, H, W], got \(x.shape)")
        let y = ChainTensor(shape: x.shape, layout: type.quantized ? .nhwc : layout ?? self.layout, type: type, scale: type.quantized ? scale : 1)
        reorder(y, nchw: x.data, toChain: true)
        return y
    }

    /// An nhwc bf16 or float32 tensor quantized with `scale` (rounded to nearest even, saturated) to u8, or to s8 with
    /// `signed` (an int8 backbone's input after its bf16 stem, a neck's output into a head's int8 convolution).
    public static func quantized(_ x: ChainTensor, scale: Float, signed: Bool = false) -> ChainTensor {
        precondition(!x.type.quantized && x.layout == .nhwc, "ConvChain.quantized: an nhwc bf16 or float32 tensor")
        return converted(x, to: ChainTensor(shape: x.shape, layout: .nhwc, type: signed ? .s8 : .u8, scale: scale), multiplying: 1 / scale)
    }

    /// What the int8 convolution `q` reads for x: x itself when it is quantized already (a u8 tensor with another scale
    /// is as good: the kernel dequantizes with x's own scale), else x quantized with q's calibrated input scale, to s8
    /// when calibration saw negative inputs.
    public static func int8Input(_ x: ChainTensor, _ q: QuantizedConv) -> ChainTensor {
        x.type.quantized ? x : quantized(x, scale: q.inputScale, signed: q.inputSigned)
    }

    /// What a convolution that is not quantized reads for x: x itself when bf16 (float32 in a float32 chain), else x's
    /// real values converted to bf16 (from float32, u8 or s8: a bf16 convolution's input in an int8 pass, an int8 block's
    /// identity shortcut added by the kernel).
    public static func floatInput(_ x: ChainTensor) -> ChainTensor {
        if x.type == .bf16 || x.type == .f32 && f32Active { return x }
        return converted(x, to: ChainTensor(shape: x.shape, layout: x.layout, type: .bf16), multiplying: x.scale)
    }

    /// `y` filled with x's values ·`factor` in y's type (same shape and layout).
    private static func converted(_ x: ChainTensor, to y: ChainTensor, multiplying factor: Float) -> ChainTensor {
        let key = ChainConvertKey(threads: primitiveThreads, layout: x.layout, dims: x.shape, from: x.type, to: y.type, scale: factor)
        guard let plan = key.plan(), plan.run(from: x.data, to: y.data) else { preconditionFailure("oneDNN: a chained conversion failed") }
        return y
    }

    /// act((conv(x, weight) + bias)·scale + shift [+ residual]) on chained activations: x [N, C, H, W], weight
    /// [O, C, kh, kw] (no groups), bias, scale, shift [O] (a BatchNorm's running affine), residual [N, O, Ho, Wo] in
    /// the output's type; act ReLU when `relu`. The result is written into the residual's buffer when there is one
    /// (its content is the shortcut, summed by the kernel), so the caller must not read `residual` afterwards.
    /// Output [N, O, Ho, Wo] in bf16, or float32 with `f32` (a head's final logits).
    public static func conv(_ x: ChainTensor, weight: Tensor, bias: Tensor? = nil, scale: Tensor? = nil, shift: Tensor? = nil,
                            stride: (Int, Int) = (1, 1), padding: (Int, Int) = (0, 0), dilation: (Int, Int) = (1, 1),
                            relu: Bool = false, residual: ChainTensor? = nil, f32: Bool = false) -> ChainTensor {
        convolve(x, weight: weight, bias: bias, scale: scale, shift: shift, stride: stride, padding: padding, dilation: dilation,
                 relu: relu, residual: residual, output: f32 || x.type == .f32 ? .f32 : .bf16, quantized: nil)
    }

    /// The int8 form of `conv` (`QuantizedConv`, calibrated): x u8 or s8 with its scale (`int8Input`), q's s8 weights,
    /// sums in int32;
    /// act(acc·(s_x·s_w·scale) + bias·scale + shift [+ residual]) stored as `output`: u8 with `outputScale` (the next
    /// convolution's input scale), s8 with it (a calibrated downsample, `QuantizedConv.outputScale`), or bf16 / float32.
    /// A residual of the output's type (u8, or bf16: an FPN's top-down sum), or an s8 one into a u8 output, is summed by
    /// the kernel in place, as bf16's, so the caller must not read it afterwards; a bf16 one into another output type
    /// (real values) is read, not overwritten.
    public static func conv(_ x: ChainTensor, quantized q: QuantizedConv, weight: Tensor, bias: Tensor? = nil, scale: Tensor? = nil,
                            shift: Tensor? = nil, stride: (Int, Int) = (1, 1), padding: (Int, Int) = (0, 0),
                            dilation: (Int, Int) = (1, 1), relu: Bool = false, residual: ChainTensor? = nil,
                            output: ChainType, outputScale: Float = 1) -> ChainTensor {
        precondition(x.type.quantized && x.layout == .nhwc, "ConvChain.conv: an int8 convolution reads an nhwc u8 or s8 tensor")
        precondition(q.qweight.count == weight.count && q.weightScale.count == weight.shape[0], "ConvChain.conv: quantized weight of another shape")
        precondition(residual == nil || residual!.type == .bf16 || residual!.type.quantized && output == .u8,
                     "ConvChain.conv: an int8 convolution's residual is bf16, or u8 / s8 for a u8 output")
        precondition(output != .s8 || residual == nil, "ConvChain.conv: an s8 output takes no residual")
        return convolve(x, weight: weight, bias: bias, scale: scale, shift: shift, stride: stride, padding: padding, dilation: dilation,
                        relu: relu, residual: residual, output: output, quantized: (q, outputScale))
    }

    /// Both forms: `output` is the result's type (bf16 or float32; int8 also u8 with `quantized.outputScale`).
    static func convolve(_ x: ChainTensor, weight: Tensor, bias: Tensor?, scale: Tensor?, shift: Tensor?, stride: (Int, Int),
                         padding: (Int, Int), dilation: (Int, Int), relu: Bool, residual: ChainTensor?, output: ChainType,
                         quantized: (q: QuantizedConv, outputScale: Float)?) -> ChainTensor {
        let g = Conv2dGeometry(x.shape, weight.shape, stride: stride, padding: padding, dilation: dilation)
        precondition(quantized != nil || x.type == .bf16 || x.type == .f32 && f32Active,
                     "ConvChain.conv: a convolution that is not quantized reads bf16 (float32 in a float32 chain; ConvChain.floatInput)")
        precondition(scale == nil || scale!.count == g.o, "ConvChain.conv: scale \(scale!.shape) for \(g.o) channels")
        precondition(shift == nil || shift!.count == g.o, "ConvChain.conv: shift \(shift!.shape) for \(g.o) channels")
        precondition(bias == nil || bias!.count == g.o, "ConvChain.conv: bias \(bias!.shape) for \(g.o) channels")
        if let r = residual {
            precondition(r.shape == [g.n, g.o, g.ho, g.wo] && (quantized != nil || r.type == output) && r.layout == x.layout,
                         "ConvChain.conv: residual \(r.shape) for output [\(g.n), \(g.o), \(g.ho), \(g.wo)]")
        }
        FlopCounter.add("conv", g.n * g.o * g.ho * g.wo * g.k, weight: weight)
        // The folded bias: bias·scale + shift.
        var foldedBias = [Float](repeating: 0, count: g.o)
        for o in 0..<g.o {
            let s = scale?.data[o] ?? 1
            foldedBias[o] = (bias?.data[o] ?? 0) * s + (shift?.data[o] ?? 0)
        }
        // int8: the dequantisation and the BatchNorm's scale per channel (the weights stay as quantized).
        var channelScale = quantized.map { q in (0..<g.o).map { x.scale * q.q.weightScale[$0] * (scale?.data[$0] ?? 1) } } ?? []
        // bf16, and int8 with a shortcut of its output's type, sum into the shortcut's buffer (`sum` post-op: with int8 it
        // reads u8 values times their scale, and the kernel keeps its 1×1 brgemm form, which a bf16 binary add turned
        // into an older kernel); int8 reads a bf16 shortcut into another type and writes a tensor of its own.
        let outputScale = output.quantized ? quantized?.outputScale ?? 1 : 1
        // An int8 shortcut (u8, or s8: a calibrated downsample's) into a u8 output is summed in place too, read as its type.
        let sumInPlace = residual != nil && (quantized == nil || residual!.type == output || residual!.type.quantized && output == .u8)
        // int8 without a bf16 shortcut to add: the kernel's own output scales and bias, oscale·(acc + bias'), carry the
        // dequantisation, BatchNorm, bias and 1/outputScale (ReLU commutes with a positive factor). Per-channel binary
        // post-ops measured up to 1.5× slower (a 64→256 1×1 at 56×56: 0.250 against 0.165 ms on Zen 4). Not where a
        // channel's scale is 0 (its shift would be lost) or bias' would swamp the int32 sum in float32.
        let viaScales = quantized != nil && (residual == nil || sumInPlace)
            && zip(channelScale, foldedBias).allSatisfy { s, b in s != 0 && abs(b / s) <= Float(1 << 20) }
        var outputScales: [Float] = []
        if viaScales {
            outputScales = channelScale.map { $0 / outputScale }
            for o in 0..<g.o { foldedBias[o] /= channelScale[o] }
        }
        let sumScale = quantized != nil && sumInPlace ? residual!.scale / (viaScales ? outputScale : 1) : 1
        let y = (sumInPlace ? residual!.viewing(type: output, scale: outputScale) : nil)
            ?? ChainTensor(shape: [g.n, g.o, g.ho, g.wo], layout: x.layout, type: output, scale: outputScale)
        let slices = chainSlices(images: g.n, channels: g.o, rows: g.ho, layout: x.layout, work: g.n * g.o * g.ho * g.wo * g.k)
        var plans: [ChainPlan] = []
        for s in slices {
            let rows = inputRows(s, g)
            let key = ChainPlanKey(threads: primitiveThreads, layout: x.layout, n: s.n, c: g.c, h: rows.count, w: g.w, o: s.o, kh: g.kh, kw: g.kw, sh: g.sh, sw: g.sw,
                                   pt: rows.pad, pl: g.pw, dh: g.dh, dw: g.dw, ho: s.rows, wo: g.wo, relu: relu,
                                   sum: sumInPlace, sumScale: sumScale, sumS8: sumInPlace && residual!.type == .s8, dst: output, src: x.type,
                                   residualAdd: residual != nil && !sumInPlace, outScale: viaScales ? 1 : 1 / outputScale,
                                   outputScales: ScaleList(viaScales ? Array(outputScales[s.o0..<(s.o0 + s.o)]) : []))
            guard let plan = ChainPlan.get(key) else {
                return fallback(x, weight: weight, bias: bias, scale: scale, shift: shift, stride: stride, padding: padding,
                                dilation: dilation, relu: relu, residual: residual, type: output, outputScale: outputScale)
            }
            plans.append(plan)
        }
        let packed = quantized?.q.packed ?? FrozenWeights.packed(UnsafeMutableRawPointer(weight.data))
        let kk = g.c * g.kh * g.kw
        let ok = foldedBias.withUnsafeMutableBufferPointer { bias in channelScale.withUnsafeMutableBufferPointer { cs in
            let bias = bias.baseAddress!, cs = cs.baseAddress
            return Threads.all(slices.count) { i in
                let s = slices[i], plan = plans[i], rows = inputRows(s, g)
                // The slice's weights, folded with the BatchNorm's scale, in the kernel's layout (kept when frozen); int8's
                // quantized ones as they are.
                let fill = { (inner: UnsafeMutableRawPointer) -> Bool in
                    if let quantized {
                        return plan.packWeights(from: UnsafeMutableRawPointer(quantized.q.qweight.baseAddress! + s.o0 * kk), into: inner)
                    }
                    let folded = BlockAllocator.allocate(bytes: s.o * kk * 4).assumingMemoryBound(to: Float.self)
                    defer { BlockAllocator.free(UnsafeMutableRawPointer(folded), bytes: s.o * kk * 4) }
                    for o in 0..<s.o {
                        let f = scale?.data[s.o0 + o] ?? 1, src = weight.data + (s.o0 + o) * kk, dst = folded + o * kk
                        for j in 0..<kk { dst[j] = src[j] * f }
                    }
                    return plan.packWeights(from: UnsafeMutableRawPointer(folded), into: inner)
                }
                let at = (image: s.n0, channel: s.o0, row: s.r0)
                return plan.run(src: x.data + x.offset(image: s.n0, row: rows.first), dst: y.data + y.offset(image: at.image, channel: at.channel, row: at.row),
                                 bias: bias + s.o0, packed: packed, weightSlice: UnsafeMutableRawPointer(weight.data + s.o0 * kk), fill: fill,
                                 scale: cs.map { $0 + s.o0 },
                                 residual: sumInPlace ? nil : residual.map { $0.data + $0.offset(image: at.image, channel: at.channel, row: at.row) })
            }
        } }
        precondition(ok, "oneDNN: a chained convolution failed at run time")
        passes += 1
        OpProfile.forward("conv_chain", [weight])
        return y
    }

    /// Max pooling [N, C, H, W] → [N, C, Ho, Wo] (window k, stride s, padding p as PyTorch's: padding never wins, the
    /// output size floored) on a chained activation, in its type.
    public static func maxPool(_ x: ChainTensor, kernel k: Int, stride s: Int, padding p: Int) -> ChainTensor {
        pool(x, kernel: (k, k), stride: s, padding: p, average: false)
    }

    /// The mean of each channel's plane, [N, C, H, W] → [N, C, 1, 1] (a classifier's global average pooling; sums in
    /// float32), on a chained activation, in its type.
    public static func globalAveragePool(_ x: ChainTensor) -> ChainTensor {
        pool(x, kernel: (x.shape[2], x.shape[3]), stride: 1, padding: 0, average: true)
    }

    static func pool(_ x: ChainTensor, kernel: (Int, Int), stride s: Int, padding p: Int, average: Bool) -> ChainTensor {
        let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let g = Conv2dGeometry([n, c, h, w], [c, c, kernel.0, kernel.1], stride: (s, s), padding: (p, p))
        let y = ChainTensor(shape: [n, c, g.ho, g.wo], layout: x.layout, type: x.type, scale: x.scale)
        let slices = chainSlices(images: n, channels: c, rows: g.ho, layout: x.layout, work: n * c * g.ho * g.wo * g.kh * g.kw / 8)
        let ok = Threads.all(slices.count) { i in
            let sl = slices[i], rows = inputRows(sl, g)
            let key = ChainPoolKey(threads: primitiveThreads, layout: x.layout, n: sl.n, c: sl.o, h: rows.count, w: w, kh: g.kh, kw: g.kw,
                                   s: s, pt: rows.pad, pl: p, ho: sl.rows, wo: g.wo, type: x.type, average: average)
            guard let plan = ChainPoolKey.plan(key) else { return false }
            return plan.run(from: x.data + x.offset(image: sl.n0, channel: sl.o0, row: rows.first),
                            to: y.data + y.offset(image: sl.n0, channel: sl.o0, row: sl.r0))
        }
        precondition(ok, "oneDNN: chained pooling failed")
        OpProfile.forward(average ? "avg_pool_chain" : "max_pool_chain", [])
        return y
    }

    /// Nearest resize [N, C, H, W] → [N, C, outH, outW] on a chained activation: source row ⌊oh·H/outH⌋ and column
    /// ⌊ow·W/outW⌋, as `Tensor.resizeNearest` (and PyTorch's `interpolate(size=...)`). Always a new tensor.
    public static func resizeNearest(_ x: ChainTensor, _ outH: Int, _ outW: Int) -> ChainTensor {
        let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let rows = (0..<outH).map { Swift.min(Int(Float($0) * Float(h) / Float(outH)), h - 1) }
        let cols = (0..<outW).map { Swift.min(Int(Float($0) * Float(w) / Float(outW)), w - 1) }
        let y = ChainTensor(shape: [n, c, outH, outW], layout: x.layout, type: x.type, scale: x.scale)
        // Whole pixel vectors move: a pixel's channels in nhwc, its 16 channels of one block in nChw16c.
        let (groups, vector) = x.layout == .nhwc ? (1, c) : ((c + 15) / 16, 16)
        let vb = vector * x.elementBytes, src = x.data, dst = y.data
        parallelFor(n * groups * outH, cost: outW * vector) { i in
            let oh = i % outH, plane = i / outH
            let s = src + (plane * h * w + rows[oh] * w) * vb, d = dst + (plane * outH * outW + oh * outW) * vb
            for (ow, col) in cols.enumerated() { (d + ow * vb).copyMemory(from: s + col * vb, byteCount: vb) }
        }
        OpProfile.forward("resize_nearest_chain", [])
        return y
    }

    /// The per-convolution path for a geometry the chain has no kernel for: out of the chain and back (int8: the
    /// per-convolution int8 path, which finds the quantized weights by `weight`).
    private static func fallback(_ x: ChainTensor, weight: Tensor, bias: Tensor?, scale: Tensor?, shift: Tensor?, stride: (Int, Int),
                                 padding: (Int, Int), dilation: (Int, Int), relu: Bool, residual: ChainTensor?, type: ChainType,
                                 outputScale: Float) -> ChainTensor {
        fallbacks += 1
        let y = conv2dFused(x.tensor(), weight, bias, scale: scale, shift: shift, residual: residual?.tensor(), relu: relu,
                            stride: stride, padding: padding, dilation: dilation)
        return enter(y, type: type, scale: outputScale)
    }

    /// The input rows a slice's windows read (clipped to the image) and the zero rows above them; every row for a
    /// slice of all output rows (an nChw16c plane's stride is its full height).
    static func inputRows(_ s: ChainSlice, _ g: Conv2dGeometry) -> (first: Int, count: Int, pad: Int) {
        if s.r0 == 0 && s.rows == g.ho { return (0, g.h, g.ph) }
        let top = s.r0 * g.sh - g.ph, bottom = (s.r0 + s.rows - 1) * g.sh - g.ph + (g.kh - 1) * g.dh
        let first = max(0, top), last = min(g.h - 1, bottom)
        return (first, last - first + 1, first - top)
    }

    /// Copies between a float32 NCHW buffer and a chained tensor of the same shape, either way, split over threads.
    static func reorder(_ t: ChainTensor, nchw: UnsafeMutablePointer<Float>, toChain: Bool) {
        let (n, c, h, w) = (t.shape[0], t.shape[1], t.shape[2], t.shape[3])
        let slices = chainSlices(images: n, channels: c, rows: h, layout: t.layout, work: n * c * h * w / 16)
        let ok = Threads.all(slices.count) { i in
            let s = slices[i]
            let key = ChainReorderKey(threads: ConvChain.primitiveThreads, layout: t.layout, n: s.n, c: s.o, h: s.rows, w: w, fullC: c, fullH: h, type: t.type,
                                      scale: t.type.quantized ? (toChain ? 1 / t.scale : t.scale) : 1, toChain: toChain,
                                      channelsLast: false)
            guard let reorder = ChainReorderKey.plan(key) else { return false }
            let plain = UnsafeMutableRawPointer(nchw + ((s.n0 * c + s.o0) * h + s.r0) * w)
            let chain = t.data + t.offset(image: s.n0, channel: s.o0, row: s.r0)
            return reorder.run(from: toChain ? plain : chain, to: toChain ? chain : plain)
        }
        precondition(ok, "oneDNN: a reorder of a chained tensor failed")
    }
}

/// The memory layout of chained activations.
public enum ChainLayout: String, Sendable {
    /// nChw16c: channels in blocks of 16, each block's planes contiguous (oneDNN's AVX-512 kernels).
    case blocked16 = "nChw16c"
    /// Channels last (oneDNN's AMX and brgemm kernels).
    case nhwc

    var tag: dnnl_format_tag_t { self == .blocked16 ? dnnl_aBcd16b : dnnl_acdb }

    /// By case (RawRepresentable's default hashes the raw string, byte by byte, in every plan lookup).
    public func hash(into h: inout Hasher) { h.combine(self == .nhwc) }

    /// The layout oneDNN's bf16 convolution picks for a ResNet 3×3 at 56×56 (its choice for the CPU's kernels).
    static func preferred() -> ChainLayout {
        guard OneDNN.engine != nil else { return .blocked16 }
        OneDNN.singleThreaded()
        let x = [1, 64, 56, 56], w = [64, 64, 3, 3]
        guard var s = OneDNN.any(x, type: dnnl_bf16), var wt = OneDNN.any(w, type: dnnl_bf16), var d = OneDNN.any(x, type: dnnl_bf16),
              var nhwc = ChainTensor.desc(x, .nhwc, .bf16) else { return .blocked16 }
        var desc = dnnl_convolution_desc_t()
        let one = OneDNN.padded([1, 1]), zero = OneDNN.padded([0, 0])
        guard dnnl_dilated_convolution_forward_desc_init(&desc, dnnl_forward_inference, dnnl_convolution_direct, &s, &wt, nil, &d,
                                                         one, zero, one, one) == dnnl_success else { return .blocked16 }
        var pd: dnnl_primitive_desc_t?
        guard dnnl_primitive_desc_create(&pd, &desc, nil, OneDNN.engine, nil) == dnnl_success, let pd else { return .blocked16 }
        defer { dnnl_primitive_desc_destroy(pd) }
        guard var chosen = dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0)?.pointee else { return .blocked16 }
        return dnnl_memory_desc_equal(&chosen, &nhwc) != 0 ? .nhwc : .blocked16
    }
}

/// An activation [N, C, H, W] held in bf16 (or float32) in `ChainLayout` between the convolutions of an inference pass
/// (`ConvChain`). Owns its buffer.
public final class ChainTensor: @unchecked Sendable {
    public let shape: [Int]
    let layout: ChainLayout
    public let type: ChainType
    /// u8 and s8: the value of a stored q is q·scale (1 for the other types).
    public let scale: Float
    let data: UnsafeMutableRawPointer
    let bytes: Int
    /// The tensor whose buffer this one reads (`viewing(type:scale:)`); nil when it owns its own.
    private let owner: ChainTensor?

    init(shape: [Int], layout: ChainLayout, type: ChainType, scale: Float = 1) {
        owner = nil
        precondition(shape.count == 4 && shape.allSatisfy { $0 > 0 }, "ChainTensor: shape \(shape)")
        precondition(scale > 0 && scale.isFinite, "ChainTensor: scale \(scale)")
        self.shape = shape; self.layout = layout; self.type = type; self.scale = scale
        guard var md = Self.desc(shape, layout, type) else { preconditionFailure("oneDNN: no descriptor for \(shape)") }
        bytes = dnnl_memory_desc_get_size(&md)
        data = BlockAllocator.allocate(bytes: bytes)
        // The channels that pad the last block of 16 are read by the kernels (times zero weights): keep them zero, not NaN.
        if layout == .blocked16 && shape[1] % 16 != 0 { data.initializeMemory(as: UInt8.self, repeating: 0, count: bytes) }
    }

    private init(viewing t: ChainTensor, type: ChainType, scale: Float) {
        precondition(type.bytes == t.type.bytes, "ChainTensor: a view of another element size")
        shape = t.shape; layout = t.layout; self.type = type; self.scale = scale; data = t.data; bytes = t.bytes; owner = t
    }

    /// The buffer was handed to a tensor (`releasingChannelsLast`).
    private var released = false

    deinit { if owner == nil && !released { BlockAllocator.free(data, bytes: bytes) } }

    /// The same buffer with another scale (and type of the same size): an int8 convolution's u8 output written over its
    /// u8 or s8 shortcut.
    func viewing(type: ChainType, scale: Float) -> ChainTensor {
        type == self.type && scale == self.scale ? self : ChainTensor(viewing: self, type: type, scale: scale)
    }

    /// A copy with a buffer of its own (for a shortcut that must outlive the block that sums into it).
    public func copy() -> ChainTensor {
        let t = ChainTensor(shape: shape, layout: layout, type: type, scale: scale)
        t.data.copyMemory(from: data, byteCount: bytes)
        return t
    }

    var elementBytes: Int { type.bytes }

    /// The dense descriptor of an [n, c, h, w] tensor in `layout`.
    static func desc(_ dims: [Int], _ layout: ChainLayout, _ type: ChainType) -> dnnl_memory_desc_t? {
        var md = dnnl_memory_desc_t()
        let ok = dnnl_memory_desc_init_by_tag(&md, 4, OneDNN.padded(dims), type.dnnl, layout.tag) == dnnl_success
        return ok ? md : nil
    }

    /// The byte offset of a slice's start: image `image`, output channel `channel` (a multiple of 16, nChw16c only),
    /// row `row` (nhwc only). Dense descriptors of the slice's dims then address it.
    func offset(image: Int, channel: Int = 0, row: Int = 0) -> Int {
        let (c, h, w) = (shape[1], shape[2], shape[3])
        switch layout {
        case .blocked16:
            precondition(row == 0 && channel % 16 == 0, "ChainTensor: nChw16c slices whole images or 16-channel blocks")
            return (image * ((c + 15) / 16 * 16) * h * w + channel * h * w) * elementBytes
        case .nhwc:
            precondition(channel == 0, "ChainTensor: nhwc slices whole images or rows")
            return (image * c * h * w + row * w * c) * elementBytes
        }
    }

    /// The activation as a float32 channels-last tensor [N, H, W, C] (a head's outputs, whose anchors are ordered by
    /// position, then channel): a copy from nhwc, a reorder from nChw16c.
    public func channelsLast() -> Tensor {
        let (n, c, h, w) = (shape[0], shape[1], shape[2], shape[3])
        let t = Tensor(uninitialized: [n, h, w, c])
        if layout == .nhwc && type == .f32 {
            UnsafeMutableRawPointer(t.data).copyMemory(from: data, byteCount: t.count * 4)
        } else {
            let key = ChainReorderKey(threads: ConvChain.primitiveThreads, layout: layout, n: n, c: c, h: h, w: w, fullC: c, fullH: h, type: type,
                                      scale: scale, toChain: false, channelsLast: true)
            guard let reorder = ChainReorderKey.plan(key), reorder.run(from: data, to: UnsafeMutableRawPointer(t.data)) else {
                preconditionFailure("oneDNN: a reorder of a chained tensor failed")
            }
        }
        return t
    }

    /// `channelsLast()` without a copy where the buffer is float32 channels-last already (a head's final logits): the
    /// tensor takes the buffer over, so this one must not be read afterwards. (RetinaNet at 800×1333: 64 MB of logits
    /// copied into freshly faulted pages per image.)
    public func releasingChannelsLast() -> Tensor {
        let (n, c, h, w) = (shape[0], shape[1], shape[2], shape[3])
        guard layout == .nhwc && type == .f32 && owner == nil && !released && bytes == n * c * h * w * 4 else { return channelsLast() }
        released = true
        return Tensor(shape: [n, h, w, c], storage: Storage(adopting: data, count: n * c * h * w))
    }

    /// The activation as a float32 NCHW tensor.
    public func tensor() -> Tensor {
        let t = Tensor(uninitialized: shape)
        ConvChain.reorder(self, nchw: t.data, toChain: false)
        return t
    }
}

/// The element type of a chained tensor.
public enum ChainType: Sendable, Hashable {
    case bf16, f32
    /// Quantized, with the tensor's scale: unsigned (activations after a ReLU), or signed (−128...127).
    case u8, s8

    var dnnl: dnnl_data_type_t {
        switch self {
        case .bf16: dnnl_bf16
        case .f32: dnnl_f32
        case .u8: dnnl_u8
        case .s8: dnnl_s8
        }
    }
    var bytes: Int { self == .bf16 ? 2 : self == .f32 ? 4 : 1 }
    /// u8 or s8: stored values stand for q·scale.
    public var quantized: Bool { self == .u8 || self == .s8 }
}

/// One independent part of a chained pass, on the output side: images n0..<n0+n, channels o0..<o0+o, rows r0..<r0+rows.
struct ChainSlice {
    var n0: Int, n: Int, o0: Int, o: Int, r0: Int, rows: Int
}

/// Splits a pass into at most `Threads.count` slices per image (`ConvChain` says how); `work` under 2^20 stays whole.
func chainSlices(images n: Int, channels o: Int, rows: Int, layout: ChainLayout, work: Int) -> [ChainSlice] {
    let t = Threads.count
    let whole = ChainSlice(n0: 0, n: n, o0: 0, o: o, r0: 0, rows: rows)
    guard t > 1 && work >= 1 << 20 && !Threads.serialHere && ConvChain.threading == .slices else { return [whole] }
    if n >= t {
        return (0..<t).compactMap { i in
            let a = n * i / t, b = n * (i + 1) / t
            return b > a ? ChainSlice(n0: a, n: b - a, o0: 0, o: o, r0: 0, rows: rows) : nil
        }
    }
    var slices: [ChainSlice] = []
    for image in 0..<n {
        switch layout {
        case .blocked16:
            let blocks = (o + 15) / 16, parts = min(t, blocks)
            for p in 0..<parts {
                let a = blocks * p / parts * 16, b = min(o, blocks * (p + 1) / parts * 16)
                slices.append(ChainSlice(n0: image, n: 1, o0: a, o: b - a, r0: 0, rows: rows))
            }
        case .nhwc:
            let parts = min(t, rows)
            for p in 0..<parts {
                let a = rows * p / parts, b = rows * (p + 1) / parts
                slices.append(ChainSlice(n0: image, n: 1, o0: 0, o: o, r0: a, rows: b - a))
            }
        }
    }
    return slices
}

struct ChainPlanKey: Hashable {
    /// OpenMP threads the primitive is made for (oneDNN fixes its work split at creation).
    let threads: Int
    let layout: ChainLayout
    /// The slice's input [n, c, h, w] (h: the rows it reads) and top padding pt, its output [n, o, ho, wo].
    let n, c, h, w, o, kh, kw, sh, sw, pt, pl, dh, dw, ho, wo: Int
    /// Post-ops: the sum of the destination's content (the shortcut; times `sumScale`, int8's u8 shortcut's scale),
    /// then ReLU; the output's type.
    let relu, sum: Bool
    let sumScale: Float
    /// The destination's content is s8 (read as such by the sum; int8's calibrated downsample into a u8 output).
    var sumS8 = false
    let dst: ChainType
    /// The source's type: bf16 (or float32), or int8's u8 / s8. int8 with `binaryEpilogue`: s8 weights, no bias; post-ops
    /// per-channel scale and shift (the dequantisation, BatchNorm and bias), the shortcut added from a bf16 tensor (`residualAdd`), ReLU,
    /// then ·`outScale` (1/the output's scale) into the `dst` type.
    let src: ChainType
    let residualAdd: Bool
    let outScale: Float
    /// int8 by the kernel's output scales instead (per output channel, 1/the output's scale folded in): the
    /// convolution's bias is bias' (oneDNN 2's int8 is oscale·(acc + bias)), no per-channel post-ops, no final ·outScale.
    var outputScales = ScaleList()

    var int8: Bool { src.quantized }
    /// int8 with per-channel binary post-ops (scale and shift passed at run time).
    var binaryEpilogue: Bool { int8 && outputScales.isEmpty }
}

/// A chained convolution slice's primitive, with the reorder that packs its folded float32 weights.
final class ChainPlan: @unchecked Sendable {
    let primitive: DNNLPrimitive
    let src, dst, bias, weightsInner: dnnl_memory_desc_t
    /// Packs the slice's weights (folded float32, or int8's s8, [o, c, kh, kw]) into the kernel's layout.
    let weightPack: ChainReorder
    let weightBytes: Int
    let scratchpadBytes: Int
    let threads: Int
    /// int8 with binary post-ops: the per-channel post-op inputs' and the shortcut's descriptors (`ChainPlanKey.binaryEpilogue`).
    var int8: (channel: dnnl_memory_desc_t, residual: dnnl_memory_desc_t?)? = nil

    init(primitive: DNNLPrimitive, src: dnnl_memory_desc_t, dst: dnnl_memory_desc_t, bias: dnnl_memory_desc_t,
         weightsInner: dnnl_memory_desc_t, weightPack: ChainReorder, weightBytes: Int,
         scratchpadBytes: Int, threads: Int) {
        self.threads = threads
        self.primitive = primitive; self.src = src; self.dst = dst; self.bias = bias
        self.weightsInner = weightsInner; self.weightPack = weightPack; self.weightBytes = weightBytes
        self.scratchpadBytes = scratchpadBytes
    }

    private static let cache = PlanCache<ChainPlanKey, ChainPlan>()
    /// oneDNN's implementations the chain's convolutions run (bench reports them).
    nonisolated(unsafe) static var implementations: Set<String> = []

    /// The cached plan of `key`, created on first use; nil (remembered, and warned about once) when oneDNN has no fast
    /// kernel for it.
    static func get(_ key: ChainPlanKey) -> ChainPlan? {
        cache.get(key) {
            let plan = make(key)
            if plan == nil {
                OneDNN.warn("oneDNN: no \(key.int8 ? "int8" : "bf16") \(key.layout.rawValue) convolution for input [\(key.n), \(key.c), \(key.h), \(key.w)], \(key.o) outputs, "
                            + "kernel \(key.kh)x\(key.kw), stride \(key.sh)x\(key.sw); it runs outside the chain")
            }
            return plan
        }
    }

    static func make(_ k: ChainPlanKey) -> ChainPlan? {
        guard let engine = OneDNN.engine else { return nil }
        OneDNN.threads(k.threads)   // primitives size their work split by the thread count at creation
        let wDims = [k.o, k.c, k.kh, k.kw]
        guard var src = ChainTensor.desc([k.n, k.c, k.h, k.w], k.layout, k.src),
              var dst = ChainTensor.desc([k.n, k.o, k.ho, k.wo], k.layout, k.dst),
              var wAny = OneDNN.any(wDims, type: k.int8 ? dnnl_s8 : k.src == .f32 ? dnnl_f32 : dnnl_bf16),
              let wUser = OneDNN.plain(wDims, strides: contiguousStrides(wDims), type: k.int8 ? dnnl_s8 : dnnl_f32),
              var bias = OneDNN.plain([k.o], strides: [1]),
              var channel = OneDNN.plain([1, k.o, 1, 1], strides: [k.o, 1, 1, 1]),
              var residual = ChainTensor.desc([k.n, k.o, k.ho, k.wo], k.layout, k.src == .f32 ? .f32 : .bf16) else { return nil }
        let strides = OneDNN.padded([k.sh, k.sw]), dilations = OneDNN.padded([k.dh - 1, k.dw - 1])
        let padL = OneDNN.padded([k.pt, k.pl])
        // The bottom/right padding that makes the last window fit (negative when the last input rows go unread).
        let padR = OneDNN.padded([(k.ho - 1) * k.sh + (k.kh - 1) * k.dh + 1 - k.h - k.pt, (k.wo - 1) * k.sw + (k.kw - 1) * k.dw + 1 - k.w - k.pl])
        guard let attr = OneDNN.attributes() else { return nil }
        defer { dnnl_primitive_attr_destroy(attr) }
        if !k.outputScales.isEmpty {
            guard dnnl_primitive_attr_set_output_scales(attr, Int64(k.outputScales.count), 1 << 1, k.outputScales.values) == dnnl_success else { return nil }
        }
        if k.sum || k.relu || k.binaryEpilogue {
            var ops: dnnl_post_ops_t?
            guard dnnl_post_ops_create(&ops) == dnnl_success, let ops else { return nil }
            defer { dnnl_post_ops_destroy(ops) }
            if k.binaryEpilogue {
                guard dnnl_post_ops_append_binary(ops, dnnl_binary_mul, &channel) == dnnl_success,
                      dnnl_post_ops_append_binary(ops, dnnl_binary_add, &channel) == dnnl_success else { return nil }
                if k.residualAdd { guard dnnl_post_ops_append_binary(ops, dnnl_binary_add, &residual) == dnnl_success else { return nil } }
            }
            if k.sum {
                guard (k.sumS8 ? dnnl_post_ops_append_sum_v2(ops, k.sumScale, dnnl_s8) : dnnl_post_ops_append_sum(ops, k.sumScale)) == dnnl_success
                else { return nil }
            }
            if k.relu { guard dnnl_post_ops_append_eltwise(ops, 1, dnnl_eltwise_relu, 0, 0) == dnnl_success else { return nil } }
            if k.outScale != 1 { guard dnnl_post_ops_append_eltwise(ops, 1, dnnl_eltwise_linear, k.outScale, 0) == dnnl_success else { return nil } }
            guard dnnl_primitive_attr_set_post_ops(attr, ops) == dnnl_success else { return nil }
        }
        var desc = dnnl_convolution_desc_t()
        let descOK = withUnsafeMutablePointer(to: &bias) { bp in
            dnnl_dilated_convolution_forward_desc_init(&desc, dnnl_forward_inference, dnnl_convolution_direct, &src, &wAny,
                                                       k.binaryEpilogue ? nil : UnsafePointer(bp), &dst, strides, dilations, padL, padR) == dnnl_success
        }
        guard descOK else { return nil }
        var pd: dnnl_primitive_desc_t?
        guard dnnl_primitive_desc_create(&pd, &desc, attr, engine, nil) == dnnl_success, let pd else { return nil }
        defer { dnnl_primitive_desc_destroy(pd) }
        // Reference loops and the gemm fallback are far slower than the per-convolution path.
        let impl = OneDNN.implementation(pd)
        if impl.hasPrefix("ref") || impl.contains("gemm") { return nil }
        ChainPlan.implementations.insert(impl)
        guard var inner = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0)?.pointee,
              let reorder = DNNLPrimitive.reorder(from: wUser, to: inner) else { return nil }
        var scratch = 0
        if var s = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0)?.pointee { scratch = dnnl_memory_desc_get_size(&s) }
        guard let primitive = DNNLPrimitive.make(pd) else { return nil }
        let plan = ChainPlan(primitive: primitive, src: src, dst: dst, bias: bias, weightsInner: inner,
                             weightPack: ChainReorder(primitive: reorder, from: wUser, to: inner, threads: k.threads), weightBytes: dnnl_memory_desc_get_size(&inner), scratchpadBytes: scratch,
                             threads: k.threads)
        if k.binaryEpilogue { plan.int8 = (channel, k.residualAdd ? residual : nil) }
        return plan
    }

    /// Reorders the slice's weights [o, c, kh, kw] (folded float32, or int8's s8) into the kernel's layout at `inner`,
    /// zeroed first (its padding, and the compensation an s8 kernel would add into).
    func packWeights(from folded: UnsafeMutableRawPointer, into inner: UnsafeMutableRawPointer) -> Bool {
        inner.initializeMemory(as: UInt8.self, repeating: 0, count: weightBytes)
        return weightPack.run(from: folded, to: inner)
    }

    /// Runs the slice: src and dst at the slice's start in the chained tensors, its part of the folded bias (int8: of
    /// the per-channel scale and shift, and the shortcut at the slice's start), and its packed weights (kept in
    /// `packed` when the model is frozen or quantized, else packed for this call by `fill`).
    func run(src s: UnsafeMutableRawPointer, dst d: UnsafeMutableRawPointer, bias b: UnsafeMutablePointer<Float>, packed: PackedWeights?,
             weightSlice: UnsafeMutableRawPointer, fill: (UnsafeMutableRawPointer) -> Bool,
             scale: UnsafeMutablePointer<Float>? = nil, residual: UnsafeMutableRawPointer? = nil) -> Bool {
        guard let engine = OneDNN.engine else { return false }
        OneDNN.threads(threads)
        let exec = DNNLExecution(engine: engine)
        let weights: UnsafeMutableRawPointer
        if let packed {
            guard let p = packed.buffer(packer: ChainPlan.self, layout: weightsInner, slice: weightSlice, bytes: weightBytes, fill: fill) else { return false }
            weights = p
        } else {
            weights = exec.buffer(weightBytes)
            guard fill(weights) else { return false }
        }
        return OneDNN.withStream { stream -> Bool in
            guard let ms = exec.memory(src, s), let mw = exec.memory(weightsInner, weights), let mb = exec.memory(bias, UnsafeMutableRawPointer(b)),
                  let md = exec.memory(dst, d) else { return false }
            var args = [dnnl_exec_arg_t(arg: Int32(CDNNL_ARG_SRC), memory: ms), dnnl_exec_arg_t(arg: Int32(CDNNL_ARG_WEIGHTS), memory: mw),
                        dnnl_exec_arg_t(arg: Int32(CDNNL_ARG_DST), memory: md)]
            if let q = int8 {
                // The bias pointer holds the shift; `scale` the per-channel scale.
                guard let scale, let msc = exec.memory(q.channel, UnsafeMutableRawPointer(scale)) else { return false }
                args += [dnnl_exec_arg_t(arg: cdnnl_arg_post_op_src1(0), memory: msc), dnnl_exec_arg_t(arg: cdnnl_arg_post_op_src1(1), memory: mb)]
                if let rmd = q.residual {
                    guard let residual, let mr = exec.memory(rmd, residual) else { return false }
                    args.append(dnnl_exec_arg_t(arg: cdnnl_arg_post_op_src1(2), memory: mr))
                }
            } else {
                args.append(dnnl_exec_arg_t(arg: Int32(CDNNL_ARG_BIAS), memory: mb))
            }
            return exec.run(primitive, args, on: stream, scratchpad: scratchpadBytes)
        } ?? false
    }
}

/// Executes `p` on `args` and waits for it.

/// Per-channel scales in a plan's key: hashed by a few of them (a key is looked up per call; the full list hashed cost
/// more than the rest of the call's set-up), compared in full.
struct ScaleList: Hashable {
    let values: [Float]
    init(_ values: [Float] = []) { self.values = values }
    var isEmpty: Bool { values.isEmpty }
    var count: Int { values.count }
    func hash(into h: inout Hasher) {
        h.combine(values.count)
        for i in stride(from: 0, to: values.count, by: max(1, values.count / 4)) { h.combine(values[i]) }
    }
}

/// A reorder between a slice of a float32 NCHW tensor ([n, c, h, w] of one with fullC channels and fullH rows) and the
/// same slice of a chained tensor, either way.
struct ChainReorderKey: Hashable {
    let threads: Int
    let layout: ChainLayout
    let n, c, h, w, fullC, fullH: Int
    let type: ChainType
    /// Multiplies the values on the way (1/scale into a u8 tensor, scale out of it).
    let scale: Float
    let toChain: Bool
    /// The plain side is channels-last [n, h, w, c] (whole tensors only) instead of NCHW.
    let channelsLast: Bool

    private static let cache = PlanCache<ChainReorderKey, ChainReorder>()

    static func plan(_ key: ChainReorderKey) -> ChainReorder? { cache.get(key) { make(key) } }

    static func make(_ key: ChainReorderKey) -> ChainReorder? {
        OneDNN.threads(key.threads)
        let strides = key.channelsLast ? [key.h * key.w * key.c, 1, key.w * key.c, key.c] : [key.fullC * key.fullH * key.w, key.fullH * key.w, key.w, 1]
        guard let plain = OneDNN.plain([key.n, key.c, key.h, key.w], strides: strides),
              let chain = ChainTensor.desc([key.n, key.c, key.h, key.w], key.layout, key.type) else { return nil }
        let (from, to) = key.toChain ? (plain, chain) : (chain, plain)
        guard let p = DNNLPrimitive.reorder(from: from, to: to, scale: key.scale) else { return nil }
        return ChainReorder(primitive: p, from: from, to: to, threads: key.threads)
    }
}

/// A whole chained tensor converted from one type to another (values ·scale on the way).
struct ChainConvertKey: Hashable {
    let threads: Int
    let layout: ChainLayout
    let dims: [Int]
    let from, to: ChainType
    let scale: Float

    private static let cache = PlanCache<ChainConvertKey, ChainReorder>()

    func plan() -> ChainReorder? {
        Self.cache.get(self) {
            OneDNN.threads(threads)
            guard let a = ChainTensor.desc(dims, layout, from), let b = ChainTensor.desc(dims, layout, to),
                  let p = DNNLPrimitive.reorder(from: a, to: b, scale: scale) else { return nil }
            return ChainReorder(primitive: p, from: a, to: b, threads: threads)
        }
    }
}

/// A pooling slice (maximum or average): input [n, c, h, w] (h: the rows it reads, pt zero rows above), output
/// [n, c, ho, wo].
struct ChainPoolKey: Hashable {
    let threads: Int
    let layout: ChainLayout
    let n, c, h, w, kh, kw, s, pt, pl, ho, wo: Int
    let type: ChainType
    /// Average (padding excluded) instead of maximum.
    let average: Bool

    private static let cache = PlanCache<ChainPoolKey, ChainReorder>()

    static func plan(_ key: ChainPoolKey) -> ChainReorder? { cache.get(key) { make(key) } }

    static func make(_ k: ChainPoolKey) -> ChainReorder? {
        guard let engine = OneDNN.engine else { return nil }
        OneDNN.threads(k.threads)
        guard var src = ChainTensor.desc([k.n, k.c, k.h, k.w], k.layout, k.type),
              var dst = ChainTensor.desc([k.n, k.c, k.ho, k.wo], k.layout, k.type) else { return nil }
        let padR = OneDNN.padded([(k.ho - 1) * k.s + k.kh - k.h - k.pt, (k.wo - 1) * k.s + k.kw - k.w - k.pl])
        var desc = dnnl_pooling_desc_t()
        guard dnnl_pooling_forward_desc_init(&desc, dnnl_forward_inference, k.average ? dnnl_pooling_avg_exclude_padding : dnnl_pooling_max,
                                             &src, &dst, OneDNN.padded([k.s, k.s]), OneDNN.padded([k.kh, k.kw]), OneDNN.padded([k.pt, k.pl]),
                                             padR) == dnnl_success else { return nil }
        guard let attr = OneDNN.attributes() else { return nil }
        defer { dnnl_primitive_attr_destroy(attr) }
        var pd: dnnl_primitive_desc_t?
        guard dnnl_primitive_desc_create(&pd, &desc, attr, engine, nil) == dnnl_success, let pd else { return nil }
        defer { dnnl_primitive_desc_destroy(pd) }
        guard let p = DNNLPrimitive.make(pd) else { return nil }
        if var md = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0)?.pointee { p.scratchpadBytes = dnnl_memory_desc_get_size(&md) }
        return ChainReorder(primitive: p, from: src, to: dst, threads: k.threads, args: (Int32(CDNNL_ARG_SRC), Int32(CDNNL_ARG_DST)))
    }
}

/// A reorder or another one-input one-output primitive (pooling) on two buffers.
final class ChainReorder: @unchecked Sendable {
    let primitive: DNNLPrimitive
    let from, to: dnnl_memory_desc_t
    let args: (Int32, Int32)
    let threads: Int
    init(primitive: DNNLPrimitive, from: dnnl_memory_desc_t, to: dnnl_memory_desc_t, threads: Int,
         args: (Int32, Int32) = (Int32(CDNNL_ARG_FROM), Int32(CDNNL_ARG_TO))) {
        self.primitive = primitive; self.from = from; self.to = to; self.threads = threads; self.args = args
    }

    func run(from a: UnsafeMutableRawPointer, to b: UnsafeMutableRawPointer) -> Bool {
        guard let engine = OneDNN.engine else { return false }
        OneDNN.threads(threads)
        let exec = DNNLExecution(engine: engine)
        return OneDNN.withStream { stream -> Bool in
            guard let ma = exec.memory(from, a), let mb = exec.memory(to, b) else { return false }
            return exec.run(primitive, [dnnl_exec_arg_t(arg: self.args.0, memory: ma), dnnl_exec_arg_t(arg: self.args.1, memory: mb)],
                            on: stream, scratchpad: primitive.scratchpadBytes)
        } ?? false
    }
}
