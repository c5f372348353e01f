import CBLAS
import Foundation
import Synchronization

/// 64-byte aligned Float32 buffer shared by a tensor and its reshape views.
public final class Storage: @unchecked Sendable {
    public let pointer: UnsafeMutablePointer<Float>
    public let count: Int

    /// Keep freed tensor memory in the heap instead of returning it to the kernel: activations of the same sizes
    /// are allocated every iteration, and fresh mmap'd pages cost a page fault per 4 KiB on first touch.
    static let configureAllocator: Void = {
        _ = mallopt(M_MMAP_THRESHOLD, 32 << 20)   // glibc's maximum
        _ = mallopt(M_TRIM_THRESHOLD, 64 << 20)
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
        var raw: UnsafeMutableRawPointer?
        let bytes = max(64, (count * MemoryLayout<Float>.stride + 63) & ~63)
        guard posix_memalign(&raw, 64, bytes) == 0, let raw else {
            fatalError("out of memory allocating \(bytes) bytes")
        }
        pointer = raw.bindMemory(to: Float.self, capacity: max(count, 16))
    }

    deinit {
        Storage.live.subtract(count * 4, ordering: .relaxed)
        free(pointer)
    }
}
