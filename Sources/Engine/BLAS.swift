import CBLAS
import CDNNL
import Dispatch
import Foundation
import Synchronization

/// Which library runs a GEMM.
public enum GEMMKernel: String, CaseIterable, Sendable {
    /// OpenBLAS's `cblas_sgemm`, with the kernels of the core its dynamic-arch build picked (`GEMMPolicy.openBLASCore`).
    case openBLAS = "openblas"
    /// oneDNN's `dnnl_sgemm`: JIT code for the ISA the CPU actually has (`CPUInfo.oneDNNISA`).
    case oneDNN = "onednn"
}

/// Picks the GEMM library from the CPU's own features. Debian's OpenBLAS 0.3.21 picks its kernels from a table of
/// CPUs it knows; on a newer one (5th-gen Xeon) it silently runs its SSE3 "Prescott" kernels at a fifth of the
/// speed, unless OPENBLAS_CORETYPE happens to be set. oneDNN's `dnnl_sgemm` JIT-compiles for the ISA the CPU has.
/// Measured single-threaded per shape class (`bench --case gemm_sweep`: im2col and 1×1 convolutions with their
/// backward transposes, Swin's linear layers, window attention's 49×49 products), oneDNN's was as fast or faster
/// than OpenBLAS's on every class even where OpenBLAS's core matches the CPU (AMD EPYC Zen 3, AVX2, core "Zen":
/// OpenBLAS 0.98–1.01× on 512×49×4608 and 1024³, 1.1–1.3× slower on the convolution and linear shapes, 1.2–1.5×
/// on the attention ones), so every GEMM runs on oneDNN and the choice never depends on OPENBLAS_CORETYPE. OpenBLAS
/// runs them only where oneDNN has no CPU engine, with a warning when its core is below the CPU's vector level.
public enum GEMMPolicy {
    /// The core OpenBLAS picked (its kernels' names), read once.
    public static let openBLASCore: String = String(cString: openblas_get_corename())

    /// The vector level of an OpenBLAS 0.3.x x86-64 core; unknown names count as generic, so they are never trusted.
    static func level(ofOpenBLASCore core: String) -> CPUInfo.Level {
        switch core.lowercased() {
        case "skylakex", "cooperlake", "sapphirerapids": return .avx512
        case "haswell", "zen": return .avx2
        case "sandybridge", "bulldozer", "piledriver", "steamroller", "excavator": return .avx
        default: return .generic
        }
    }

    /// Whether OpenBLAS's kernels are of this CPU's vector level.
    public static let openBLASMatchesCPU = trusts(core: openBLASCore, cpu: CPUInfo.current.level)

    /// Whether OpenBLAS core `core` has kernels of level `cpu` (on a CPU below AVX2 any core does).
    public static func trusts(core: String, cpu: CPUInfo.Level) -> Bool { cpu < .avx2 || level(ofOpenBLASCore: core) >= cpu }

    /// Forces one library for every GEMM (benchmarks and tests compare them); nil picks per shape with
    /// `kernel(m:n:k:)`. `ACMIX_GEMM=openblas|onednn` sets it at start.
    nonisolated(unsafe) public static var forced: GEMMKernel? =
        ProcessInfo.processInfo.environment["ACMIX_GEMM"].flatMap(GEMMKernel.init(rawValue:))

    /// The libraries `gemm_sweep` compares here: oneDNN, and OpenBLAS where its core matches the CPU.
    public static var candidates: [GEMMKernel] {
        (OneDNN.engine == nil ? [] : [.oneDNN]) + (openBLASMatchesCPU || OneDNN.engine == nil ? [.openBLAS] : [])
    }

    /// The library a single-threaded m×n×k product runs on (the same for every shape: see above).
    @inline(__always)
    public static func kernel(m: Int, n: Int, k: Int) -> GEMMKernel {
        if let forced { return forced }
        return automatic
    }

    static let automatic: GEMMKernel = {
        if OneDNN.engine != nil { return .oneDNN }
        if !openBLASMatchesCPU {
            OneDNN.warn("GEMMs run on OpenBLAS's \(openBLASCore) kernels, below this CPU's \(CPUInfo.current.level) (oneDNN has no CPU engine)")
        }
        return .openBLAS
    }()

