import CBLAS
import Dispatch
import Foundation
import Synchronization

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
    Threads.run(chunks) { c in
        let start = n * c / chunks, end = n * (c + 1) / chunks
        if start < end { body(start, end) }
    }
}

/// Per-index form of `parallelChunks`.
@inline(__always)
public func parallelFor(_ n: Int, cost: Int = 1, _ body: (Int) -> Void) {
    parallelChunks(n, cost: cost) { s, e in for i in s..<e { body(i) } }
}

extension Threads {
    /// Runs `body(0..<iterations)` on the pool's threads and the caller, returning when every call has returned (the
    /// engine's `concurrentPerform`). With one thread, nested inside a region, or while another thread holds the pool
    /// (a data loader worker), the iterations run on the calling thread in order.
    public static func run(_ iterations: Int, _ body: (Int) -> Void) {
        if iterations <= 1 || count <= 1 {
            for i in 0..<max(0, iterations) { body(i) }
        } else if useSpinPool {
            SpinPool.shared.run(iterations, workers: count - 1, body)
        } else {
            let flush = Denormals.flushedHere
            DispatchQueue.concurrentPerform(iterations: iterations) { i in Denormals.follow(flush); body(i) }
        }
    }

    /// `run` for bodies that can fail (a oneDNN primitive per slice): true when every call returned true. Every call
    /// runs, whatever the others return.
    static func all(_ iterations: Int, _ body: (Int) -> Bool) -> Bool {
        var ok = [Bool](repeating: false, count: iterations)
        ok.withUnsafeMutableBufferPointer { ok in
            let ok = ok.baseAddress!
            run(iterations) { ok[$0] = body($0) }
        }
        return !ok.contains(false)
    }

    /// `ACMIX_POOL=gcd` runs the engine's regions on libdispatch's `concurrentPerform` instead of `SpinPool` (to
    /// compare them on one machine).
    nonisolated(unsafe) static var useSpinPool = ProcessInfo.processInfo.environment["ACMIX_POOL"] != "gcd"
}

/// The engine's fork-join pool. A training step runs thousands of parallel regions a few microseconds to a few
/// milliseconds apart; libdispatch parks its workers between them and wakes them with a futex each time (tens of
/// microseconds, and a context switch per region), and often runs a short region's second half on the caller
/// because no worker woke in time. Here the workers spin for `spin` after each region, so a region that follows
/// soon starts on them at once, and sleep on a condition variable after that. Every spin iteration is a PAUSE: where
/// the two threads are SMT siblings of one core (cloud vCPUs often are), a plain load loop takes the pipeline from
/// the thread doing the serial work.
///
/// One 64-bit ticket announces a region and hands out its iterations: region number (high 32 bits), iteration count
/// (16), next unclaimed iteration (low 16). A claim is a compare-and-swap on it, so a worker that is late for one
/// region can never take an iteration of the next, and the body pointer it reads after a successful claim is that
/// region's: the caller neither returns nor starts another region until every claimed iteration has finished.
final class SpinPool: @unchecked Sendable {
    static let shared = SpinPool()

    /// How long an idle worker spins before it sleeps (`ACMIX_POOL_SPIN_US`, microseconds; default 200).
    let spin = UInt64(ProcessInfo.processInfo.environment["ACMIX_POOL_SPIN_US"].flatMap { Int($0) }.map { max(0, $0) } ?? 200) * 1000

    private let ticket = Atomic<UInt64>(0)
    private let finished = Atomic<Int>(0)
    /// Held by the thread whose region the workers serve.
    private let owner = Atomic<Bool>(false)
    private let sleepers = Atomic<Int>(0)
    private let wake = NSCondition()
    /// The region's body: a pointer to the caller's closure, written before the ticket that announces the region.
    nonisolated(unsafe) private var body: UnsafePointer<(Int) -> Void>?
    /// The caller's denormal mode, which the threads serving its region take on (written with `body`).
    nonisolated(unsafe) private var flushDenormals = false
    nonisolated(unsafe) private var started = 0
    private let startLock = NSLock()

    private static let workerKey: pthread_key_t = {
        var key = pthread_key_t()
        pthread_key_create(&key, nil)
        return key
    }()

