import CDNNL
import Foundation

/// oneDNN glue: one CPU engine, a pool of streams, memory descriptors and status checks. oneDNN's JIT picks the
/// widest vector ISA the CPU has (AVX-512 where present) at run time, independently of how this package is compiled.
///
/// Threading: Debian's libdnnl runs on OpenMP, and libgomp's workers keep spinning for milliseconds after every
/// parallel region; they would take the cores from the engine's own parallel loops that follow each convolution, as
/// OpenBLAS's workers did (see `Threads`), and an OpenMP barrier stalls for whole scheduler ticks when a neighbour
/// holds a core. So oneDNN runs single-threaded in the thread that calls it (OpenMP's thread count is set to 1 on that
/// thread before every call), and the callers split their work into independent slices run on the engine's threads
/// (`parallelFor`): its thread count is `Threads.count` like everything else. The one exception is a chain of
/// inference primitives with nothing of the engine's between them (`ConvChain`): there OpenMP's threads go straight
/// from one primitive to the next, and each primitive runs on `Threads.count` of them.
enum OneDNN {
    /// The CPU engine, or nil when oneDNN cannot create one (the callers then use their own kernels).
    static let engine: dnnl_engine_t? = {
        var e: dnnl_engine_t?
        guard dnnl_engine_create(&e, dnnl_cpu, 0) == dnnl_success else {
            warn("oneDNN: no CPU engine; convolutions use the engine's own kernels")
            return nil
        }
        return e
    }()

    /// `omp_set_num_threads` of the libgomp that libdnnl is linked against (looked up at run time: the OpenMP
    /// headers are the compiler's, not a Debian package's).
    private static let setOMPThreads: (@convention(c) (Int32) -> Void)? = {
        guard let handle = dlopen(nil, RTLD_NOW), let symbol = dlsym(handle, "omp_set_num_threads") else { return nil }
        return unsafeBitCast(symbol, to: (@convention(c) (Int32) -> Void).self)
    }()

    /// Makes oneDNN run in the calling thread only (before creating or executing a primitive on it).
    @inline(__always)
    static func singleThreaded() { setOMPThreads?(1) }

    /// Makes oneDNN split its work over `n` OpenMP threads (the calling one included).
    static func threads(_ n: Int) { setOMPThreads?(Int32(n)) }

    private static let lock = NSLock()
    nonisolated(unsafe) private static var streams: [dnnl_stream_t] = []

    /// Runs `body` with a stream no other thread uses meanwhile (streams are not thread-safe; creating one per call
    /// would cost an allocation).
    static func withStream<T>(_ body: (dnnl_stream_t) -> T) -> T? {
        guard let engine else { return nil }
        lock.lock()
        var stream = streams.popLast()
        lock.unlock()
        if stream == nil {
            guard dnnl_stream_create(&stream, engine, dnnl_stream_default_flags.rawValue) == dnnl_success, stream != nil else { return nil }
        }
        defer { lock.lock(); streams.append(stream!); lock.unlock() }
        return body(stream!)
    }

    /// A plain (strided) descriptor, f32 unless `type` says otherwise.
    static func plain(_ dims: [Int], strides: [Int], type: dnnl_data_type_t = dnnl_f32) -> dnnl_memory_desc_t? {
        var md = dnnl_memory_desc_t()
        let ok = dnnl_memory_desc_init_by_strides(&md, Int32(dims.count), padded(dims), type, padded(strides)) == dnnl_success
        return ok ? md : nil
    }

    /// A descriptor (f32 unless `type` says otherwise) whose layout the primitive chooses.
    static func any(_ dims: [Int], type: dnnl_data_type_t = dnnl_f32) -> dnnl_memory_desc_t? {
        var md = dnnl_memory_desc_t()
        let ok = dnnl_memory_desc_init_by_tag(&md, Int32(dims.count), padded(dims), type, dnnl_format_tag_any) == dnnl_success
        return ok ? md : nil
    }

