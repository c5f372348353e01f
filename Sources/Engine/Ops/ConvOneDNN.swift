import CDNNL
import Foundation
import Synchronization

/// Convolution passes through oneDNN: primitives cached per slice geometry, each call split over the engine's
/// threads into independent single-threaded slices (`OneDNN` says why), plain NCHW tensors reordered to and from
/// oneDNN's blocked layouts where the primitive prefers them.

/// Which implementation runs one pass of a convolution.
public enum ConvImplementation: String, CaseIterable, Sendable {
    /// The engine's kernels: im2col + OpenBLAS sgemm, one sgemm for 1×1, the direct grouped kernel.
    case engine
    /// oneDNN on the NCHW tensors as they are (for these shapes its own im2col/sgemm convolution).
    case oneDNNPlain = "onednn_plain"
    /// oneDNN in the layouts its JIT kernels prefer (nChw16c activations, blocked weights), with reorders from and
    /// back to NCHW inside every call.
    case oneDNNBlocked = "onednn_blocked"
}

/// forward: y = conv(x, w); backwardData: gx from gy and w; backwardWeights: gw from x and gy.
public enum ConvPass: Int, Sendable { case forward, backwardData, backwardWeights }

public enum ConvPolicy {
    /// Forces one implementation for every pass of every convolution (benchmarks and tests compare them); nil picks
    /// per shape with `implementation(for:_:)`.
    nonisolated(unsafe) public static var forced: ConvImplementation?

    /// Convolution passes oneDNN has run so far (tests check that it really ran).
    public static var oneDNNPasses: Int { passes.load(ordering: .relaxed) }
    static let passes = Atomic<Int>(0)
    /// Forward passes that ran the Winograd kernel so far.
    public static var winogradPasses: Int { winogradRuns.load(ordering: .relaxed) }
    static let winogradRuns = Atomic<Int>(0)

    /// Whether forward passes without gradients may run 3×3 stride-1 convolutions with a Winograd kernel, oneDNN's
    /// on AVX-512 CPUs and the engine's (`EngineWinograd`) below (F(4×4, 3×3): fewer multiplications; RetinaNet R50
    /// inference at 800×1333 about 30 % faster). Its sums are
    /// rounded differently from a direct convolution's (`WinogradTests` bounds the difference). Training never
    /// uses it, so its numerics stay those of a direct convolution. `ACMIX_WINOGRAD=0` turns it off.
    nonisolated(unsafe) public static var winogradAtInference =
        ProcessInfo.processInfo.environment["ACMIX_WINOGRAD"].map { $0 != "0" } ?? true

    /// Whether this geometry may take the Winograd kernel (`winogradAtInference`): 3×3, stride 1, undilated,
    /// ungrouped, channel counts its blocked kernel handles (multiples of 16, ≥ 64), output planes of 64×64 and up
    /// (on smaller ones, as in ResNet-50 at 224×224, the gain was lost in the noise and the primitives added
    /// 25–75 MB of peak memory).
    static func winograd(_ g: Conv2dGeometry) -> Bool {
        winogradAtInference && forced == nil && OneDNN.engine != nil && g.kh == 3 && g.kw == 3 && g.sh == 1 && g.sw == 1
            && g.dh == 1 && g.dw == 1 && g.groups == 1 && g.c % 16 == 0 && g.o % 16 == 0 && g.c >= 64 && g.o >= 64
            && g.ho * g.wo >= 4096
    }

    /// Whether a bf16 inference pass (not chained) runs this convolution as float32 Winograd instead: on CPUs whose bf16
    /// is AVX512-BF16 (twice float32's multiply-adds per instruction), not AMX, Winograd's 2.25× fewer multiplications
    /// win. UPerNet Swin-T at 512, whose 2048→512 3×3 bottleneck at 128×128 is most of its time, ran 5–10 % slower
    /// in bf16 than in float32 on Zen 4.
    static func winogradOverBF16(_ g: Conv2dGeometry) -> Bool {
        !CPUInfo.current.hasAMX && winograd(g) && implementation(for: g, .forward) == .oneDNNBlocked
    }

    /// Whether a float32 inference forward of this geometry runs a Winograd kernel, oneDNN's or the engine's.
    public static func takesWinograd(_ g: Conv2dGeometry) -> Bool {
        engineWinograd(g) || winograd(g) && implementation(for: g, .forward) == .oneDNNBlocked
    }

