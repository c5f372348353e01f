import Foundation

/// Fused LayerNorm, GroupNorm and BatchNorm kernels (statistics in Double, biased variance as PyTorch).

/// SyncBN's link to the other processes of a data-parallel job. The models never see MPI: the Distributed layer
/// installs `reducer` while a multi-process run trains, and a `BatchNorm2d` marked `sync` then normalises with the
/// statistics of the combined batch (PyTorch's SyncBatchNorm). Nil in one process, where SyncBN is plain BN.
public enum BatchNormSync {
    /// Replaces `values` with their elementwise sum over every process of the job. Every process calls it the same
    /// number of times in the same order (once per synced BN forward, once per backward); it does not return on a
    /// failed or timed-out collective (the job is stopped with a message).
    nonisolated(unsafe) public static var reducer: ((inout [Double]) -> Void)?
}

/// LayerNorm over the last dim: x [..., D], weight/bias [D].
public func layerNorm(_ x: Tensor, weight: Tensor?, bias: Tensor?, eps: Float = 1e-5) -> Tensor {
    let d = x.shape.last!, rows = x.count / d
    FlopCounter.add("layer_norm", (weight == nil ? 4 : 5) * x.count, weight: weight)
    let out = Tensor(uninitialized: x.shape)
    // Per-row mean and 1/std for the backward, only when there will be one.
    let keep = Tensor.needsGrad(x, weight ?? x, bias ?? x)
    var stats = [Float](repeating: 0, count: keep ? 2 * rows : 0)
    let xd = x.data, y = out.data, w = weight?.data, b = bias?.data
    stats.withUnsafeMutableBufferPointer { st in
        let st = keep ? st.baseAddress : nil     // an empty array's base address is the shared empty storage
        parallelChunks(rows, cost: d * 2) { r0, r1 in
            for r in r0..<r1 {
                let row = xd + r * d, yr = y + r * d
                // Two passes in float with SIMD partial sums over a row that stays in L1: exact enough for rows of a
                // few thousand, and vectorised.
                let mean = Engine.sum(row, d) / Float(d)
                let rstd = 1 / (sumSquaredDeviation(row, mean, d) / Float(d) + eps).squareRoot()
                if let st { st[2 * r] = mean; st[2 * r + 1] = rstd }
                if let w, let b {
                    normalizeRow(row, yr, d, mean: mean, rstd: rstd, w, b)
                } else {
                    for i in 0..<d { yr[i] = (row[i] - mean) * rstd * (w?[i] ?? 1) + (b?[i] ?? 0) }
                }
            }
        }
    }
    let inputs = [x] + (weight.map { [$0] } ?? []) + (bias.map { [$0] } ?? [])
    return out.record("layer_norm", inputs) { g in
        let gx = Tensor(uninitialized: x.shape)
        let gd = g.data, gxd = gx.data
        let needW = weight?.requiresGrad == true || bias?.requiresGrad == true
        // Per-thread partial sums for weight and bias, combined after.
        let chunks = max(1, min(Threads.count, rows))
        var partial = [Float](repeating: 0, count: chunks * 2 * d)
        partial.withUnsafeMutableBufferPointer { pp in
            let pp = pp.baseAddress!
            Threads.run(chunks) { c in
                let pw = pp + c * 2 * d, pb = pw + d
                for r in (rows * c / chunks)..<(rows * (c + 1) / chunks) {
                    let row = xd + r * d, gr = gd + r * d, gxr = gxd + r * d
                    let mean = stats[2 * r], rstd = stats[2 * r + 1]
                    var sg: Float = 0, sgx: Float = 0
                    for i in 0..<d {
                        let xh = (row[i] - mean) * rstd
                        let gh = gr[i] * (w?[i] ?? 1)
                        sg += gh; sgx += gh * xh
                        if needW { pw[i] += gr[i] * xh; pb[i] += gr[i] }
                    }
                    let invD = 1 / Float(d)
                    for i in 0..<d {
                        let xh = (row[i] - mean) * rstd
                        let gh = gr[i] * (w?[i] ?? 1)
                        gxr[i] = rstd * (gh - invD * sg - xh * invD * sgx)
                    }
                }
            }
        }
        var gw: Tensor? = nil, gb: Tensor? = nil
        if needW {
            let tw = Tensor(zeros: [d]), tb = Tensor(zeros: [d])
            for c in 0..<chunks { for i in 0..<d { tw.data[i] += partial[c * 2 * d + i]; tb.data[i] += partial[c * 2 * d + d + i] } }
            gw = weight?.requiresGrad == true ? tw : nil
            gb = bias?.requiresGrad == true ? tb : nil
        }
        return [x.requiresGrad ? gx : nil] + (weight != nil ? [gw] : []) + (bias != nil ? [gb] : [])
    }
}