    /// The descriptor of a matmul dst = alpha·src·weights + beta·dst (alpha an output scale, beta a sum post-op), with
    /// a user scratchpad; nil on failure. The caller destroys it.
    static func matmul(src: dnnl_memory_desc_t, weights: dnnl_memory_desc_t, dst: dnnl_memory_desc_t, alpha: Float, beta: Float) -> dnnl_primitive_desc_t? {
        guard let engine else { return nil }
        var s = src, w = weights, d = dst
        var desc = dnnl_matmul_desc_t()
        guard dnnl_matmul_desc_init(&desc, &s, &w, nil, &d) == dnnl_success, let attr = attributes(outputScale: alpha) else { return nil }
        defer { dnnl_primitive_attr_destroy(attr) }
        if beta != 0 {
            var ops: dnnl_post_ops_t?
            guard dnnl_post_ops_create(&ops) == dnnl_success, let ops else { return nil }
            defer { dnnl_post_ops_destroy(ops) }
            guard dnnl_post_ops_append_sum(ops, beta) == dnnl_success, dnnl_primitive_attr_set_post_ops(attr, ops) == dnnl_success else { return nil }
        }
        var pd: dnnl_primitive_desc_t?
        guard dnnl_primitive_desc_create(&pd, &desc, attr, engine, nil) == dnnl_success else { return nil }
        return pd
    }

    /// Primitive attributes with a user scratchpad and, unless it is 1, a common output scale; the caller destroys them.
    static func attributes(outputScale: Float = 1) -> dnnl_primitive_attr_t? {
        var attr: dnnl_primitive_attr_t?
        guard dnnl_primitive_attr_create(&attr) == dnnl_success, let attr else { return nil }
        var scale = outputScale
        guard dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user) == dnnl_success,
              outputScale == 1 || dnnl_primitive_attr_set_output_scales(attr, 1, 0, &scale) == dnnl_success else {
            dnnl_primitive_attr_destroy(attr)
            return nil
        }
        return attr
    }

    /// The implementation oneDNN picked for `pd` ("brg:avx512_core", "ref:any", ...).
    static func implementation(_ pd: dnnl_primitive_desc_t) -> String {
        var info: UnsafePointer<CChar>?
        _ = withUnsafeMutablePointer(to: &info) { dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, $0) }
        return info.map { String(cString: $0) } ?? "ref"
    }

    /// Dims as oneDNN's fixed-size array (DNNL_MAX_NDIMS entries).
    static func padded(_ v: [Int]) -> [dnnl_dim_t] { v.map { dnnl_dim_t($0) } + Array(repeating: 0, count: max(0, 12 - v.count)) }

    /// Whether a native low-precision path may run: the CPU `has` it, oneDNN has an engine, and `check` (its kernels
    /// against the emulated numbers) finds no mismatch; a mismatch is warned about once and turns the path off.
    static func nativeCheckPasses(_ what: String, has: Bool, _ check: () -> String?) -> Bool {
        guard has, engine != nil else { return false }
        let problem = check()
        if let problem { warn("\(what): oneDNN's native kernels failed their check (\(problem)); \(what) runs emulated (slower)") }
        return problem == nil
    }

    private static let warned = NSLock()
    nonisolated(unsafe) private static var warnedMessages: Set<String> = []

    /// Prints `message` to stderr the first time it is seen (a fallback is not an error, but should be visible).
    static func warn(_ message: String) {
        warned.lock()
        let first = warnedMessages.insert(message).inserted
        warned.unlock()
        if first { FileHandle.standardError.write(Data((message + "\n").utf8)) }
    }
}

/// oneDNN objects made on first use and kept per key (a failure, nil, is remembered too); thread-safe. Making one runs
/// outside the lock: two threads may both make the first one of a key, and one of them is kept.
final class PlanCache<Key: Hashable, Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var entries: [Key: Value?] = [:]

    func get(_ key: Key, make: () -> Value?) -> Value? {
        lock.lock()
        if let hit = entries[key] { lock.unlock(); return hit }
        lock.unlock()
        let made = make()
        lock.lock(); entries[key] = made; lock.unlock()
        return made
    }
}