    /// Whether this inference forward runs the engine's own Winograd kernel (`EngineWinograd`) instead: where
    /// oneDNN has none (CPUs below AVX-512, which follow the AVX2 table), on the geometries that kernel takes.
    static func engineWinograd(_ g: Conv2dGeometry) -> Bool {
        winogradAtInference && forced == nil && (avx2Table || OneDNN.engine == nil) && EngineWinograd.applies(g)
    }

    /// The implementation a pass of this geometry runs with.
    public static func implementation(for g: Conv2dGeometry, _ pass: ConvPass) -> ConvImplementation {
        if let forced { return forced }
        if OneDNN.engine == nil { return .engine }
        // Measured per shape (bench conv_sweep, single thread, provisional): see `automatic`.
        return automatic(g, pass)
    }

    /// Which measured table `automatic` follows: the AVX-512 one, or the AVX2 one on CPUs without AVX-512 (their
    /// kernels differ: oneDNN's blocked layouts are 8-wide there and it has no Winograd). `ACMIX_CONV_TABLE=avx2|avx512`
    /// forces one, to compare them on the same machine.
    nonisolated(unsafe) public static var avx2Table: Bool = {
        switch ProcessInfo.processInfo.environment["ACMIX_CONV_TABLE"] {
        case "avx2": return true
        case "avx512": return false
        default: return CPUInfo.current.level < .avx512
        }
    }()

    /// Single-thread CPU time per shape and pass (bench `conv_sweep`, provisional): oneDNN's JIT kernels in blocked
    /// layouts beat im2col + sgemm by 10–25 % on 3×3 and 7×7 maps of 14×14 and up, reorders included; on smaller
    /// maps its plain (gemm) forward and our backward-weights win; 1×1 stride-1 convolutions are a plain sgemm,
    /// oneDNN's AVX-512 one slightly ahead of OpenBLAS's except for the weight gradient; the grouped shift
    /// convolution of ACmix runs fastest in the engine's direct kernel.
    ///
    /// On AVX2 (AMD EPYC Zen 3, `conv_sweep` single-threaded) two choices differ: the weight gradient of 3×3 and
    /// 7×7 convolutions is fastest as im2col + sgemm at every size (oneDNN's blocked one 1.1–1.35× slower, RetinaNet's
    /// 720-channel classifier at 64×64 412 vs 306 ms); the input gradient of 1×1 convolutions with ≥ 512 input
    /// channels on maps of ≤ 16×16 is 1.4–2.4× faster blocked. (A 1×1 forward measured 1.85× faster blocked on FPN's
    /// 512→256 lateral at 64×64 but slower on ResNet's at 56×56 and in RetinaNet at 800×1333: not taken.) The
    /// ACmix-ResNet-50 training step at 224, batch 2, single-threaded: 1014–1064 → 944–952 CPU ms.
    ///
    /// Tried and not kept: at inference on AVX2, 1×1, stride-2 and few-output convolutions in the engine measured
    /// 1.0–2.5× faster per op on RetinaNet R50 at 800×1333 (3–5 % of the model's CPU time), but the changed fp32
    /// rounding moved the mmdet int8 fixture's chaotic near-tied boxes past its test's bound.
    static func automatic(_ g: Conv2dGeometry, _ pass: ConvPass) -> ConvImplementation {
        if g.groups > 1 { return .engine }
        let outPlane = g.ho * g.wo
        if avx2Table {
            let pointwise = g.kh == 1 && g.kw == 1 && g.sh == 1 && g.sw == 1
            switch pass {
            case .backwardWeights where !(g.kh == 1 && g.kw == 1): return .engine
            case .backwardData where pointwise && g.c >= 512 && outPlane <= 256: return .oneDNNBlocked
            default: break
            }
        }
        if g.kh == 1 && g.kw == 1 {
            if g.sh != 1 || g.sw != 1 || pass == .backwardWeights { return .engine }
            return .oneDNNPlain
        }
        switch pass {
        case .forward: return outPlane >= 196 ? .oneDNNBlocked : .oneDNNPlain
        case .backwardData: return g.c < 16 ? .oneDNNPlain : .oneDNNBlocked
        case .backwardWeights: return outPlane >= 196 ? .oneDNNBlocked : .engine
        }
    }
}

/// One slice of a convolution: images n0..<n0+n, input channels c0..<c0+c, output channels o0..<o0+o (channel
/// slices only without groups).
struct ConvSlice {
    var n0: Int, n: Int, c0: Int, c: Int, o0: Int, o: Int
}

