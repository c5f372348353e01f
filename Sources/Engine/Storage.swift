import CBLAS
import Foundation
import Synchronization

/// 64-byte aligned Float32 buffer shared by a tensor and its reshape views.
public final class Storage: @unchecked Sendable {
    public let pointer: UnsafeMutablePointer<Float>
    public let count: Int

    /// Keep freed tensor memory in the heap instead of returning it to the kernel: activations of the same sizes
    /// are allocated every iteration, and fresh mmap'd pages cost a page fault per 4 KiB on first touch. The trim
    /// threshold is high because a training step frees most of its heap at once: at 64 MiB, glibc gave an
    /// ACmix-Swin-T step's activations back every step and faulted them in again (15k faults a step, 8 % of its
    /// samples in the kernel's page clearing). RSS stays at its peak, as with PyTorch's caching allocator.
    static let configureAllocator: Void = {
        _ = mallopt(M_MMAP_THRESHOLD, Int32(BlockAllocator.threshold))   // glibc's maximum; larger blocks are BlockAllocator's
        _ = mallopt(M_TRIM_THRESHOLD, 1 << 30)
        // One heap for all threads: kernel scratch allocated on worker threads would otherwise grow per-thread
        // arenas that the main thread's tensors never reuse.
        _ = mallopt(M_ARENA_MAX, 1)
    }()

    /// Bytes held by live tensor storages now, and the most held at once since the last `resetPeak()`.
    static let live = Atomic<Int>(0)
    static let peak = Atomic<Int>(0)
    public static var liveBytes: Int { live.load(ordering: .relaxed) }
    public static var peakBytes: Int { peak.load(ordering: .relaxed) }
    public static func resetPeak() { peak.store(live.load(ordering: .relaxed), ordering: .relaxed) }

    /// The most tensor bytes `body` held at once beyond what was live when it started.
    public static func measurePeak(_ body: () throws -> Void) rethrows -> Int {
        let base = liveBytes
        resetPeak()
        try body()
        return max(0, peakBytes - base)
    }

    public init(count: Int) {
        _ = Storage.configureAllocator
        self.count = count
        let now = Storage.live.add(count * 4, ordering: .relaxed).newValue
        _ = Storage.peak.max(now, ordering: .relaxed)
        pointer = BlockAllocator.allocate(bytes: count * MemoryLayout<Float>.stride).bindMemory(to: Float.self, capacity: max(count, 16))
    }

    /// Takes over a block of `BlockAllocator.allocate(bytes: count·4)` (freed with the storage).
    init(adopting block: UnsafeMutableRawPointer, count: Int) {
        self.count = count
        let now = Storage.live.add(count * 4, ordering: .relaxed).newValue
        _ = Storage.peak.max(now, ordering: .relaxed)
        pointer = block.bindMemory(to: Float.self, capacity: max(count, 16))
    }

    deinit {
        Storage.live.subtract(count * 4, ordering: .relaxed)
        BlockAllocator.free(UnsafeMutableRawPointer(pointer), bytes: count * MemoryLayout<Float>.stride)
    }
}

/// Whether a forward pass at a large input would fit in memory, before it runs (an allocation that fails stops the
/// process; the kernel's OOM killer does the same without a word).
public enum ActivationMemory {
    /// Throws when `forward` at n×3×h×w would need more than `limit` bytes of tensors (nil: 80 % of physical memory).
    /// Inputs up to 1024×1024 pixels pass unmeasured. Above that, `forward(ph, pw)` runs once at a probe of about
    /// 1024×1024 pixels of the same aspect (sides multiples of 32, at least 224) and batch 1, and its peak tensor
    /// memory is scaled by the batch and the number of pixels, which activations grow with. The probe leaves the
    /// engine's random stream as it was (a probe model's initialisation must not change the real one's). `hint` ends
    /// the message.
    public static func check(n: Int, height h: Int, width w: Int, limit: Double?, hint: String,
                             forward: (_ height: Int, _ width: Int) throws -> Void) throws {
        let probeArea = 1024 * 1024
        let limit = limit ?? 0.8 * Double(ProcessInfo.processInfo.physicalMemory)
        guard h * w > probeArea || Double(n) * 3 * Double(h * w) * 4 > limit else { return }
        let s = (Double(probeArea) / Double(h * w)).squareRoot()
        let ph = max(224, Int((Double(h) * s / 32).rounded()) * 32), pw = max(224, Int((Double(w) * s / 32).rounded()) * 32)
        var failure: Error?
        let saved = EngineRandom.generator
        let bytes = Storage.measurePeak { do { try forward(ph, pw) } catch { failure = error } }
        EngineRandom.generator = saved
        if let failure { throw failure }
        let estimate = Double(bytes) * Double(n) * Double(h * w) / Double(ph * pw)
        guard estimate > limit else { return }
        // GiB with one decimal, MiB below a tenth of a GiB (a tiny --memory-limit would read "0.0 GiB").
        func size(_ bytes: Double) -> String {
            bytes >= 0.1 * 1_073_741_824 ? String(format: "%.1f GiB", bytes / 1_073_741_824) : String(format: "%.3g MiB", bytes / 1_048_576)
        }
        throw KitError.model("input \(n)x3x\(h)x\(w) would need about \(size(estimate)) of activations (measured at \(ph)x\(pw) and "
                             + "scaled by pixels), above the limit of \(size(limit)); \(hint)")
    }
}

/// 64-byte aligned memory for tensors and kernel scratch. glibc maps every block above its largest mmap threshold
/// (32 MiB) fresh and unmaps it on free, a page fault and a zeroing per 4 KiB on every use: a sixth of the CPU time
/// of RetinaNet inference at 800×1333. Those blocks are mapped here with transparent huge pages instead (one fault
/// per 2 MiB; 20 % faster there, and no more memory). Keeping freed blocks for reuse measured only 4 % more, for
/// a quarter more peak memory.
public enum BlockAllocator {
    /// glibc's largest mmap threshold: blocks up to it come from the heap (Storage.configureAllocator sets it).
    static let threshold = 32 << 20

    static func rounded(_ bytes: Int) -> Int {
        let b = max(64, (bytes + 63) & ~63)
        return b <= threshold ? b : (b + 4095) & ~4095
    }

    /// A block of at least `bytes` bytes; give it back with `free` and the same `bytes`.
    public static func allocate(bytes: Int) -> UnsafeMutableRawPointer {
        _ = Storage.configureAllocator
        let size = rounded(bytes)
        if size <= threshold {
            var raw: UnsafeMutableRawPointer?
            guard posix_memalign(&raw, 64, size) == 0, let raw else { fatalError("out of memory allocating \(size) bytes") }
            return raw
        }
        guard let p = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), p != MAP_FAILED else {
            fatalError("out of memory allocating \(size) bytes")
        }
        _ = madvise(p, size, MADV_HUGEPAGE)   // advice only: without huge pages it still works
        return p
    }

    public static func free(_ p: UnsafeMutableRawPointer, bytes: Int) {
        let size = rounded(bytes)
        if size <= threshold { Foundation.free(p) } else { munmap(p, size) }
    }
}
