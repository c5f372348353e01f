import XCTest
import Foundation
import Synchronization
import Engine

/// The engine's fork-join pool (`Threads.run`, `SpinPool`): every iteration runs exactly once per region, across
/// back-to-back regions of different sizes, regions after the workers fell asleep, nested regions, and two threads
/// starting regions at the same time.
final class ThreadPoolTests: XCTestCase {
    private var savedThreads = 1
    override func setUp() { savedThreads = Threads.count; Threads.count = 3 }
    override func tearDown() { Threads.count = savedThreads }

    /// Runs `regions` regions of varying sizes and checks each iteration's count.
    private func exercise(regions: Int, salt: Int) {
        for r in 0..<regions {
            let n = 1 + (r * 7 + salt) % 5
            let hits = Mutex([Int](repeating: 0, count: n))
            Threads.run(n) { i in hits.withLock { $0[i] += 1 } }
            XCTAssertEqual(hits.withLock { $0 }, [Int](repeating: 1, count: n), "region \(r) of \(n) iterations")
        }
    }

    /// Every slice of a region computes in its caller's denormal mode: 1e-20 · 1e-20 underflows to 0 under
    /// `Denormals.flushed` on whichever thread runs it, and stays a denormal outside it (after it, too).
    func testPoolThreadsTakeTheCallersDenormalMode() {
        func products() -> [Float] {
            let out = Mutex([Float](repeating: -1, count: 12))
            let tiny = Float(1e-20) * Float(Double(ProcessInfo.processInfo.processIdentifier % 2) + 1)   // not a constant
            Threads.run(12) { i in
                usleep(200)   // so that every thread takes some of them
                let v = tiny * tiny
                out.withLock { $0[i] = v }
            }
            return out.withLock { $0 }
        }
        XCTAssertFalse(Denormals.flushedHere)
        XCTAssertTrue(products().allSatisfy { $0 > 0 && !$0.isNormal })
        Denormals.flushed {
            XCTAssertTrue(Denormals.flushedHere)
            XCTAssertEqual(products(), [Float](repeating: 0, count: 12))
        }
        XCTAssertFalse(Denormals.flushedHere)
        XCTAssertTrue(products().allSatisfy { $0 > 0 && !$0.isNormal })
    }

    func testEveryIterationRunsOnceBackToBack() {
        exercise(regions: 20_000, salt: 0)
    }

    func testRegionsAfterTheWorkersSlept() {
        for k in 0..<5 {
            exercise(regions: 10, salt: k)
            usleep(2_000)   // longer than the workers' spin
        }
    }

    func testNestedRegionsRunInline() {
        let total = Atomic<Int>(0)
        Threads.run(3) { _ in
            Threads.run(4) { _ in total.add(1, ordering: .relaxed) }
            parallelChunks(100_000) { a, b in total.add(b - a, ordering: .relaxed) }
        }
        XCTAssertEqual(total.load(ordering: .relaxed), 3 * (4 + 100_000))
    }

    func testTwoCallersAtOnce() {
        DispatchQueue.concurrentPerform(iterations: 2) { t in exercise(regions: 5_000, salt: t) }
    }

    /// A region's results equal a serial loop's (the pool changes who runs an iteration, never what it computes).
    func testParallelChunksMatchesSerialSum() {
        let n = 1_000_003
        let x = (0..<n).map { Float($0 % 97) * 0.5 }
        var out = [Float](repeating: 0, count: n)
        out.withUnsafeMutableBufferPointer { o in
            x.withUnsafeBufferPointer { x in
                let o = o.baseAddress!, x = x.baseAddress!
                parallelChunks(n) { a, b in for i in a..<b { o[i] = x[i] * 2 + 1 } }
            }
        }
        XCTAssertEqual(out, x.map { $0 * 2 + 1 })
    }
}