struct ConvPlanKey: Hashable {
    let pass: ConvPass, blocked: Bool, bias: Bool
    /// Forward epilogue as post-ops: per-channel scale and shift, then ReLU.
    let scaleShift: Bool, relu: Bool
    let n, c, h, w, o, kh, kw, sh, sw, ph, pw, dh, dw, groups, ho, wo: Int
    /// Channel counts of the full tensors the slice lives in (they set the strides).
    let fullC, fullO: Int
    /// oneDNN's Winograd algorithm (forward inference only) instead of the direct one.
    var winograd = false
    /// bf16 source and weights (converted by the reorders), float32 output (forward inference only).
    var bf16 = false
    /// With `bf16`: the caller's inputs of the pass are bf16 already (`DenseBF16Operands`), not float32.
    var bf16Inputs = false

    /// The element types of the caller's activation-, weight- and output-side buffers. A pre-converted bf16 input is
    /// every input of the pass but its output: x and w forward, w and gy backward-data, x and gy backward-weights.
    static func userTypes(_ pass: ConvPass, bf16Inputs: Bool, int8: Int8Source?)
        -> (x: dnnl_data_type_t, w: dnnl_data_type_t, y: dnnl_data_type_t) {
        (x: int8 == .u8 ? dnnl_u8 : int8 == .s8 ? dnnl_s8 : bf16Inputs && pass != .backwardData ? dnnl_bf16 : dnnl_f32,
         w: int8 != nil ? dnnl_s8 : bf16Inputs && pass != .backwardWeights ? dnnl_bf16 : dnnl_f32,
         y: bf16Inputs && pass != .forward ? dnnl_bf16 : dnnl_f32)
    }
    /// int8 forward inference: the caller's source already quantized (u8 or s8, `Int8Source`), s8 weights, float32
    /// output; the dequantisation is the per-channel scale post-op.
    var int8: Int8Source? = nil
}

/// The integer type of an int8 convolution's quantized source: u8 for inputs that are never negative (after a ReLU),
/// s8 otherwise.
enum Int8Source: Hashable { case u8, s8 }

/// A created primitive with the reorders between the caller's NCHW slices and the layouts it chose.
final class ConvPlan: @unchecked Sendable {
    struct Operand {
        let arg: Int32
        let user: dnnl_memory_desc_t
        let inner: dnnl_memory_desc_t
        /// user → inner for an input, inner → user for an output; nil when the layouts are the same.
        let reorder: DNNLPrimitive?
        let innerBytes: Int
        let isOutput: Bool
        /// The inner buffer must be zeroed before the reorder into it (int8 weights).
        var zeroed = false
    }
    let primitive: DNNLPrimitive
    /// Activation-side (x or gx), weight-side (w or gw), output-side (y or gy), in that order.
    let operands: [Operand]
    let bias: dnnl_memory_desc_t?
    /// [1, O, 1, 1] descriptor of the scale and shift post-op inputs.
    let channelVector: dnnl_memory_desc_t?
    let scratchpadBytes: Int
    let implementation: String

    init(primitive: DNNLPrimitive, operands: [Operand], bias: dnnl_memory_desc_t?, channelVector: dnnl_memory_desc_t?,
         scratchpadBytes: Int, implementation: String) {
        self.primitive = primitive; self.operands = operands; self.bias = bias; self.channelVector = channelVector
        self.scratchpadBytes = scratchpadBytes; self.implementation = implementation
    }

    private static let lock = NSLock()
    nonisolated(unsafe) private static var cache: [ConvPlanKey: ConvPlan?] = [:]

    /// The cached plan of `key`, creating it on first use (JIT compilation: milliseconds); nil when oneDNN has no
    /// implementation for it (remembered too).
    static func get(_ key: ConvPlanKey, quiet: Bool = false) -> ConvPlan? {
        lock.lock()
        if let hit = cache[key] { lock.unlock(); return hit }
        lock.unlock()
        let plan = make(key)
        if plan == nil && !quiet {
            OneDNN.warn("oneDNN: no fast \(key.pass) convolution for input [\(key.n), \(key.c), \(key.h), \(key.w)], "
                        + "\(key.o) outputs, kernel \(key.kh)x\(key.kw), stride \(key.sh)x\(key.sw), groups \(key.groups) "
                        + "(\(key.blocked ? "blocked" : "plain")); the engine's kernel runs it")
        }
        lock.lock()
        cache[key] = plan
        lock.unlock()
        return plan
    }