/// Owns a oneDNN object handle and destroys it with the matching function.
final class DNNLPrimitive: @unchecked Sendable {
    let handle: dnnl_primitive_t
    /// The user scratchpad an execution passes (reorders; 0 when it needs none).
    var scratchpadBytes = 0
    init(_ handle: dnnl_primitive_t) { self.handle = handle }
    deinit { dnnl_primitive_destroy(handle) }

    /// Creates the primitive of a descriptor (and destroys the descriptor); nil on any failure.
    static func make(_ pd: dnnl_primitive_desc_t) -> DNNLPrimitive? {
        var p: dnnl_primitive_t?
        let ok = dnnl_primitive_create(&p, pd) == dnnl_success
        return ok ? p.map(DNNLPrimitive.init) : nil
    }

    /// A reorder between two descriptors of the same dims; nil on failure. Its scratchpad is the caller's
    /// (`scratchpadBytes`): oneDNN's own is one buffer shared by every primitive, and two threads running reorders at
    /// once (a convolution split by channels) corrupted the s8 weights' compensation through it (seen on Zen 4).
    static func reorder(from src: dnnl_memory_desc_t, to dst: dnnl_memory_desc_t, scale: Float = 1) -> DNNLPrimitive? {
        guard let engine = OneDNN.engine else { return nil }
        var s = src, d = dst
        // dst = src·scale (quantizing into u8 or dequantizing out of it), rounded to nearest even and saturated.
        guard let attr = OneDNN.attributes(outputScale: scale) else { return nil }
        defer { dnnl_primitive_attr_destroy(attr) }
        var pd: dnnl_primitive_desc_t?
        guard dnnl_reorder_primitive_desc_create(&pd, &s, engine, &d, engine, attr) == dnnl_success, let pd else { return nil }
        defer { dnnl_primitive_desc_destroy(pd) }
        let p = make(pd)
        if var md = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0)?.pointee { p?.scratchpadBytes = dnnl_memory_desc_get_size(&md) }
        return p
    }
}

/// A weight in the layouts and types kernels reorder it into (blocked float32, bf16 or int8, Winograd-transformed, with
/// s8 compensation), kept across calls: the reorder cost about a third of a bf16 ResNet-50's convolution time when it
/// ran on every call. Only for weights that cannot change while it lives: int8's quantized weights (`QuantizedConv`)
/// and the float weights of a model frozen for inference (`FrozenWeights`). One entry per kind of plan, packed layout
/// (oneDNN's descriptor) and weight slice, so plans for other input sizes share it: keyed by plan, every new image
/// size of a detector kept another copy of all its weights.
public final class PackedWeights: @unchecked Sendable {
    private struct Key: Hashable { let packer: ObjectIdentifier, layout: [UInt8], slice: Int }
    private let lock = NSLock()
    private var buffers: [Key: (UnsafeMutableRawPointer, Int)] = [:]

    public init() {}

    deinit { for (b, bytes) in buffers.values { BlockAllocator.free(b, bytes: bytes) } }

    /// The packed buffer of layout `layout` for the weight slice at `slice`, filled by `fill` on first use (nil when it
    /// fails). `packer` is the kind of plan that fills it: what it packs differs between kinds (a chained convolution
    /// packs the weight with its BatchNorm folded in, a per-convolution one as it is), so they never share a buffer.
    func buffer(packer: AnyObject.Type, layout: dnnl_memory_desc_t, slice: UnsafeMutableRawPointer, bytes: Int,
                fill: (UnsafeMutableRawPointer) -> Bool) -> UnsafeMutableRawPointer? {
        let key = Key(packer: ObjectIdentifier(packer), layout: withUnsafeBytes(of: layout) { Array($0) }, slice: Int(bitPattern: slice))
        lock.lock()
        defer { lock.unlock() }
        if let (b, _) = buffers[key] { return b }
        let b = BlockAllocator.allocate(bytes: bytes)
        guard fill(b) else { BlockAllocator.free(b, bytes: bytes); return nil }
        buffers[key] = (b, bytes)
        return b
    }
}

/// The float weights of a model frozen for inference: their packed forms are kept (`PackedWeights`). The tools
/// install a model's weights when they run it, at any `--precision` (int8 after calibration), and change none of them
/// afterwards; the registry holds the tensors, so no other tensor can take their addresses while they are registered.
/// Optimizer steps and state-dict loads forget them; only passes without gradients read them.
public enum FrozenWeights {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var entries: [UnsafeMutableRawPointer: (Tensor, PackedWeights)] = [:]