/// y = (x − mean)·rstd·w + b over a row, eight lanes at a time.
@inline(__always)
func normalizeRow(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ d: Int, mean: Float, rstd: Float,
                  _ w: UnsafePointer<Float>, _ b: UnsafePointer<Float>) {
    let m = SIMD8<Float>(repeating: mean), s = SIMD8<Float>(repeating: rstd)
    var i = 0
    while i + 8 <= d { store8(((load8(x + i) - m) * s) * load8(w + i) + load8(b + i), y + i); i += 8 }
    while i < d { y[i] = (x[i] - mean) * rstd * w[i] + b[i]; i += 1 }
}

/// Per-(sample, channel-slice) normalisation with a per-channel affine: the common core of GroupNorm and
/// training-mode BatchNorm. `groupsOf(n, c)` picks which statistics group element (n, c) belongs to.
/// x is viewed as [N, C, S]; statistics are taken over all (n, c, s) of a group. With `reduce` (SyncBN), the
/// groups' Σx, Σx², counts and, backward, Σg and Σg·x̂ are summed over the processes of the job, so the result is
/// that of one process on the combined batch; the returned count is then the combined one (of group 0).
/// `residual` (x's shape) is added and a ReLU applied in the same pass, bit for bit as `+` and `relu()` after.
func normalize(_ x: Tensor, weight: Tensor?, bias: Tensor?, eps: Float, numGroups: Int, group: @escaping (Int, Int) -> Int,
               name: String, reduce: ((inout [Double]) -> Void)? = nil, residual: Tensor? = nil,
               relu: Bool = false) -> (Tensor, [Float], [Float], Int) {
    let n = x.shape[0], c = x.shape[1], s = x.count / (n * c)
    precondition(residual == nil || residual!.shape == x.shape, "\(name): residual \(residual!.shape) for \(x.shape)")
    var sum = [Double](repeating: 0, count: numGroups), sq = [Double](repeating: 0, count: numGroups)
    var cnt = [Int](repeating: 0, count: numGroups)
    let xd = x.data
    // Channel-plane sums in parallel, then reduced per group.
    var planeSum = [Double](repeating: 0, count: n * c), planeSq = [Double](repeating: 0, count: n * c)
    planeSum.withUnsafeMutableBufferPointer { ps in
        planeSq.withUnsafeMutableBufferPointer { pq in
            let ps = ps.baseAddress!, pq = pq.baseAddress!
            parallelFor(n * c, cost: s) { p in
                var a = 0.0, b = 0.0
                let row = xd + p * s
                for i in 0..<s { let v = Double(row[i]); a += v; b += v * v }
                ps[p] = a; pq[p] = b
            }
        }
    }
    for b in 0..<n { for ch in 0..<c { let gi = group(b, ch); sum[gi] += planeSum[b * c + ch]; sq[gi] += planeSq[b * c + ch]; cnt[gi] += s } }
    if let reduce {
        var all = sum + sq + cnt.map(Double.init)
        reduce(&all)
        for gi in 0..<numGroups { sum[gi] = all[gi]; sq[gi] = all[numGroups + gi]; cnt[gi] = Int(all[2 * numGroups + gi]) }
    }
    var mean = [Float](repeating: 0, count: numGroups), rstd = [Float](repeating: 0, count: numGroups)
    for gi in 0..<numGroups {
        let m = sum[gi] / Double(cnt[gi])
        mean[gi] = Float(m)
        rstd[gi] = Float(1 / (max(sq[gi] / Double(cnt[gi]) - m * m, 0) + Double(eps)).squareRoot())
    }
    let out = Tensor(uninitialized: x.shape)
    let y = out.data, w = weight?.data, bb = bias?.data, rd = residual?.data
    parallelFor(n * c, cost: s) { p in
        let ch = p % c, gi = group(p / c, ch)
        let scale = rstd[gi] * (w?[ch] ?? 1), shift = (bb?[ch] ?? 0) - mean[gi] * scale
        let row = xd + p * s, yr = y + p * s
        for i in 0..<s { yr[i] = row[i] * scale + shift }
        residualReLU(yr, rd.map { $0 + p * s }, s, relu: relu)
    }
    let ys = relu ? out.detached() : nil   // the ReLU's mask (not `out` itself: out → node → closure → out is a cycle)
    let inputs = [x] + (weight.map { [$0] } ?? []) + (bias.map { [$0] } ?? []) + (residual.map { [$0] } ?? [])
    out.record(name, inputs) { gOut in
        // g: the gradient at the affine's output (after the ReLU's mask); the residual receives it as it is.
        let g = ys.map { reluMasked(gOut, by: $0) } ?? gOut
        let gd = g.data
        // Per plane: Σg and Σg·x̂, then per group the two means of the affine-scaled versions.
        var pg = [Double](repeating: 0, count: n * c), pgx = [Double](repeating: 0, count: n * c)
        pg.withUnsafeMutableBufferPointer { a in
            pgx.withUnsafeMutableBufferPointer { b in
                let a = a.baseAddress!, b = b.baseAddress!
                parallelFor(n * c, cost: s) { p in
                    let gi = group(p / c, p % c)
                    var s1 = 0.0, s2 = 0.0
                    let row = xd + p * s, gr = gd + p * s
                    for i in 0..<s { s1 += Double(gr[i]); s2 += Double(gr[i] * (row[i] - mean[gi]) * rstd[gi]) }
                    a[p] = s1; b[p] = s2
                }
            }
        }
        var gSum = [Double](repeating: 0, count: numGroups), gxSum = [Double](repeating: 0, count: numGroups)
        for p in 0..<(n * c) {
            let ch = p % c, gi = group(p / c, ch), wv = Double(w?[ch] ?? 1)
            gSum[gi] += pg[p] * wv; gxSum[gi] += pgx[p] * wv
        }
        if let reduce {
            var all = gSum + gxSum
            reduce(&all)
            gSum = Array(all[0..<numGroups]); gxSum = Array(all[numGroups...])
        }
        var gx: Tensor? = nil
        if x.requiresGrad {
            let t = Tensor(uninitialized: x.shape)
            let td = t.data
            parallelFor(n * c, cost: s) { p in
                let ch = p % c, gi = group(p / c, ch)
                let wv = w?[ch] ?? 1, r = rstd[gi], m = mean[gi]
                let a = Float(gSum[gi] / Double(cnt[gi])), b = Float(gxSum[gi] / Double(cnt[gi]))
                let row = xd + p * s, gr = gd + p * s, tr = td + p * s
                for i in 0..<s { tr[i] = r * (gr[i] * wv - a - (row[i] - m) * r * b) }
            }
            gx = t
        }
        var gw: Tensor? = nil, gb: Tensor? = nil
        if let weight, weight.requiresGrad {
            let t = Tensor(zeros: [c])
            for p in 0..<(n * c) { t.data[p % c] += Float(pgx[p]) }
            gw = t
        }
        if let bias, bias.requiresGrad {
            let t = Tensor(zeros: [c])
            for p in 0..<(n * c) { t.data[p % c] += Float(pg[p]) }
            gb = t
        }
        let gr: Tensor? = residual?.requiresGrad == true ? g : nil
        return [gx] + (weight != nil ? [gw] : []) + (bias != nil ? [gb] : []) + (residual != nil ? [gr] : [])
    }
    return (out, mean, rstd, cnt[0])
}