    static func make(_ k: ConvPlanKey) -> ConvPlan? {
        guard let engine = OneDNN.engine else { return nil }
        OneDNN.singleThreaded()   // primitives size their work split by the thread count at creation
        let g = k.groups, cg = k.c / g, og = k.o / g, kk = k.kh * k.kw
        let hw = k.h * k.w, howo = k.ho * k.wo
        let xDims = [k.n, k.c, k.h, k.w], yDims = [k.n, k.o, k.ho, k.wo]
        let wDims = g == 1 ? [k.o, k.c, k.kh, k.kw] : [g, og, cg, k.kh, k.kw]
        let wStrides = g == 1 ? [k.c * kk, kk, k.kw, 1] : [og * cg * kk, cg * kk, kk, k.kw, 1]
        // Weight slices (channel splits) keep the full tensor's row pitch.
        let wPitch = g == 1 ? [(k.fullC / g) * kk, kk, k.kw, 1] : wStrides
        let (xType, wType, yType) = ConvPlanKey.userTypes(k.pass, bf16Inputs: k.bf16Inputs, int8: k.int8)
        guard let xUser = OneDNN.plain(xDims, strides: [k.fullC * hw, hw, k.w, 1], type: xType),
              let wUser = OneDNN.plain(wDims, strides: wPitch, type: wType),
              let yUser = OneDNN.plain(yDims, strides: [k.fullO * howo, howo, k.wo, 1], type: yType) else { return nil }
        var xMD: dnnl_memory_desc_t, wMD: dnnl_memory_desc_t, yMD: dnnl_memory_desc_t
        // The forward descriptor's operands (also the hint of a backward pass).
        var xF: dnnl_memory_desc_t? = nil, wF: dnnl_memory_desc_t? = nil, yF: dnnl_memory_desc_t? = nil
        if k.int8 != nil {
            guard let a = OneDNN.any(xDims, type: xType), let b = OneDNN.any(wDims, type: wType), let c = OneDNN.any(yDims) else { return nil }
            (xMD, wMD, yMD) = (a, b, c)
        } else if k.bf16 {
            // bf16 inputs of the pass, float32 outputs: forward src and weights in, dst out; backward-data diff_dst and
            // weights in, diff_src out; backward-weights src and diff_dst in, diff_weights out. The forward hint of a
            // backward pass is the bf16 forward.
            let bf = dnnl_bf16, f = dnnl_f32
            let types: (dnnl_data_type_t, dnnl_data_type_t, dnnl_data_type_t) =
                k.pass == .forward ? (bf, bf, f) : k.pass == .backwardData ? (f, bf, bf) : (bf, f, bf)
            // Plain: dense NCHW / OIHW bf16 (oneDNN's gemm convolution): converting to it is a copy, not a relayout,
            // and the float32 output needs none.
            func md(_ dims: [Int], _ type: dnnl_data_type_t) -> dnnl_memory_desc_t? {
                k.blocked ? OneDNN.any(dims, type: type) : OneDNN.plain(dims, strides: contiguousStrides(dims), type: type)
            }
            guard let a = md(xDims, types.0), let b = md(wDims, types.1), let c = md(yDims, types.2) else { return nil }
            (xMD, wMD, yMD) = (a, b, c)
            if k.pass != .forward {
                guard let ha = md(xDims, bf), let hb = md(wDims, bf), let hc = md(yDims, bf) else { return nil }
                (xF, wF, yF) = (ha, hb, hc)
            }
        } else if k.blocked {
            guard let a = OneDNN.any(xDims), let b = OneDNN.any(wDims), let c = OneDNN.any(yDims) else { return nil }
            (xMD, wMD, yMD) = (a, b, c)
        } else {
            // Plain primitives get dense descriptors; slices are copied in and out by the reorders.
            guard let a = OneDNN.plain(xDims, strides: contiguousStrides(xDims)),
                  let b = OneDNN.plain(wDims, strides: contiguousStrides(wDims)),
                  let c = OneDNN.plain(yDims, strides: contiguousStrides(yDims)) else { return nil }
            (xMD, wMD, yMD) = (a, b, c)
        }
        var biasMD = k.bias ? OneDNN.plain([k.o], strides: [1]) : nil
        if k.bias && biasMD == nil { return nil }
        let strides = OneDNN.padded([k.sh, k.sw]), dilations = OneDNN.padded([k.dh - 1, k.dw - 1])
        let padL = OneDNN.padded([k.ph, k.pw])
        // PyTorch floors the output size: the right/bottom padding is whatever makes the last window fit (negative
        // when the last input rows are never read, as in a stride-2 1×1 convolution of an even size).
        let prH = (k.ho - 1) * k.sh + (k.kh - 1) * k.dh + 1 - k.h - k.ph
        let prW = (k.wo - 1) * k.sw + (k.kw - 1) * k.dw + 1 - k.w - k.pw
        let padR = OneDNN.padded([prH, prW])

        guard let attr = OneDNN.attributes() else { return nil }
        defer { dnnl_primitive_attr_destroy(attr) }
        var channelMD = k.scaleShift ? OneDNN.plain([1, k.o, 1, 1], strides: [k.o, 1, 1, 1]) : nil
        if k.scaleShift || k.relu {
            // y = relu((conv + bias)·scale + shift): binary post-ops 0 and 1, then the eltwise.
            var ops: dnnl_post_ops_t?
            guard dnnl_post_ops_create(&ops) == dnnl_success, let ops else { return nil }
            defer { dnnl_post_ops_destroy(ops) }
            if k.scaleShift {
                guard channelMD != nil,
                      dnnl_post_ops_append_binary(ops, dnnl_binary_mul, &channelMD!) == dnnl_success,
                      dnnl_post_ops_append_binary(ops, dnnl_binary_add, &channelMD!) == dnnl_success else { return nil }
            }
            if k.relu { guard dnnl_post_ops_append_eltwise(ops, 1, dnnl_eltwise_relu, 0, 0) == dnnl_success else { return nil } }
            guard dnnl_primitive_attr_set_post_ops(attr, ops) == dnnl_success else { return nil }
        }

        var fwd = dnnl_convolution_desc_t()
        var xH = xF ?? xMD, wH = wF ?? wMD, yH = yF ?? yMD
        let fwdOK = withUnsafeMutablePointer(to: &biasMD) { bp in
            dnnl_dilated_convolution_forward_desc_init(&fwd, k.int8 != nil ? dnnl_forward_inference : dnnl_forward_training,
                                                       k.winograd ? dnnl_convolution_winograd : dnnl_convolution_direct, &xH, &wH,
                                                       k.bias ? UnsafePointer(OpaquePointer(bp)) : nil, &yH,
                                                       strides, dilations, padL, padR) == dnnl_success
        }
        guard fwdOK else { return nil }
        var fwdPD: dnnl_primitive_desc_t?
        guard dnnl_primitive_desc_create(&fwdPD, &fwd, k.pass == .forward ? attr : nil, engine, nil) == dnnl_success,
              let fwdPD else { return nil }
        defer { dnnl_primitive_desc_destroy(fwdPD) }

        var pd = fwdPD
        var bwdPD: dnnl_primitive_desc_t?
        defer { if let bwdPD { dnnl_primitive_desc_destroy(bwdPD) } }
        if k.pass != .forward {
            var bwd = dnnl_convolution_desc_t()
            let ok = k.pass == .backwardData
                ? dnnl_dilated_convolution_backward_data_desc_init(&bwd, dnnl_convolution_direct, &xMD, &wMD, &yMD,
                                                                   strides, dilations, padL, padR)
                : dnnl_dilated_convolution_backward_weights_desc_init(&bwd, dnnl_convolution_direct, &xMD, &wMD, nil, &yMD,
                                                                      strides, dilations, padL, padR)
            guard ok == dnnl_success, dnnl_primitive_desc_create(&bwdPD, &bwd, attr, engine, fwdPD) == dnnl_success,
                  let bwdPD else { return nil }
            pd = bwdPD
        }
        let impl = OneDNN.implementation(pd)
        // oneDNN's reference kernels are plain loops, far slower than the engine's: not worth a primitive.
        if impl.hasPrefix("ref") { return nil }

        // (argument, query, user descriptor, is output) per operand.
        let roles: [(Int32, dnnl_query_t, dnnl_memory_desc_t, Bool)]
        switch k.pass {
        case .forward:
            roles = [(Int32(CDNNL_ARG_SRC), dnnl_query_src_md, xUser, false),
                     (Int32(CDNNL_ARG_WEIGHTS), dnnl_query_weights_md, wUser, false),
                     (Int32(CDNNL_ARG_DST), dnnl_query_dst_md, yUser, true)]
        case .backwardData:
            roles = [(Int32(CDNNL_ARG_DIFF_SRC), dnnl_query_diff_src_md, xUser, true),
                     (Int32(CDNNL_ARG_WEIGHTS), dnnl_query_weights_md, wUser, false),
                     (Int32(CDNNL_ARG_DIFF_DST), dnnl_query_diff_dst_md, yUser, false)]
        case .backwardWeights:
            roles = [(Int32(CDNNL_ARG_SRC), dnnl_query_src_md, xUser, false),
                     (Int32(CDNNL_ARG_DIFF_WEIGHTS), dnnl_query_diff_weights_md, wUser, true),
                     (Int32(CDNNL_ARG_DIFF_DST), dnnl_query_diff_dst_md, yUser, false)]
        }
        var operands: [Operand] = []
        for (arg, query, user, isOutput) in roles {
            guard let innerPtr = dnnl_primitive_desc_query_md(pd, query, 0) else { return nil }
            let inner = innerPtr.pointee
            var u = user, i = inner
            var reorder: DNNLPrimitive? = nil
            if dnnl_memory_desc_equal(&u, &i) == 0 {
                reorder = isOutput ? DNNLPrimitive.reorder(from: inner, to: user) : DNNLPrimitive.reorder(from: user, to: inner)
                if reorder == nil { return nil }
            }
            operands.append(Operand(arg: arg, user: user, inner: inner, reorder: reorder,
                                    innerBytes: dnnl_memory_desc_get_size(&i), isOutput: isOutput,
                                    zeroed: k.int8 != nil && arg == Int32(CDNNL_ARG_WEIGHTS)))
        }
        var scratchBytes = 0
        if var s = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0)?.pointee {
            scratchBytes = dnnl_memory_desc_get_size(&s)
        }
        guard let primitive = DNNLPrimitive.make(pd) else { return nil }
        return ConvPlan(primitive: primitive, operands: operands, bias: k.pass == .forward ? biasMD : nil, channelVector: channelMD,
                        scratchpadBytes: scratchBytes, implementation: impl)
    }

    /// Executes on user buffers (activation-side, weight-side, output-side, in the caller's NCHW/OIHW slices), with
    /// the forward epilogue's per-channel scale and shift when the plan has them; false when oneDNN reports an error.
    func run(_ pointers: [UnsafeMutableRawPointer], bias: UnsafeMutablePointer<Float>?,
             scale: UnsafeMutablePointer<Float>? = nil, shift: UnsafeMutablePointer<Float>? = nil,
             packed: PackedWeights? = nil) -> Bool {
        guard let engine = OneDNN.engine else { return false }
        OneDNN.singleThreaded()
        let exec = DNNLExecution(engine: engine)
        let memory = exec.memory, buffer = exec.buffer
        return OneDNN.withStream { stream -> Bool in
            var args: [dnnl_exec_arg_t] = []
            var after: [(DNNLPrimitive, dnnl_memory_t, dnnl_memory_t)] = []
            for (op, p) in zip(operands, pointers) {
                guard let user = memory(op.user, p) else { return false }
                guard let reorder = op.reorder else { args.append(dnnl_exec_arg_t(arg: op.arg, memory: user)); continue }
                if let packed, op.arg == Int32(CDNNL_ARG_WEIGHTS) {
                    // Reordered once, then kept (see PackedWeights).
                    guard let b = packed.buffer(packer: ConvPlan.self, layout: op.inner, slice: p, bytes: op.innerBytes, fill: { b in
                        if op.zeroed { b.initializeMemory(as: UInt8.self, repeating: 0, count: op.innerBytes) }
                        guard let inner = memory(op.inner, b) else { return false }
                        return execute(reorder, stream, [dnnl_exec_arg_t(arg: Int32(CDNNL_ARG_FROM), memory: user),
                                                         dnnl_exec_arg_t(arg: Int32(CDNNL_ARG_TO), memory: inner)], exec)
                    }), let inner = memory(op.inner, b) else { return false }
                    args.append(dnnl_exec_arg_t(arg: op.arg, memory: inner))
                    continue
                }
                let innerBuffer = buffer(op.innerBytes)
                // An s8-source kernel's weights carry a compensation term that the reorder adds into, not overwrites.
                if op.zeroed { innerBuffer.initializeMemory(as: UInt8.self, repeating: 0, count: op.innerBytes) }
                guard let inner = memory(op.inner, innerBuffer) else { return false }
                args.append(dnnl_exec_arg_t(arg: op.arg, memory: inner))
                if op.isOutput {
                    after.append((reorder, inner, user))
                } else if !execute(reorder, stream, [dnnl_exec_arg_t(arg: Int32(CDNNL_ARG_FROM), memory: user),
                                                    dnnl_exec_arg_t(arg: Int32(CDNNL_ARG_TO), memory: inner)], exec) {
                    return false
                }
            }
            if let md = self.bias, let bias {
                guard let m = memory(md, UnsafeMutableRawPointer(bias)) else { return false }
                args.append(dnnl_exec_arg_t(arg: Int32(CDNNL_ARG_BIAS), memory: m))
            }
            if let md = channelVector {
                guard let scale, let shift, let ms = memory(md, UnsafeMutableRawPointer(scale)),
                      let mt = memory(md, UnsafeMutableRawPointer(shift)) else { return false }
                args.append(dnnl_exec_arg_t(arg: cdnnl_arg_post_op_src1(0), memory: ms))
                args.append(dnnl_exec_arg_t(arg: cdnnl_arg_post_op_src1(1), memory: mt))
            }
            if scratchpadBytes > 0 {
                guard let arg = exec.scratchpad(bytes: scratchpadBytes) else { return false }
                args.append(arg)
            }
            guard execute(primitive, stream, args, exec) else { return false }
            for (reorder, inner, user) in after {
                guard execute(reorder, stream, [dnnl_exec_arg_t(arg: Int32(CDNNL_ARG_FROM), memory: inner),
                                                dnnl_exec_arg_t(arg: Int32(CDNNL_ARG_TO), memory: user)], exec) else { return false }
            }
            return dnnl_stream_wait(stream) == dnnl_success
        } ?? false
    }

    /// Runs `p` on `args`, with a scratchpad of its own from `exec` when it takes one (reorders).
    private func execute(_ p: DNNLPrimitive, _ stream: dnnl_stream_t, _ args: [dnnl_exec_arg_t], _ exec: DNNLExecution) -> Bool {
        var args = args
        if p.scratchpadBytes > 0 {
            guard let arg = exec.scratchpad(bytes: p.scratchpadBytes) else { return false }
            args.append(arg)
        }
        return args.withUnsafeBufferPointer { dnnl_primitive_execute(p.handle, stream, Int32($0.count), $0.baseAddress) == dnnl_success }
    }
}

