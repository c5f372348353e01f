import CDNNL
import Foundation

/// The arithmetic precision of convolutions, deconvolutions, linear layers and attention matmuls (at inference:
/// `--precision`; in training: `amp`).
public enum Precision: String, CaseIterable, Sendable {
    /// float32 throughout (the default).
    case fp32
    /// bfloat16 operands (inputs and weights rounded to nearest-even bf16) with float32 products and sums, as
    /// PyTorch's CPU autocast and OpenVINO's bf16 run them; everything else (norms, softmax, sigmoid, box decoding,
    /// RoIAlign, NMS, mask paste, the epilogue's BatchNorm affine, residual and ReLU) stays float32.
    case bf16
    /// int8 convolutions calibrated on sample images (`Int8Inference`, `QuantizedConv`); inference only.
    case int8
}

/// Which precision inference and training passes run in, and how bf16 runs: on the CPU's matrix units through oneDNN
/// (AMX-BF16 or AVX512-BF16), or emulated (`ACMIX_BF16_EMULATION=1`: operands rounded to bf16, products and sums in
/// the float32 kernels; the same numbers up to summation order, on any CPU, slowly). Emulation is the reference the
/// native kernels are tested against and what tests use on CPUs without bf16; the tools refuse bf16 on such CPUs.
public enum MixedPrecision {
    /// The precision of convolution and GEMM passes that record no gradient. Set once by a tool before its model runs
    /// (`select`); training passes follow `training`.
    nonisolated(unsafe) public private(set) static var inference: Precision = .fp32

    /// `ACMIX_BF16_EMULATION=1`: bf16 numerics through the float32 kernels (see above).
    nonisolated(unsafe) public static var emulated: Bool = ProcessInfo.processInfo.environment["ACMIX_BF16_EMULATION"] == "1"

    /// Whether bf16 runs natively: the CPU has bf16 dot products, emulation is not asked for, and the native kernels
    /// passed their check against the emulated numbers (`nativeVerified`).
    public static var native: Bool { CPUInfo.current.hasBF16 && OneDNN.engine != nil && !emulated && nativeVerified }

    /// Checked once, on first native use: a convolution (forward, input and weight gradients) and a GEMM through the
    /// native bf16 kernels must equal the float32 kernels on the rounded operands within 1e-4 of the result's scale.
    /// A kernel that reports no implementation is fine (that shape is emulated); one that returns other numbers
    /// turns native bf16 off for the process, with a warning, rather than give wrong answers.
    /// The check's float32 references run with bf16 suspended and on the calling thread: through `sgemm` they would
    /// otherwise ask for `native` again inside its own initialisation (a deadlock on the first bf16 pass, seen on
    /// Zen 4). `select` / `selectTraining` run it on the driving thread, before any pass splits work over threads.
    public static let nativeVerified = OneDNN.nativeCheckPasses("bf16", has: CPUInfo.current.hasBF16) {
        suspended += 1
        defer { suspended -= 1 }
        return serially { nativeSelfCheck() }
    }

