import CBLAS
import Dispatch
import Foundation

/// Threading policy: one pool of threads, ours. OpenBLAS runs single-threaded and `sgemm` splits large products
/// over our threads, because OpenBLAS's own workers keep spinning in sched_yield after every GEMM and took cores from
/// the loops that followed (about 17 % of the samples in a profile of ACmix-ResNet-50; 10–15 % faster without).
/// Only products small enough for `sgemm` to leave whole run inside a parallel region (window attention's per-task
/// ones), so splitting never nests and nothing oversubscribes.
///
/// `ACMIX_NUM_THREADS` (a positive integer) sets the pool's size; the default is one thread per core. A
/// data-parallel job started by mpirun divides the cores among the ranks of a machine instead (Distributed).
public enum Threads {
    public static var count: Int = {
        openblas_set_num_threads(1)
        return configured ?? ProcessInfo.processInfo.activeProcessorCount
    }()

    /// Whether the calling thread runs one slice of a region that already splits its work over the threads
    /// (`serially`): loops and products inside it then stay on this thread instead of nesting another split.
    public static var serialHere: Bool { pthread_getspecific(serialKey) != nil }

    /// `ACMIX_NUM_THREADS` when it is set to a positive integer (the tools refuse any other value at start).
    public static var configured: Int? {
        ProcessInfo.processInfo.environment["ACMIX_NUM_THREADS"].flatMap { Int($0) }.flatMap { $0 >= 1 ? $0 : nil }
    }
}

private let serialKey: pthread_key_t = {
    var key = pthread_key_t()
    pthread_key_create(&key, nil)
    return key
}()

/// Runs `body` with every `parallelChunks` / `sgemm` inside it on the calling thread (one slice of a region that
/// splits its work by itself, e.g. a convolution's images).
public func serially<T>(_ body: () throws -> T) rethrows -> T {
    let saved = pthread_getspecific(serialKey)
    pthread_setspecific(serialKey, UnsafeRawPointer(bitPattern: 1))
    defer { pthread_setspecific(serialKey, saved) }
    return try body()
}

/// Runs `body(start, end)` over `0..<n` split into contiguous chunks, in parallel when the work is big enough.
/// `cost` is the rough work per item in elements touched; loops under `minimum` stay on the calling thread.
@inline(__always)
public func parallelChunks(_ n: Int, cost: Int = 1, minimum: Int = 32_768, _ body: (Int, Int) -> Void) {
    let threads = Threads.count
    if threads <= 1 || n <= 1 || n * cost < minimum || Threads.serialHere {
        body(0, n)
        return
    }
    let chunks = min(n, threads)
    withoutActuallyEscaping(body) { body in
        DispatchQueue.concurrentPerform(iterations: chunks) { c in
            let start = n * c / chunks, end = n * (c + 1) / chunks
            if start < end { body(start, end) }
        }
    }
}

/// Per-index form of `parallelChunks`.
@inline(__always)
public func parallelFor(_ n: Int, cost: Int = 1, _ body: (Int) -> Void) {
    parallelChunks(n, cost: cost) { s, e in for i in s..<e { body(i) } }
}