/// Splits a pass into at most `Threads.count` independent slices: by images when there are enough, else by the
/// output channels (forward, backward-weights) or input channels (backward-data) in multiples of 16 (whole blocks
/// of the nChw16c layout). bf16 passes whose weight outnumbers their activations (1×1 convolutions on 7×7 and 14×14
/// maps) split by channels even with images enough: split by images, every slice converted the whole weight to bf16,
/// and backward-weights summed weight-sized partial gradients (ACmix-ResNet-50's amp step: such passes took
/// 1.2–1.7× their float32 time).
func convSlices(_ g: Conv2dGeometry, _ pass: ConvPass, bf16: Bool = false) -> [ConvSlice] {
    let whole = ConvSlice(n0: 0, n: g.n, c0: 0, c: g.c, o0: 0, o: g.o)
    let t = Threads.count
    let macs = g.n * g.o * g.ho * g.wo * g.k
    guard t > 1 && macs >= 1 << 20 else { return [whole] }
    let weightBound = bf16 && g.groups == 1 && g.o * g.k > g.n * (g.c * g.h * g.w + g.o * g.ho * g.wo)
    if g.n >= t && !weightBound {
        return (0..<t).map { i in
            let a = g.n * i / t, b = g.n * (i + 1) / t
            return ConvSlice(n0: a, n: b - a, c0: 0, c: g.c, o0: 0, o: g.o)
        }.filter { $0.n > 0 }
    }
    guard g.groups == 1 else { return [whole] }
    let channels = pass == .backwardData ? g.c : g.o
    let blocks = channels / 16
    guard blocks >= 2 && channels % 16 == 0 else { return [whole] }
    let parts = min(t, blocks)
    return (0..<parts).map { i in
        let a = blocks * i / parts * 16, b = blocks * (i + 1) / parts * 16
        return pass == .backwardData ? ConvSlice(n0: 0, n: g.n, c0: a, c: b - a, o0: 0, o: g.o)
                                     : ConvSlice(n0: 0, n: g.n, c0: 0, c: g.c, o0: a, o: b - a)
    }
}