    /// The first mismatch between the native bf16 kernels and the emulated numbers, or nil.
    public static func nativeSelfCheck() -> String? {
        func values(_ n: Int, _ f: Double) -> [Float] { (0..<n).map { Float(sin(Double($0) * f)) } }
        func worst(_ a: [Float], _ b: [Float]) -> Float {
            let scale = max(b.map(abs).max() ?? 1, 1e-6)
            return zip(a, b).map { abs($0 - $1) }.max()! / scale
        }
        var x = values(2 * 32 * 10 * 10, 0.37), w = values(48 * 32 * 9, 0.11), gy = values(2 * 48 * 10 * 10, 0.05)
        let rx = x.map(bf16Rounded), rw = w.map(bf16Rounded), rgy = gy.map(bf16Rounded)
        let g = Conv2dGeometry([2, 32, 10, 10], [48, 32, 3, 3], padding: (1, 1))
        // Forward.
        var y = [Float](repeating: 0, count: gy.count), ref = y
        var rxm = rx, rwm = rw, rgym = rgy
        let ran = x.withUnsafeMutableBufferPointer { xp in w.withUnsafeMutableBufferPointer { wp in y.withUnsafeMutableBufferPointer { yp in
            bf16ConvForward(g, xp.baseAddress!, wp.baseAddress!, nil, yp.baseAddress!, epilogue: ConvEpilogue()) } } }
        rxm.withUnsafeMutableBufferPointer { xp in rwm.withUnsafeMutableBufferPointer { wp in ref.withUnsafeMutableBufferPointer { yp in
            convForward32(g, xp.baseAddress!, wp.baseAddress!, nil, yp.baseAddress!) } } }
        if ran && worst(y, ref) > 1e-4 { return "convolution forward off by \(worst(y, ref))" }
        // Input and weight gradients.
        var gx = [Float](repeating: 0, count: x.count), gw = [Float](repeating: 0, count: w.count)
        var refGx = gx, refGw = gw
        let dataRan = gx.withUnsafeMutableBufferPointer { gxp in w.withUnsafeMutableBufferPointer { wp in gy.withUnsafeMutableBufferPointer { gyp in
            oneDNNConv(.backwardData, g, blocked: true, x: gxp.baseAddress!, w: wp.baseAddress!, y: gyp.baseAddress!, bf16: true) } } }
        let weightRan = x.withUnsafeMutableBufferPointer { xp in gw.withUnsafeMutableBufferPointer { gwp in gy.withUnsafeMutableBufferPointer { gyp in
            oneDNNConv(.backwardWeights, g, blocked: true, x: xp.baseAddress!, w: gwp.baseAddress!, y: gyp.baseAddress!, bf16: true) } } }
        rxm.withUnsafeMutableBufferPointer { xp in rwm.withUnsafeMutableBufferPointer { wp in rgym.withUnsafeMutableBufferPointer { gyp in
            refGx.withUnsafeMutableBufferPointer { gxp in refGw.withUnsafeMutableBufferPointer { gwp in
                convBackward(g, xp.baseAddress!, wp.baseAddress!, gyp.baseAddress!, gxp.baseAddress!, gwp.baseAddress!) } } } } }
        if dataRan && worst(gx, refGx) > 1e-4 { return "convolution input gradient off by \(worst(gx, refGx))" }
        if weightRan && worst(gw, refGw) > 1e-4 { return "convolution weight gradient off by \(worst(gw, refGw))" }
        // A GEMM with transposes, alpha and beta.
        let m = 37, n = 53, k = 29
        let a = values(k * m, 0.7), b = values(n * k, 0.3)
        var c = values(m * n, 0.2), refC = c
        let gemmRan = BF16MatmulPlan.run(transA: true, transB: true, m, n, k, 0.5, a, m, b, k, 0.25, &c, n)
        let ra = a.map(bf16Rounded), rb = b.map(bf16Rounded)
        gemmCall(.oneDNN, transA: true, transB: true, m, n, k, 0.5, ra, m, rb, k, 0.25, &refC, n)
        if gemmRan && worst(c, refC) > 1e-4 { return "matmul off by \(worst(c, refC))" }
        return nil
    }

    /// Sets the inference precision; bf16 on a CPU without AVX512-BF16 or AMX-BF16 (and without emulation) is a usage
    /// error naming the missing feature.
    public static func select(_ p: Precision, option: String = "--precision") throws {
        try checkSupport(p, option: option)
        if p == .bf16 { _ = native }
        inference = p
    }

    /// A usage error naming the missing feature when `p` is bf16 and this CPU cannot run it (and emulation is off).
    public static func checkSupport(_ p: Precision, option: String) throws {
        if p == .bf16 && !CPUInfo.current.hasBF16 && !emulated {
            throw KitError.usage("\(option) bf16: this CPU (\(CPUInfo.current.summary)) has neither AVX512-BF16 nor AMX-BF16, "
                                 + "which bf16 needs; use fp32")
        }
        if p == .int8 && !CPUInfo.current.hasVNNI && !Int8Inference.emulated {
            throw KitError.usage("\(option) int8: this CPU (\(CPUInfo.current.summary)) has neither AVX512-VNNI nor AVX-VNNI, "
                                 + "which int8 needs; use fp32")
        }
    }