    func run(_ n: Int, workers: Int, _ body: (Int) -> Void) {
        if n >= 1 << 16 || pthread_getspecific(Self.workerKey) != nil
            || !owner.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged {
            for i in 0..<n { body(i) }
            return
        }
        defer { owner.store(false, ordering: .releasing) }
        startWorkers(workers)
        withoutActuallyEscaping(body) { body in
            withUnsafePointer(to: body) { pointer in
                self.body = pointer
                flushDenormals = Denormals.flushedHere
                finished.store(0, ordering: .relaxed)
                let region = (ticket.load(ordering: .relaxed) >> 32) &+ 1
                ticket.store(region << 32 | UInt64(n) << 16, ordering: .sequentiallyConsistent)
                if sleepers.load(ordering: .sequentiallyConsistent) > 0 { wake.lock(); wake.broadcast(); wake.unlock() }
                serve(region)
                var k = 0
                while finished.load(ordering: .acquiring) < n {
                    k &+= 1
                    acmix_spin_pause()
                    if k & 255 == 0 { sched_yield() }   // a worker that holds an iteration lost its core
                }
                self.body = nil
            }
        }
    }

    /// Claims and runs iterations of `region` until none is left.
    private func serve(_ region: UInt64) {
        while true {
            let t = ticket.load(ordering: .acquiring)
            let n = Int(t >> 16 & 0xffff), i = Int(t & 0xffff)
            guard t >> 32 == region, i < n else { return }
            guard ticket.compareExchange(expected: t, desired: t &+ 1, ordering: .acquiringAndReleasing).exchanged else { continue }
            let body = self.body!
            Denormals.follow(flushDenormals)
            serially { body.pointee(i) }
            finished.add(1, ordering: .releasing)
        }
    }

    private func startWorkers(_ wanted: Int) {
        guard started < wanted else { return }
        startLock.lock()
        defer { startLock.unlock() }
        while started < wanted {
            let thread = Thread { [self] in
                pthread_setspecific(Self.workerKey, UnsafeRawPointer(bitPattern: 1))
                work()
            }
            thread.name = "engine worker \(started + 1)"
            thread.start()
            started += 1
        }
    }

    private func work() {
        var seen = ticket.load(ordering: .acquiring) >> 32
        while true {
            var region = ticket.load(ordering: .acquiring) >> 32
            if region == seen {
                // Spin on the region number, then sleep until it changes.
                let until = DispatchTime.now().uptimeNanoseconds &+ spin
                var k = 0
                while region == seen {
                    k &+= 1
                    acmix_spin_pause()
                    if k & 1023 == 0 && DispatchTime.now().uptimeNanoseconds > until { break }
                    region = ticket.load(ordering: .acquiring) >> 32
                }
                if region == seen {
                    wake.lock()
                    sleepers.add(1, ordering: .sequentiallyConsistent)
                    while ticket.load(ordering: .sequentiallyConsistent) >> 32 == seen { wake.wait() }
                    sleepers.subtract(1, ordering: .relaxed)
                    wake.unlock()
                    region = ticket.load(ordering: .acquiring) >> 32
                }
            }
            seen = region
            serve(region)
        }
    }
}

/// Flushing denormal floats to zero (FTZ and DAZ). Training turns it on: late in a run gradients and activations
/// underflow into denormals, and x86 cores compute on them slowly (a late seg-train step took 0.140 s against 0.108 s
/// early, same shapes). The mode is the calling thread's; the pool's threads take on the caller's mode for every
/// slice of its regions, so a step's arithmetic never depends on which thread runs which slice. Values below 1.2e-38
/// become 0.
public enum Denormals {
    /// Runs `body` with denormals flushed on this thread (and on the pool's threads serving its regions).
    public static func flushed<T>(_ body: () throws -> T) rethrows -> T {
        let before = flushedHere
        acmix_set_flush_denormals(1)
        defer { acmix_set_flush_denormals(before ? 1 : 0) }
        return try body()
    }

    /// Whether the calling thread flushes denormals now.
    public static var flushedHere: Bool { acmix_flushes_denormals() != 0 }

    /// Puts the calling thread in mode `flush` (a few nanoseconds when it already is).
    @inline(__always)
    static func follow(_ flush: Bool) {
        if flushedHere != flush { acmix_set_flush_denormals(flush ? 1 : 0) }
    }
}