/// The fused norms' epilogue over n values: y + residual, then the ReLU, each rounded as the separate ops round.
@inline(__always)
func residualReLU(_ y: UnsafeMutablePointer<Float>, _ residual: UnsafePointer<Float>?, _ n: Int, relu: Bool) {
    if let r = residual { for i in 0..<n { y[i] = y[i] + r[i] } }
    if relu { for i in 0..<n { y[i] = y[i] > 0 ? y[i] : 0 } }
}

/// g where `y` > 0, else 0 (the ReLU's backward on its output `y`).
func reluMasked(_ g: Tensor, by y: Tensor) -> Tensor { zipMap(g, y, ReLUGradFn()) }

/// GroupNorm: x [N, C, ...], statistics over each group of C/groups channels of each sample.
public func groupNorm(_ x: Tensor, groups: Int, weight: Tensor?, bias: Tensor?, eps: Float = 1e-5) -> Tensor {
    let c = x.shape[1]
    precondition(c % groups == 0, "group_norm: \(c) channels in \(groups) groups")
    let per = c / groups
    FlopCounter.add("group_norm", (weight == nil ? 4 : 5) * x.count, weight: weight)
    return normalize(x, weight: weight, bias: bias, eps: eps, numGroups: x.shape[0] * groups,
                     group: { n, ch in n * groups + ch / per }, name: "group_norm").0
}