    /// The precision of training passes (forward with gradients recorded, and the backward pass): `amp` / `--amp`.
    /// bf16 there is mixed precision as PyTorch's autocast runs it: convolutions and GEMMs on bf16 operands (their
    /// input gradients and weight gradients too), float32 master weights, optimizer state, norms and losses.
    nonisolated(unsafe) public private(set) static var training: Precision = .fp32

    /// Sets the training precision, refused like `select`'s bf16 on a CPU without it.
    public static func selectTraining(_ p: Precision, option: String = "amp") throws {
        if p == .int8 { throw KitError.usage("\(option) int8: training runs in fp32 or bf16 (int8 is for inference)") }
        try checkSupport(p, option: option)
        if p == .bf16 { _ = native }
        training = p
    }

    /// Whether the current pass runs bf16: in training passes (gradients recorded, or the backward pass) when
    /// `training` is bf16, in passes without gradients when `inference` is.
    @inline(__always)
    static var active: Bool {
        suspended == 0 && (trainingPass ? training == .bf16 : inference == .bf16)
    }

    /// Whether the current pass is a training one: gradients recorded, or the backward pass.
    @inline(__always)
    static var trainingPass: Bool { GradMode.isEnabled || inBackward }

    /// True while `Tensor.backward` runs the recorded backward functions (with gradient recording off).
    nonisolated(unsafe) static var inBackward = false

    /// Nonzero while a bf16 pass runs float32 kernels on operands it rounded itself (`withRoundedOperands`). Only the
    /// thread that drives the model changes it, before its kernels split work over the engine's threads.
    nonisolated(unsafe) static var suspended = 0

    /// Runs `body` in float32 (its GEMMs too) where a bf16 pass keeps an op float32 (`Conv2dGeometry.takesBF16`).
    @inline(__always)
    static func float32<T>(_ body: () -> T) -> T {
        if !active { return body() }
        suspended += 1
        defer { suspended -= 1 }
        return body()
    }

    /// Passes that ran bf16 so far, natively and emulated (tests and `bench` check what really ran).
    nonisolated(unsafe) public static var nativeCalls = 0, emulatedCalls = 0
    static let countLock = NSLock()
    static func count(native: Bool) {
        countLock.lock()
        if native { nativeCalls += 1 } else { emulatedCalls += 1 }
        countLock.unlock()
    }
}

/// `x` rounded to the nearest bf16 (ties to even), as a float32; infinities and NaNs pass through.
@inline(__always)
public func bf16Rounded(_ x: Float) -> Float {
    if x.bitPattern & 0x7F80_0000 == 0x7F80_0000 { return x }
    return Float(bitPattern: UInt32(bf16Bits(x)) << 16)
}

/// The bf16 bits of `x` (nearest, ties to even; NaNs stay NaN).
@inline(__always)
func bf16Bits(_ x: Float) -> UInt16 {
    let b = x.bitPattern
    if b & 0x7F80_0000 == 0x7F80_0000 { return UInt16(truncatingIfNeeded: (b >> 16) | (b & 0xFFFF != 0 ? 0x40 : 0)) }
    return UInt16(truncatingIfNeeded: (b &+ 0x7FFF &+ ((b >> 16) & 1)) >> 16)
}

/// Runs `body` on bf16-rounded copies of two operands (an emulated bf16 pass through the float32 kernels), with bf16
/// GEMMs suspended inside: its operands are rounded already (rounding twice changes nothing, but would copy every
/// im2col matrix again).
func withRoundedOperands(_ a: UnsafePointer<Float>, count ac: Int, _ b: UnsafePointer<Float>, count bc: Int,
                         _ body: (UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>) -> Void) {
    withRoundedOperands([(a, ac), (b, bc)]) { body($0[0], $0[1]) }
}