/// Runs one pass through oneDNN. Forward writes y, with the bias and the epilogue's affine and ReLU fused (not its
/// residual), then `then` (what the primitive cannot fuse) applied by each slice to its own part of y; backward-data
/// writes gx; backward-weights writes gw (all overwritten, not accumulated). False when oneDNN has no implementation
/// for this geometry or reports an error: the caller then runs its own kernel on zeroed outputs (and its epilogue).
///
/// With `int8`, a forward inference pass on a quantized source (one byte per element, of that type) and s8 weights `w`;
/// the epilogue's scale is then the dequantisation (source scale × weight scale, per channel) and its shift the bias.
/// With `bf16Inputs` (and `bf16`), the pass's inputs are bf16 already (two bytes per element), its output float32.
func oneDNNConv(_ pass: ConvPass, _ g: Conv2dGeometry, blocked: Bool, x: UnsafeMutableRawPointer,
                w: UnsafeMutableRawPointer, y: UnsafeMutableRawPointer, bias: UnsafeMutablePointer<Float>? = nil,
                epilogue: ConvEpilogue = ConvEpilogue(), then: ConvEpilogue = ConvEpilogue(), winograd: Bool = false,
                bf16: Bool = false, bf16Inputs: Bool = false, int8: Int8Source? = nil, packed: PackedWeights? = nil) -> Bool {
    precondition(then.isEmpty || pass == .forward, "only a forward pass takes an epilogue")
    precondition(packed == nil || pass == .forward, "only a forward pass reads packed weights")
    precondition(epilogue.residual == nil, "oneDNN convolutions take no residual; add it after")
    // The fused scale takes a shift with it (and the other way round).
    let scaleShift = epilogue.scale != nil || epilogue.shift != nil
    var ones: [Float] = [], zeros: [Float] = []
    if scaleShift && epilogue.scale == nil { ones = [Float](repeating: 1, count: g.o) }
    if scaleShift && epilogue.shift == nil { zeros = [Float](repeating: 0, count: g.o) }
    let slices = convSlices(g, pass, bf16: bf16)
    var plans: [ConvPlan] = []
    for s in slices {
        let key = ConvPlanKey(pass: pass, blocked: blocked, bias: bias != nil, scaleShift: scaleShift, relu: epilogue.relu,
                              n: s.n, c: s.c, h: g.h, w: g.w, o: s.o, kh: g.kh, kw: g.kw, sh: g.sh, sw: g.sw,
                              ph: g.ph, pw: g.pw, dh: g.dh, dw: g.dw, groups: g.groups, ho: g.ho, wo: g.wo,
                              fullC: g.c, fullO: g.o, winograd: winograd, bf16: bf16, bf16Inputs: bf16 && bf16Inputs, int8: int8)
        guard let plan = ConvPlan.get(key, quiet: winograd) else { return false }
        plans.append(plan)
    }
    let hw = g.h * g.w, howo = g.ho * g.wo, kk = g.kh * g.kw
    let types = ConvPlanKey.userTypes(pass, bf16Inputs: bf16 && bf16Inputs, int8: int8)
    let xBytes = dnnl_data_type_size(types.x), wBytes = dnnl_data_type_size(types.w), yBytes = dnnl_data_type_size(types.y)
    // Backward-weights split by images: every slice but the first writes a partial gradient of its own.
    let partials = pass == .backwardWeights && slices.count > 1 && slices[0].o == g.o
    let wCount = g.o * g.cg * kk
    let extra = partials ? UnsafeMutablePointer<Float>.allocate(capacity: (slices.count - 1) * wCount) : nil
    defer { extra?.deallocate() }
    let ok = ones.withUnsafeMutableBufferPointer { ones in zeros.withUnsafeMutableBufferPointer { zeros in
        let scale = epilogue.scale ?? ones.baseAddress, shift = epilogue.shift ?? zeros.baseAddress
        return Threads.all(slices.count) { i in
            let s = slices[i]
            let xs = x + (s.n0 * g.c + s.c0) * hw * xBytes
            var ws = w + (s.o0 * g.cg + s.c0) * kk * wBytes
            if partials && i > 0 { ws = UnsafeMutableRawPointer(extra! + (i - 1) * wCount) }
            let ys = y + (s.n0 * g.o + s.o0) * howo * yBytes
            guard plans[i].run([xs, ws, ys], bias: bias.map { $0 + s.o0 }, scale: scale.map { $0 + s.o0 },
                               shift: shift.map { $0 + s.o0 }, packed: packed) else { return false }
            then.apply(y.assumingMemoryBound(to: Float.self), images: s.n0..<s.n0 + s.n, channels: s.o0..<s.o0 + s.o, o: g.o, plane: howo)
            return true
        }
    } }
    if !ok {
        OneDNN.warn("oneDNN: \(pass) convolution failed at run time; using the engine's kernel")
        return false
    }
    ConvPolicy.passes.add(1, ordering: .relaxed)
    if let extra {
        let w = w.assumingMemoryBound(to: Float.self)
        for i in 1..<slices.count {
            let src = extra + (i - 1) * wCount
            parallelChunks(wCount) { a, b in for j in a..<b { w[j] += src[j] } }
        }
    }
    return true
}