    /// GEMM calls each library has run so far (tests and `bench` check what really ran).
    public static func calls(_ kernel: GEMMKernel) -> Int {
        kernel == .openBLAS ? openBLASCalls.load(ordering: .relaxed) : oneDNNCalls.load(ordering: .relaxed)
    }
    static let openBLASCalls = Atomic<Int>(0), oneDNNCalls = Atomic<Int>(0), frozenCalls = Atomic<Int>(0)
    /// Of the oneDNN calls, those that read a frozen weight's packed form (`FrozenMatmulPlan`).
    public static var frozenWeightCalls: Int { frozenCalls.load(ordering: .relaxed) }

    /// The libraries that ran this process's GEMMs, with the OpenBLAS core: "onednn", "openblas(Zen)+onednn".
    public static var chosenSummary: String {
        let ran = GEMMKernel.allCases.filter { calls($0) > 0 }
        if ran.isEmpty { return "none" }
        return ran.map { $0 == .openBLAS ? "openblas(\(openBLASCore))" : "onednn(\(CPUInfo.current.oneDNNISA))" }.joined(separator: "+")
    }

    /// A one-line description of the choice, for `bench` and logs.
    public static var description: String {
        let cpu = CPUInfo.current
        let rule = forced.map { "forced \($0.rawValue)" } ?? automatic.rawValue
        return "gemm: \(rule) (openblas core \(openBLASCore), onednn isa \(cpu.oneDNNISA), cpu level \(cpu.level))"
    }
}

/// Row-major C = alpha·op(A)·op(B) + beta·C on the library `GEMMPolicy` picks; op(X) is X or Xᵀ.
/// A is M×K after op, B is K×N after op; lda/ldb/ldc are the row strides of the stored matrices. With beta = 0, C is
/// only written (it may hold anything, NaN included).
@inline(__always)
public func sgemm(transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int, alpha: Float = 1,
                  a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                  beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int) {
    if m == 0 || n == 0 { return }
    if k == 0 {
        if beta == 0 { for i in 0..<m { (c + i * ldc).update(repeating: 0, count: n) } }
        return
    }
    // `rows` × `cols` of C from the matching panels of op(A) and op(B); bf16 when selected, except for products too
    // small to pay for a oneDNN call: Swin's per-window attention products (49×49×32) ran 1.6× slower in bf16 at
    // inference and 3× in amp training (Zen 4), the call's set-up costing more than the arithmetic.
    let bf16 = MixedPrecision.active && m * n * k >= 1 << 17
    // A frozen model's weight as B (a linear layer's) keeps its bf16 forms, one per block of columns.
    // In float32 too: its blocked form for oneDNN's matmul (`FrozenMatmulPlan`).
    let packed = !MixedPrecision.trainingPass ? FrozenWeights.packed(UnsafeMutableRawPointer(mutating: b)) : nil
    let frozen = !bf16 && !transA && GEMMPolicy.forced == nil ? packed : nil
    func call(_ rows: Int, _ cols: Int, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ c: UnsafeMutablePointer<Float>) {
        if bf16 { return bf16GEMM(transA: transA, transB: transB, rows, cols, k, alpha, a, lda, b, ldb, beta, c, ldc, packed: packed) }
        if let frozen, FrozenMatmulPlan.run(transB: transB, rows, cols, k, alpha, a, lda, b, ldb, beta, c, ldc, packed: frozen) {
            GEMMPolicy.oneDNNCalls.add(1, ordering: .relaxed)
            GEMMPolicy.frozenCalls.add(1, ordering: .relaxed)
            return
        }
        gemmCall(GEMMPolicy.kernel(m: m, n: n, k: k), transA: transA, transB: transB, rows, cols, k, alpha, a, lda, b, ldb, beta, c, ldc)
    }
    let threads = Threads.count
    // A bf16 product of a few rows by a kept weight (a classifier's linear layer) is a short pass over the weight:
    // split, it waited for a core that OpenMP's threads still held after a chain (`ConvChain`; 0.3 ms of ResNet-50's 21).
    let short = packed != nil && m < 16
    guard threads > 1 && m * n * k >= 1 << 20 && max(m, n) >= 32 * threads && !Threads.serialHere && !short else { return call(m, n, a, b, c) }
    // One single-threaded call per thread on a block of C's columns (or rows, when C is tall), in multiples of 16 so
    // every block keeps whole SIMD panels (see `Threads` for why the libraries do not thread). A frozen weight's
    // product splits by rows, evenly: its packed form is whole, and oneDNN's JIT matmul writes only dense rows of C.
    let alongN = n >= m && frozen == nil, extent = alongN ? n : m, panel = frozen == nil ? 16 : 1
    Threads.run(threads) { t in
        let lo = extent * t / threads / panel * panel, hi = t == threads - 1 ? extent : extent * (t + 1) / threads / panel * panel
        guard hi > lo else { return }
        if alongN { call(m, hi - lo, a, b + (transB ? lo * ldb : lo), c + lo) }
        else { call(hi - lo, n, a + (transA ? lo : lo * lda), b, c + lo * ldc) }
    }
}