/// `withRoundedOperands` for any number of operands (a convolution's backward takes three).
func withRoundedOperands(_ operands: [(UnsafePointer<Float>, Int)], _ body: ([UnsafeMutablePointer<Float>]) -> Void) {
    let copies = operands.map { p, count -> UnsafeMutablePointer<Float> in
        let out = BlockAllocator.allocate(bytes: max(count, 1) * 4).assumingMemoryBound(to: Float.self)
        parallelChunks(count) { s, e in for i in s..<e { out[i] = bf16Rounded(p[i]) } }
        return out
    }
    MixedPrecision.suspended += 1
    defer {
        MixedPrecision.suspended -= 1
        for (c, (_, count)) in zip(copies, operands) { BlockAllocator.free(UnsafeMutableRawPointer(c), bytes: max(count, 1) * 4) }
    }
    body(copies)
    MixedPrecision.count(native: false)
}

// MARK: - GEMM

/// A bf16 GEMM (row-major, as `sgemm`): op(A) and op(B) converted to bf16, products and sums in float32. Natively a
/// oneDNN matmul (AMX / AVX512-BF16 kernels), primitives cached per shape; emulated, the float32 GEMM of the rounded
/// operands. Single-threaded, like `gemmCall`.
func bf16GEMM(transA: Bool, transB: Bool, _ m: Int, _ n: Int, _ k: Int, _ alpha: Float,
              _ a: UnsafePointer<Float>, _ lda: Int, _ b: UnsafePointer<Float>, _ ldb: Int,
              _ beta: Float, _ c: UnsafeMutablePointer<Float>, _ ldc: Int, packed: PackedWeights? = nil) {
    if MixedPrecision.native, BF16MatmulPlan.run(transA: transA, transB: transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, packed: packed) {
        MixedPrecision.count(native: true)
        return
    }
    // Emulated: op(A) [m, k] and op(B) [k, n] rounded into dense buffers.
    let ra = BlockAllocator.allocate(bytes: m * k * 4).assumingMemoryBound(to: Float.self)
    let rb = BlockAllocator.allocate(bytes: k * n * 4).assumingMemoryBound(to: Float.self)
    defer { BlockAllocator.free(UnsafeMutableRawPointer(ra), bytes: m * k * 4); BlockAllocator.free(UnsafeMutableRawPointer(rb), bytes: k * n * 4) }
    packDense(a, lda, transposed: transA, rows: m, cols: k, into: ra, bf16Rounded)
    packDense(b, ldb, transposed: transB, rows: k, cols: n, into: rb, bf16Rounded)
    gemmCall(GEMMPolicy.kernel(m: m, n: n, k: k), transA: false, transB: false, m, n, k, alpha, ra, k, rb, n, beta, c, ldc)
    MixedPrecision.count(native: false)
}

/// op(X) [rows, cols] of a row-major X with row pitch `ld` (X is [cols, rows] when `transposed`), converted element
/// by element into the dense row-major `out`.
@inline(__always)
func packDense<T>(_ x: UnsafePointer<Float>, _ ld: Int, transposed: Bool, rows: Int, cols: Int, into out: UnsafeMutablePointer<T>,
                  _ convert: (Float) -> T) {
    if transposed { for i in 0..<rows { for j in 0..<cols { out[i * cols + j] = convert(x[j * ld + i]) } } }
    else { for i in 0..<rows { let r = x + i * ld, o = out + i * cols; for j in 0..<cols { o[j] = convert(r[j]) } } }
}

/// A cached oneDNN bf16 matmul: src [m, k] and weights [k, n] dense bf16, dst [m, n] float32 with row pitch ldc,
/// alpha as an output scale, beta as a sum post-op.
final class BF16MatmulPlan: @unchecked Sendable {
    /// `transB`: the weights are given as stored, [n, k] row-major (a linear layer's), and described to oneDNN by
    /// their strides, so converting them to bf16 reads them in order instead of transposing element by element.
    struct Key: Hashable { let m, n, k, ldc: Int; let alpha, beta: Float; var transB = false }
    let primitive: DNNLPrimitive
    let src, weights, dst: dnnl_memory_desc_t
    let scratchpadBytes: Int

    init(primitive: DNNLPrimitive, src: dnnl_memory_desc_t, weights: dnnl_memory_desc_t, dst: dnnl_memory_desc_t, scratchpadBytes: Int) {
        self.primitive = primitive; self.src = src; self.weights = weights; self.dst = dst; self.scratchpadBytes = scratchpadBytes
    }