/// BatchNorm over x [N, C, ...]. Training: batch statistics, running stats updated in place with `momentum`
/// (unbiased variance, as PyTorch). Eval: running statistics (a per-channel affine; gradients still flow).
/// `sync` (SyncBN): in training, statistics over the batches of every process when `BatchNormSync.reducer` is set.
/// `residual` is added and a ReLU applied in the same op (one pass each way; bit for bit `+ residual` then `relu()`).
public func batchNorm(_ x: Tensor, runningMean: Tensor, runningVar: Tensor, weight: Tensor?, bias: Tensor?,
                      training: Bool, momentum: Float = 0.1, eps: Float = 1e-5, sync: Bool = false,
                      residual: Tensor? = nil, relu: Bool = false) -> Tensor {
    let c = x.shape[1]
    if training {
        FlopCounter.add("batch_norm", (weight == nil ? 1 : 2) * x.count, weight: weight)
        let (out, mean, rstd, count) = normalize(x, weight: weight, bias: bias, eps: eps, numGroups: c,
                                                 group: { _, ch in ch }, name: residual == nil && !relu ? "batch_norm" : "batch_norm_act",
                                                 reduce: sync ? BatchNormSync.reducer : nil, residual: residual, relu: relu)
        let m = Float(count)
        for ch in 0..<c {
            let v = 1 / (rstd[ch] * rstd[ch]) - eps
            runningMean.data[ch] = (1 - momentum) * runningMean.data[ch] + momentum * mean[ch]
            runningVar.data[ch] = (1 - momentum) * runningVar.data[ch] + momentum * v * m / max(m - 1, 1)
        }
        return out
    }
    return batchNormEval(x, runningMean: runningMean, runningVar: runningVar, weight: weight, bias: bias, eps: eps,
                         residual: residual, relu: relu)
}

/// BatchNorm with running statistics (eval mode, or frozen as mmdetection's norm_eval), optionally followed by a
/// residual add and a ReLU, in one pass each way: act(x·scale + shift + residual) with scale = w/sqrt(rv+eps),
/// shift = b − rm·scale. The same arithmetic, in the same order, as batchNorm then `+ residual` then `relu()`, so
/// results and gradients are bit for bit those of the three ops; training with frozen statistics saves two passes
/// over every activation forward and two backward.
public func batchNormEval(_ x: Tensor, runningMean: Tensor, runningVar: Tensor, weight: Tensor?, bias: Tensor?,
                          eps: Float = 1e-5, residual: Tensor? = nil, relu: Bool = false) -> Tensor {
    let c = x.shape[1]
    precondition(residual == nil || residual!.shape == x.shape, "batchNormEval: residual \(residual!.shape) for \(x.shape)")
    FlopCounter.add("batch_norm", (weight == nil ? 1 : 2) * x.count, weight: weight)
    let scale = Tensor(uninitialized: [c]), shift = Tensor(uninitialized: [c])
    for ch in 0..<c {
        scale.data[ch] = (weight?.data[ch] ?? 1) / (runningVar.data[ch] + eps).squareRoot()
        shift.data[ch] = (bias?.data[ch] ?? 0) - runningMean.data[ch] * scale.data[ch]
    }
    let s = x.count / (x.shape[0] * c)
    let out = Tensor(uninitialized: x.shape)
    let xd = x.data, y = out.data, rd = residual?.data
    parallelFor(x.shape[0] * c, cost: s) { p in
        let sc = scale.data[p % c], sh = shift.data[p % c]
        let row = xd + p * s, yr = y + p * s
        for i in 0..<s { yr[i] = row[i] * sc + sh }
        residualReLU(yr, rd.map { $0 + p * s }, s, relu: relu)
    }
    let ys = relu ? out.detached() : nil   // the ReLU's mask (not `out` itself: out → node → closure → out is a cycle)
    let inputs = [x] + (weight.map { [$0] } ?? []) + (bias.map { [$0] } ?? []) + (residual.map { [$0] } ?? [])
    return out.record(residual == nil && !relu ? "batch_norm_eval" : "batch_norm_eval_act", inputs) { gOut in
        // g: the gradient at the affine's output (after the ReLU's mask); the residual receives it as it is.
        let g = ys.map { reluMasked(gOut, by: $0) } ?? gOut
        var gx: Tensor? = nil
        if x.requiresGrad {
            let t = Tensor(uninitialized: x.shape), gd = g.data, d = t.data
            parallelFor(x.shape[0] * c, cost: s) { p in let sc = scale.data[p % c]; for i in (p * s)..<((p + 1) * s) { d[i] = gd[i] * sc } }
            gx = t
        }
        var gw: Tensor? = nil, gb: Tensor? = nil
        if weight?.requiresGrad == true || bias?.requiresGrad == true {
            let gsum = g.sum(axes: [0] + Array(2..<x.rank))
            if let bias, bias.requiresGrad { gb = gsum }
            if let weight, weight.requiresGrad {
                let gxs = (g * x.detached()).sum(axes: [0] + Array(2..<x.rank))
                // Σ g·x̂ = (Σ g·x − rm·Σ g)/sqrt(rv+eps)
                let t = Tensor(uninitialized: [c])
                for ch in 0..<c {
                    t.data[ch] = (gxs.data[ch] - runningMean.data[ch] * gsum.data[ch]) / (runningVar.data[ch] + eps).squareRoot()
                }
                gw = t
            }
        }
        let gr: Tensor? = residual?.requiresGrad == true ? g : nil
        return [gx] + (weight != nil ? [gw] : []) + (bias != nil ? [gb] : []) + (residual != nil ? [gr] : [])
    }
}
