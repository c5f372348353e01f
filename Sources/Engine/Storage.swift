import Foundation

/// 64-byte aligned Float32 buffer shared by a tensor and its reshape views.
public final class Storage: @unchecked Sendable {
    public let pointer: UnsafeMutablePointer<Float>
    public let count: Int

    public init(count: Int) {
        self.count = count
        var raw: UnsafeMutableRawPointer?
        let bytes = max(64, (count * MemoryLayout<Float>.stride + 63) & ~63)
        guard posix_memalign(&raw, 64, bytes) == 0, let raw else {
            fatalError("out of memory allocating \(bytes) bytes")
        }
        pointer = raw.bindMemory(to: Float.self, capacity: max(count, 16))
    }

    deinit { free(pointer) }
}