    private static let cache = PlanCache<Key, BF16MatmulPlan>()

    static func get(_ key: Key) -> BF16MatmulPlan? {
        cache.get(key) {
            let plan = make(key)
            if plan == nil {
                OneDNN.warn("oneDNN: no bf16 matmul for \(key.m)x\(key.n)x\(key.k); bf16 GEMMs of this shape are emulated (slow)")
            }
            return plan
        }
    }

    static func make(_ key: Key) -> BF16MatmulPlan? {
        OneDNN.singleThreaded()
        guard let s = OneDNN.plain([key.m, key.k], strides: [key.k, 1], type: dnnl_bf16),
              let w = OneDNN.plain([key.k, key.n], strides: key.transB ? [1, key.k] : [key.n, 1], type: dnnl_bf16),
              let d = OneDNN.plain([key.m, key.n], strides: [key.ldc, 1]),
              let pd = OneDNN.matmul(src: s, weights: w, dst: d, alpha: key.alpha, beta: key.beta) else { return nil }
        defer { dnnl_primitive_desc_destroy(pd) }
        if OneDNN.implementation(pd).hasPrefix("ref") { return nil }
        var scratch = 0
        if var sp = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0)?.pointee { scratch = dnnl_memory_desc_get_size(&sp) }
        guard let p = DNNLPrimitive.make(pd) else { return nil }
        return BF16MatmulPlan(primitive: p, src: s, weights: w, dst: d, scratchpadBytes: scratch)
    }

    /// Runs one product natively; false when oneDNN has no bf16 matmul for it (the caller then emulates).
    static func run(transA: Bool, transB: Bool, _ m: Int, _ n: Int, _ k: Int, _ alpha: Float,
                    _ a: UnsafePointer<Float>, _ lda: Int, _ b: UnsafePointer<Float>, _ ldb: Int,
                    _ beta: Float, _ c: UnsafeMutablePointer<Float>, _ ldc: Int, packed: PackedWeights? = nil) -> Bool {
        guard let plan = get(Key(m: m, n: n, k: k, ldc: ldc, alpha: alpha, beta: beta, transB: transB)), let engine = OneDNN.engine else { return false }
        let exec = DNNLExecution(engine: engine)
        let ab = exec.buffer(m * k * 2).assumingMemoryBound(to: UInt16.self)
        packDense(a, lda, transposed: transA, rows: m, cols: k, into: ab, bf16Bits)
        // B converted as stored: with transB it is [n, k], and the plan's weight strides transpose it. A frozen model's
        // weight (`packed`: a linear layer's) is converted once and kept.
        let convert = { (bb: UnsafeMutableRawPointer) -> Bool in
            packDense(b, ldb, transposed: false, rows: transB ? n : k, cols: transB ? k : n, into: bb.assumingMemoryBound(to: UInt16.self), bf16Bits)
            return true
        }
        let bb: UnsafeMutableRawPointer
        if let packed,
           let kept = packed.buffer(packer: BF16MatmulPlan.self, layout: plan.weights, slice: UnsafeMutableRawPointer(mutating: b), bytes: k * n * 2, fill: convert) {
            bb = kept
        } else {
            bb = exec.buffer(k * n * 2)
            _ = convert(bb)
        }
        OneDNN.singleThreaded()
        return OneDNN.withStream { stream -> Bool in
            guard let ms = exec.memory(plan.src, UnsafeMutableRawPointer(ab)), let mw = exec.memory(plan.weights, UnsafeMutableRawPointer(bb)),
                  let md = exec.memory(plan.dst, UnsafeMutableRawPointer(c)) else { return false }
            return exec.run(plan.primitive, [dnnl_exec_arg_t(arg: Int32(CDNNL_ARG_SRC), memory: ms), dnnl_exec_arg_t(arg: Int32(CDNNL_ARG_WEIGHTS), memory: mw),
                                             dnnl_exec_arg_t(arg: Int32(CDNNL_ARG_DST), memory: md)], on: stream, scratchpad: plan.scratchpadBytes)
        } ?? false
    }
}