/// One single-threaded row-major GEMM on `kernel`.
@inline(__always)
public func gemmCall(_ kernel: GEMMKernel, transA: Bool, transB: Bool, _ m: Int, _ n: Int, _ k: Int, _ alpha: Float,
              _ a: UnsafePointer<Float>, _ lda: Int, _ b: UnsafePointer<Float>, _ ldb: Int,
              _ beta: Float, _ c: UnsafeMutablePointer<Float>, _ ldc: Int) {
    if kernel == .openBLAS { GEMMPolicy.openBLASCalls.add(1, ordering: .relaxed) } else { GEMMPolicy.oneDNNCalls.add(1, ordering: .relaxed) }
    if kernel == .oneDNN {
        OneDNN.singleThreaded()
        let t = CChar(UInt8(ascii: "T")), nt = CChar(UInt8(ascii: "N"))
        // Status other than success means arguments oneDNN rejects; OpenBLAS then runs the same product.
        if dnnl_sgemm(transA ? t : nt, transB ? t : nt, dnnl_dim_t(m), dnnl_dim_t(n), dnnl_dim_t(k), alpha, a,
                      dnnl_dim_t(lda), b, dnnl_dim_t(ldb), beta, c, dnnl_dim_t(ldc)) == dnnl_success { return }
    }
    cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
}

/// Times one single-threaded m×n×k product (A and B row-major, no transposes) on `kernel`: the fewest seconds of
/// `runs` (bench's `gemm_sweep`, the data behind `GEMMPolicy.automatic`).
public func timeGEMM(_ kernel: GEMMKernel, m: Int, n: Int, k: Int, transA: Bool = false, transB: Bool = false, runs: Int) -> Double {
    let a = UnsafeMutablePointer<Float>.allocate(capacity: m * k), b = UnsafeMutablePointer<Float>.allocate(capacity: k * n)
    let c = UnsafeMutablePointer<Float>.allocate(capacity: m * n)
    defer { a.deallocate(); b.deallocate(); c.deallocate() }
    for i in 0..<(m * k) { a[i] = Float(i % 7) * 0.1 }
    for i in 0..<(k * n) { b[i] = Float(i % 5) * 0.1 }
    var best = Double.infinity
    for _ in 0..<(runs + 1) {
        let t0 = DispatchTime.now().uptimeNanoseconds
        gemmCall(kernel, transA: transA, transB: transB, m, n, k, 1, a, transA ? m : k, b, transB ? k : n, 0, c, n)
        best = min(best, Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9)
    }
    return best
}

/// A float32 product by a frozen model's weight (`FrozenWeights`) on oneDNN's matmul, the weight reordered once into the
/// kernel's own blocked layout and kept: `dnnl_sgemm` packs B on every call, which for few rows costs as much as the
/// product. Single-threaded on Zen 4: Swin-T's last-stage MLP product (49×384×3072 per thread) 1.76 → 1.01 ms,
/// 49×1536×768 1.20 → 1.01 ms, the larger ones 3–10 % faster. A is [m, k] with row pitch lda; B [k, n] as stored
/// (transB: [n, k], a linear layer's weight); C [m, n] with pitch ldc; alpha an output scale, beta a sum post-op.
final class FrozenMatmulPlan: @unchecked Sendable {
    struct Key: Hashable { let m, n, k, lda, ldb, ldc: Int; let alpha, beta: Float; let transB: Bool }
    let primitive: DNNLPrimitive
    let src, userWeights, weights, dst: dnnl_memory_desc_t
    let weightBytes, scratchpadBytes: Int
    let pack: DNNLPrimitive