    nonisolated(unsafe) private static weak var owner: AnyObject?
    nonisolated(unsafe) private static var generationCount = 1

    /// While a model is frozen, a number that changes whenever the frozen set does (nil when none is): values derived
    /// from frozen parameters (a BatchNorm's running affine) are cached against it.
    public static var generation: Int? {
        lock.lock()
        defer { lock.unlock() }
        return owner == nil ? nil : generationCount
    }

    /// Registers `weights` of `owner` (a model), replacing any earlier set; nothing when they are registered already.
    public static func install(_ weights: @autoclosure () -> [Tensor], owner: AnyObject) {
        lock.lock()
        defer { lock.unlock() }
        if self.owner === owner { return }
        entries = Dictionary(weights().map { (UnsafeMutableRawPointer($0.data), ($0, PackedWeights())) }, uniquingKeysWith: { a, _ in a })
        self.owner = owner
        generationCount += 1
    }

    /// Forgets every registered weight and its packed forms (optimizers call it before they change weights).
    public static func clear() {
        lock.lock()
        if !entries.isEmpty { entries = [:] }
        owner = nil
        generationCount += 1
        lock.unlock()
    }

    /// The packed forms of the registered weight whose data starts at `w`, or nil.
    static func packed(_ w: UnsafeMutableRawPointer) -> PackedWeights? {
        lock.lock()
        defer { lock.unlock() }
        return entries[w]?.1
    }
}

/// The memory objects and scratch buffers of one primitive execution, released together when it ends.
final class DNNLExecution {
    private let engine: dnnl_engine_t
    private var memories: [dnnl_memory_t] = []
    private var buffers: [(UnsafeMutableRawPointer, Int)] = []

    init(engine: dnnl_engine_t) { self.engine = engine }

    deinit {
        for m in memories { dnnl_memory_destroy(m) }
        for (b, bytes) in buffers { BlockAllocator.free(b, bytes: bytes) }
    }

    /// A memory object of `md` over `handle`; nil on failure.
    func memory(_ md: dnnl_memory_desc_t, _ handle: UnsafeMutableRawPointer) -> dnnl_memory_t? {
        var d = md
        var m: dnnl_memory_t?
        guard dnnl_memory_create(&m, &d, engine, handle) == dnnl_success, let m else { return nil }
        memories.append(m)
        return m
    }

    /// A scratch buffer of `bytes`, freed with the execution.
    func buffer(_ bytes: Int) -> UnsafeMutableRawPointer {
        let b = BlockAllocator.allocate(bytes: bytes)
        buffers.append((b, bytes))
        return b
    }

    /// Runs `p` on `args` on `stream`, with a scratchpad of `scratchpad` bytes when it needs one (user scratchpad
    /// mode), and waits for it; false on any failure.
    func run(_ p: DNNLPrimitive, _ args: [dnnl_exec_arg_t], on stream: dnnl_stream_t, scratchpad: Int = 0) -> Bool {
        var args = args
        if scratchpad > 0 {
            guard let arg = self.scratchpad(bytes: scratchpad) else { return false }
            args.append(arg)
        }
        return args.withUnsafeBufferPointer { dnnl_primitive_execute(p.handle, stream, Int32($0.count), $0.baseAddress) == dnnl_success }
            && dnnl_stream_wait(stream) == dnnl_success
    }

    /// The scratchpad argument of a primitive whose scratchpad mode is user (nil when it needs none or on failure).
    func scratchpad(bytes: Int) -> dnnl_exec_arg_t? {
        guard bytes > 0 else { return nil }
        var s = dnnl_memory_desc_t()
        _ = dnnl_memory_desc_init_by_tag(&s, 1, OneDNN.padded([bytes]), dnnl_u8, dnnl_a)
        return memory(s, buffer(bytes)).map { dnnl_exec_arg_t(arg: Int32(CDNNL_ARG_SCRATCHPAD), memory: $0) }
    }
}
