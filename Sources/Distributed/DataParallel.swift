import Engine
import Foundation

/// Averages the gradients of a fixed list of parameters over the ranks after each backward pass, as PyTorch DDP's
/// buckets and Horovod's tensor fusion do: the gradients are copied into one fp32 buffer a bucket (about
/// `bucketBytes`) at a time, in the parameters' order, summed with one MPI_Allreduce per bucket and scaled by 1/N.
///
/// Every rank issues the same collectives whatever its batch gave: a parameter without a gradient on this rank
/// (no positive anchors, an unused branch) contributes zeros, and a per-parameter flag in the same buffer says
/// whether any rank had one, so a parameter that no rank touched keeps no gradient, exactly as in one process on the
/// combined batch. The reduction is not overlapped with the backward pass: with one thread per core there is no
/// idle core to run it on, and it is a few percent of a step (see docs/SCALING.md).
public final class GradientAllreduce {
    public let group: ProcessGroup
    let params: [Tensor]
    /// Parameter index ranges, one per bucket, in order.
    public let buckets: [Range<Int>]
    private var buffer: [Float]
    /// Seconds spent in `average` (packing, reducing, unpacking) since creation.
    public private(set) var seconds = 0.0
    /// Calls of `average` since creation.
    public private(set) var calls = 0

    /// Bytes one rank sends into the reduction per step (gradients and flags).
    public var bytesPerStep: Int { 4 * (params.reduce(0) { $0 + $1.count } + params.count) }

    public init(group: ProcessGroup, params: [Tensor], bucketBytes: Int = 25 << 20) {
        self.group = group
        self.params = params
        var buckets: [Range<Int>] = [], start = 0, floats = 0
        for (i, p) in params.enumerated() {
            if floats > 0 && 4 * (floats + p.count) > bucketBytes {
                buckets.append(start..<i)
                start = i; floats = 0
            }
            floats += p.count + 1
        }
        if start < params.count { buckets.append(start..<params.count) }
        self.buckets = buckets
        let largest = buckets.map { r in r.reduce(0) { $0 + params[$1].count } + r.count }.max() ?? 0
        buffer = [Float](repeating: 0, count: largest)
    }

    /// Replaces every parameter's gradient with the mean over the ranks.
    public func average(iteration: Int) throws {
        let t0 = DispatchTime.now().uptimeNanoseconds
        defer {
            seconds += Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9
            calls += 1
        }
        let scale = 1 / Float(group.size)
        for (b, range) in buckets.enumerated() {
            let total = range.reduce(0) { $0 + params[$1].count }
            try buffer.withUnsafeMutableBufferPointer { buf in
                let data = buf.baseAddress!, flags = data + total
                var offset = 0
                for (k, i) in range.enumerated() {
                    let p = params[i]
                    if let g = p.grad {
                        precondition(g.count == p.count, "gradient of \(p.shape) has \(g.count) values")
                        (data + offset).update(from: g.data, count: p.count)
                        flags[k] = 1
                    } else {
                        (data + offset).update(repeating: 0, count: p.count)
                        flags[k] = 0
                    }
                    offset += p.count
                }
                try group.allreduceSum(data, count: total + range.count,
                                       "gradient allreduce (bucket \(b + 1) of \(buckets.count)) at iteration \(iteration + 1)")
                offset = 0
                for (k, i) in range.enumerated() {
                    let p = params[i]
                    defer { offset += p.count }
                    guard flags[k] > 0 else { p.grad = nil; continue }
                    let g = p.grad ?? Tensor(uninitialized: p.shape)
                    let src = data + offset, dst = g.data
                    for j in 0..<p.count { dst[j] = src[j] * scale }
                    p.grad = g
                }
            }
        }
    }
}

extension ProcessGroup {
    /// Overwrites `tensors` on every rank with rank 0's values (weights at start, optimizer state after a resume,
    /// BN buffers before an evaluation). The ranks first check that they hold the same names and shapes; if not,
    /// every rank stops with a message naming the first difference.
    public func broadcastFromMain(_ tensors: [(String, Tensor)], _ what: String, bucketBytes: Int = 25 << 20) throws {
        let layout = tensors.map { "\($0.0):\($0.1.shape)" }.joined(separator: ";")
        let main = try broadcast(layout, "\(what): comparing tensor lists")
        var differs = [main == layout ? 0.0 : 1.0]
        try allreduceSum(&differs, "\(what): comparing tensor lists")
        if differs[0] != 0 {
            markSharedFailure()
            let mine = Set(layout.split(separator: ";")), theirs = main.split(separator: ";")
            let first = theirs.first { !mine.contains($0) }.map { "rank 0 has \($0)" } ?? "the tensors differ in order or count"
            throw KitError.model("\(what): the ranks built different models (\(differs[0] == 1 ? "one rank" : "\(Int(differs[0])) ranks") "
                + "differ from rank 0; \(first)): every rank must run the same config")
        }
        // Fused: tensors packed into one buffer up to bucketBytes, broadcast, unpacked.
        var start = 0
        while start < tensors.count {
            var end = start, floats = 0
            while end < tensors.count && (floats == 0 || 4 * (floats + tensors[end].1.count) <= bucketBytes) {
                floats += tensors[end].1.count; end += 1
            }
            var buffer = [Float](repeating: 0, count: floats)
            try buffer.withUnsafeMutableBufferPointer { b in
                var offset = 0
                if isMain { for (_, t) in tensors[start..<end] { (b.baseAddress! + offset).update(from: t.data, count: t.count); offset += t.count } }
                try broadcast(b.baseAddress!, count: floats, what)
                offset = 0
                for (_, t) in tensors[start..<end] { t.data.update(from: b.baseAddress! + offset, count: t.count); offset += t.count }
            }
            start = end
        }
    }

    /// Runs `body` with SyncBN's statistics summed over the ranks (`BatchNormSync.reducer` installed), then restores
    /// the previous reducer. A failed reduction inside a forward or backward pass cannot be thrown: it stops this
    /// rank with a one-line message.
    public func withSyncBatchNorm<T>(_ body: () throws -> T) rethrows -> T {
        let saved = BatchNormSync.reducer
        BatchNormSync.reducer = { [self] values in
            do { try allreduceSum(&values, "SyncBN statistics") } catch { Self.fatal(describe(error)) }
        }
        defer { BatchNormSync.reducer = saved }
        return try body()
    }
}