    private init(primitive: DNNLPrimitive, src: dnnl_memory_desc_t, userWeights: dnnl_memory_desc_t, weights: dnnl_memory_desc_t,
                 dst: dnnl_memory_desc_t, weightBytes: Int, scratchpadBytes: Int, pack: DNNLPrimitive) {
        self.primitive = primitive; self.src = src; self.userWeights = userWeights; self.weights = weights; self.dst = dst
        self.weightBytes = weightBytes; self.scratchpadBytes = scratchpadBytes; self.pack = pack
    }

    private static let cache = PlanCache<Key, FrozenMatmulPlan>()

    private static func make(_ key: Key) -> FrozenMatmulPlan? {
        OneDNN.singleThreaded()
        guard let s = OneDNN.plain([key.m, key.k], strides: [key.lda, 1]),
              let user = OneDNN.plain([key.k, key.n], strides: key.transB ? [1, key.ldb] : [key.ldb, 1]),
              let any = OneDNN.any([key.k, key.n], type: dnnl_f32),
              let d = OneDNN.plain([key.m, key.n], strides: [key.ldc, 1]),
              let pd = OneDNN.matmul(src: s, weights: any, dst: d, alpha: key.alpha, beta: key.beta) else { return nil }
        defer { dnnl_primitive_desc_destroy(pd) }
        // Only oneDNN's JIT kernels beat `dnnl_sgemm`; its gemm-based and reference matmuls would not.
        guard OneDNN.implementation(pd).hasPrefix("brg") else { return nil }
        guard var inner = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0)?.pointee,
              let pack = DNNLPrimitive.reorder(from: user, to: inner) else { return nil }
        var scratch = 0
        if var sp = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0)?.pointee { scratch = dnnl_memory_desc_get_size(&sp) }
        guard let p = DNNLPrimitive.make(pd) else { return nil }
        return FrozenMatmulPlan(primitive: p, src: s, userWeights: user, weights: inner, dst: d,
                                weightBytes: dnnl_memory_desc_get_size(&inner), scratchpadBytes: scratch, pack: pack)
    }

    /// Runs one product single-threaded with B's packed form kept in `packed`; false when oneDNN has no JIT matmul for
    /// it or a call fails (the caller then runs `gemmCall`).
    static func run(transB: Bool, _ m: Int, _ n: Int, _ k: Int, _ alpha: Float, _ a: UnsafePointer<Float>, _ lda: Int,
                    _ b: UnsafePointer<Float>, _ ldb: Int, _ beta: Float, _ c: UnsafeMutablePointer<Float>, _ ldc: Int,
                    packed: PackedWeights) -> Bool {
        let key = Key(m: m, n: n, k: k, lda: lda, ldb: ldb, ldc: ldc, alpha: alpha, beta: beta, transB: transB)
        guard let plan = cache.get(key, make: { make(key) }),
              let engine = OneDNN.engine else { return false }
        OneDNN.singleThreaded()
        let exec = DNNLExecution(engine: engine)
        return OneDNN.withStream { stream -> Bool in
            let user = UnsafeMutableRawPointer(mutating: b)
            guard let kept = packed.buffer(packer: FrozenMatmulPlan.self, layout: plan.weights, slice: user, bytes: plan.weightBytes, fill: { buffer in
                      guard let from = exec.memory(plan.userWeights, user), let to = exec.memory(plan.weights, buffer) else { return false }
                      return exec.run(plan.pack, [dnnl_exec_arg_t(arg: Int32(CDNNL_ARG_FROM), memory: from),
                                                  dnnl_exec_arg_t(arg: Int32(CDNNL_ARG_TO), memory: to)], on: stream, scratchpad: plan.pack.scratchpadBytes)
                  }),
                  let ms = exec.memory(plan.src, UnsafeMutableRawPointer(mutating: a)), let mw = exec.memory(plan.weights, kept),
                  let md = exec.memory(plan.dst, UnsafeMutableRawPointer(c)) else { return false }
            return exec.run(plan.primitive, [dnnl_exec_arg_t(arg: Int32(CDNNL_ARG_SRC), memory: ms), dnnl_exec_arg_t(arg: Int32(CDNNL_ARG_WEIGHTS), memory: mw),
                                             dnnl_exec_arg_t(arg: Int32(CDNNL_ARG_DST), memory: md)], on: stream, scratchpad: plan.scratchpadBytes)
        } ?? false
    }
}
