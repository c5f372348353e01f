import Dispatch
import Foundation

/// Swin's window attention as one fused kernel on channels-last maps (B, H, W, C). Composing it from
/// reshape/permute/matmul costs one full copy of the map per step and one sgemm call per (window, head) through
/// the generic batched matmul; here each window's tokens are gathered straight from the spatial map, and the
/// result is written straight back to it.

/// Relative position index of a ws×ws window (Swin): entry [a·N + b] indexes the bias table row for query
/// token a and key token b, tokens numbered row-major inside the window.
public func swinRelativePositionIndex(window ws: Int) -> [Int32] {
    let n = ws * ws
    var index = [Int32](repeating: 0, count: n * n)
    for a in 0..<n {
        for b in 0..<n {
            let dy = a / ws - b / ws + ws - 1, dx = a % ws - b % ws + ws - 1
            index[a * n + b] = Int32(dy * (2 * ws - 1) + dx)
        }
    }
    return index
}

/// The shifted-window attention mask for an Hp×Wp map (multiples of ws) rolled by −shift: (nW, N, N) with
/// −100 between tokens that came from different regions of the unrolled map, 0 elsewhere. Windows are
/// numbered row-major.
public func swinShiftedWindowMask(height hp: Int, width wp: Int, window ws: Int, shift: Int) -> Tensor {
    precondition(hp % ws == 0 && wp % ws == 0 && shift > 0 && shift < ws, "mask for \(hp)x\(wp), window \(ws), shift \(shift)")
    // Region label of each row / column band: [0, Hp−ws), [Hp−ws, Hp−shift), [Hp−shift, Hp).
    func band(_ i: Int, _ n: Int) -> Int { i < n - ws ? 0 : (i < n - shift ? 1 : 2) }
    let nWx = wp / ws, nW = (hp / ws) * nWx, n = ws * ws
    let mask = Tensor(zeros: [nW, n, n])
    let md = mask.data
    var label = [Int](repeating: 0, count: n)
    for w in 0..<nW {
        let wy = w / nWx, wx = w % nWx
        for t in 0..<n { label[t] = 3 * band(wy * ws + t / ws, hp) + band(wx * ws + t % ws, wp) }
        for a in 0..<n { for b in 0..<n where label[a] != label[b] { md[(w * n + a) * n + b] = -100 } }
    }
    return mask
}

/// Multi-head self-attention inside non-overlapping ws×ws windows with Swin's relative position bias.
///
/// - qkv: (B, Hp, Wp, 3C), channels [q | k | v], head h at channels h·hd..<(h+1)·hd of each; Hp, Wp multiples of ws.
/// - biasTable: ((2ws−1)², heads); relativeIndex: N·N entries from `swinRelativePositionIndex`.
/// - mask: (nW, N, N) added to the logits of window w of every image (no gradient), or nil.
/// - Returns (B, Hp, Wp, C): softmax(q·scale·kᵀ + bias + mask)·v of each window and head, written back to the
///   tokens' places with heads concatenated along C (the input of the output projection).
public func windowAttention(_ qkv: Tensor, heads: Int, window ws: Int, scale: Float,
                            biasTable: Tensor, relativeIndex: [Int32], mask: Tensor?) -> Tensor {
    precondition(qkv.rank == 4 && qkv.shape[3] % (3 * heads) == 0, "windowAttention: qkv \(qkv.shape), \(heads) heads")
    let (b, hp, wp, c3) = (qkv.shape[0], qkv.shape[1], qkv.shape[2], qkv.shape[3])
    precondition(hp % ws == 0 && wp % ws == 0, "windowAttention: map \(hp)x\(wp) is not a multiple of window \(ws)")
    let c = c3 / 3, hd = c / heads, n = ws * ws
    let nWx = wp / ws, nW = (hp / ws) * nWx
    precondition(biasTable.shape == [(2 * ws - 1) * (2 * ws - 1), heads] && relativeIndex.count == n * n,
                 "windowAttention: bias table \(biasTable.shape) for window \(ws), \(heads) heads")
    if let mask { precondition(mask.shape == [nW, n, n], "windowAttention: mask \(mask.shape), expected [\(nW), \(n), \(n)]") }

    // Dense bias [heads, N, N] gathered once per call.
    let bias = Tensor(uninitialized: [heads, n, n])
    for h in 0..<heads { for i in 0..<(n * n) { bias.data[h * n * n + i] = biasTable.data[Int(relativeIndex[i]) * heads + h] } }

    FlopCounter.add("matmul", 2 * b * nW * heads * n * n * hd)   // q·kᵀ and attn·v of every window and head
    let keep = Tensor.needsGrad(qkv, biasTable)
    let probs: Tensor? = keep ? Tensor(uninitialized: [b * nW, heads, n, n]) : nil
    let out = Tensor(uninitialized: [b, hp, wp, c])
    let geo = WindowGeometry(hp: hp, wp: wp, ws: ws, nWx: nWx, nW: nW, c: c, hd: hd, n: n)
    let x = qkv.data, y = out.data, bd = bias.data, md = mask?.data, pd = probs?.data
    let tasks = b * nW * heads
    // Windows up to ~12×12 give per-task products below `sgemm`'s split size, so tasks run in parallel on our
    // threads; larger windows run one task at a time and let `sgemm` split each product over the threads.
    let taskThreads = n * n * hd <= 200_000 ? Threads.count : 1
    runChunks(tasks, chunks: taskThreads, scratch: 4 * n * hd + n * n) { _, range, buf in
        let q = buf, k = q + n * hd, v = k + n * hd, o = v + n * hd, s = o + n * hd
        for t in range {
            let bw = t / heads, h = t % heads, w = bw % nW
            let base = geo.windowBase(bw / nW, w)
            geo.gather(x, base, stride: c3, channel: h * hd, into: q, scale: scale)
            // Kᵀ (hd × N) so that both products are plain NN sgemms, which OpenBLAS runs through its
            // small-matrix kernels without packing.
            geo.gatherTransposed(x, base, stride: c3, channel: c + h * hd, into: k)
            geo.gather(x, base, stride: c3, channel: 2 * c + h * hd, into: v)
            sgemm(m: n, n: n, k: hd, a: q, lda: hd, b: k, ldb: n, c: s, ldc: n)
            softmaxRows(s, rows: n, cols: n, bias: bd + h * n * n, mask: md.map { $0 + w * n * n })
            if let pd { (pd + t * n * n).update(from: s, count: n * n) }
            sgemm(m: n, n: hd, k: n, a: s, lda: n, b: v, ldb: hd, c: o, ldc: hd)
            geo.scatter(o, into: y, base, stride: c, channel: h * hd)
        }
    }

    return out.record("window_attention", [qkv, biasTable]) { g in
        let probs = probs!
        let gq = Tensor(uninitialized: qkv.shape)
        let gd = g.data, gx = gq.data, pd = probs.data
        let needTable = biasTable.requiresGrad
        let chunks = max(1, min(taskThreads, tasks))
        // Per-chunk partial sums of the logits' gradient per (head, a, b), reduced into the table after.
        let partial = Tensor(zeros: [chunks, heads, n, n])
        let pp = partial.data
        runChunks(tasks, chunks: chunks, scratch: 6 * n * hd + n * n) { ci, range, buf in
            let q = buf, k = q + n * hd, v = k + n * hd, go = v + n * hd, tmp = go + n * hd, tmp2 = tmp + n * hd
            let ds = tmp2 + n * hd
            let acc = pp + ci * heads * n * n
            for t in range {
                let bw = t / heads, h = t % heads, w = bw % nW
                let base = geo.windowBase(bw / nW, w)
                geo.gather(x, base, stride: c3, channel: h * hd, into: q, scale: scale)
                geo.gather(x, base, stride: c3, channel: c + h * hd, into: k)
                geo.gather(x, base, stride: c3, channel: 2 * c + h * hd, into: v)
                geo.gather(gd, base, stride: c, channel: h * hd, into: go)
                let p = pd + t * n * n
                // dV = Pᵀ·dO
                sgemm(transA: true, m: n, n: hd, k: n, a: p, lda: n, b: go, ldb: hd, c: tmp, ldc: hd)
                geo.scatter(tmp, into: gx, base, stride: c3, channel: 2 * c + h * hd)
                // dP = dO·Vᵀ, dS = P ⊙ (dP − rowsum(dP ⊙ P))
                sgemm(transB: true, m: n, n: n, k: hd, a: go, lda: hd, b: v, ldb: hd, c: ds, ldc: n)
                for i in 0..<n {
                    let pr = p + i * n, dr = ds + i * n
                    var dot: Float = 0
                    for j in 0..<n { dot += pr[j] * dr[j] }
                    for j in 0..<n { dr[j] = pr[j] * (dr[j] - dot) }
                }
                if needTable { let a = acc + h * n * n; for i in 0..<(n * n) { a[i] += ds[i] } }
                // dQ = dS·K·scale (q was used scaled), dK = dSᵀ·(Q·scale)
                sgemm(m: n, n: hd, k: n, alpha: scale, a: ds, lda: n, b: k, ldb: hd, c: tmp, ldc: hd)
                geo.scatter(tmp, into: gx, base, stride: c3, channel: h * hd)
                sgemm(transA: true, m: n, n: hd, k: n, a: ds, lda: n, b: q, ldb: hd, c: tmp2, ldc: hd)
                geo.scatter(tmp2, into: gx, base, stride: c3, channel: c + h * hd)
            }
        }
        var gt: Tensor? = nil
        if needTable {
            let t = Tensor(zeros: biasTable.shape)
            for ch in 0..<chunks {
                for h in 0..<heads {
                    let src = pp + (ch * heads + h) * n * n
                    for i in 0..<(n * n) { t.data[Int(relativeIndex[i]) * heads + h] += src[i] }
                }
            }
            gt = t
        }
        return [qkv.requiresGrad ? gq : nil, gt]
    }
}

/// Where a window's tokens live in a channels-last map.
struct WindowGeometry {
    let hp, wp, ws, nWx, nW, c, hd, n: Int

    /// Token index (b·Hp + row)·Wp + col of window w's first token.
    @inline(__always)
    func windowBase(_ b: Int, _ w: Int) -> Int { (b * hp + (w / nWx) * ws) * wp + (w % nWx) * ws }

    /// Copies hd channels starting at `channel` of the window's N tokens into rows of `dst` (N × hd), times `scale`.
    @inline(__always)
    func gather(_ src: UnsafeMutablePointer<Float>, _ base: Int, stride: Int, channel: Int,
                into dst: UnsafeMutablePointer<Float>, scale: Float = 1) {
        for iy in 0..<ws {
            for ix in 0..<ws {
                copyRow(src + (base + iy * wp + ix) * stride + channel, dst + (iy * ws + ix) * hd, hd, scale: scale)
            }
        }
    }

    /// Like `gather`, transposed: dst is hd × N.
    @inline(__always)
    func gatherTransposed(_ src: UnsafeMutablePointer<Float>, _ base: Int, stride: Int, channel: Int,
                          into dst: UnsafeMutablePointer<Float>) {
        for iy in 0..<ws {
            for ix in 0..<ws {
                let s = src + (base + iy * wp + ix) * stride + channel, t = iy * ws + ix
                for i in 0..<hd { dst[i * n + t] = s[i] }
            }
        }
    }

    /// Writes rows of `src` (N × hd) to the window's tokens at `channel`.
    @inline(__always)
    func scatter(_ src: UnsafeMutablePointer<Float>, into dst: UnsafeMutablePointer<Float>, _ base: Int, stride: Int,
                 channel: Int) {
        for iy in 0..<ws {
            for ix in 0..<ws {
                copyRow(src + (iy * ws + ix) * hd, dst + (base + iy * wp + ix) * stride + channel, hd, scale: 1)
            }
        }
    }
}

/// d[i] = s[i]·scale for n floats, in 8-float vectors: head rows are short (32), and a memcpy call per token
/// costs more than the copy.
@inline(__always)
func copyRow(_ s: UnsafePointer<Float>, _ d: UnsafeMutablePointer<Float>, _ n: Int, scale: Float) {
    typealias V = SIMD8<Float>
    var i = 0
    let sv = V(repeating: scale)
    while i + 8 <= n {
        let v = UnsafeRawPointer(s + i).loadUnaligned(as: V.self)
        UnsafeMutableRawPointer(d + i).storeBytes(of: scale == 1 ? v : v * sv, as: V.self)
        i += 8
    }
    while i < n { d[i] = s[i] * scale; i += 1 }
}

/// In-place softmax of each row of a rows×cols matrix after adding `bias` (and `mask`), both rows×cols.
/// The bias is added in the pass that finds each row's max; one flat exp loop then covers the whole matrix
/// (no per-row vector tails). Max and sum use four independent partial results (float reductions do not
/// vectorise otherwise).
@inline(__always)
func softmaxRows(_ s: UnsafeMutablePointer<Float>, rows: Int, cols: Int,
                 bias: UnsafePointer<Float>, mask: UnsafePointer<Float>?) {
    let c4 = cols & ~3
    for i in 0..<rows {
        let r = s + i * cols, b = bias + i * cols
        if let mask { let mr = mask + i * cols; for j in 0..<cols { r[j] += b[j] + mr[j] } }
        else { for j in 0..<cols { r[j] += b[j] } }
        var m0 = -Float.infinity, m1 = m0, m2 = m0, m3 = m0
        var j = 0
        while j < c4 {
            m0 = r[j] > m0 ? r[j] : m0; m1 = r[j + 1] > m1 ? r[j + 1] : m1
            m2 = r[j + 2] > m2 ? r[j + 2] : m2; m3 = r[j + 3] > m3 ? r[j + 3] : m3
            j += 4
        }
        var m = max(max(m0, m1), max(m2, m3))
        while j < cols { m = max(m, r[j]); j += 1 }
        for j in 0..<cols { r[j] -= m }
    }
    _ = expInPlace(s, rows * cols)
    for i in 0..<rows {
        let r = s + i * cols
        var s0: Float = 0, s1: Float = 0, s2: Float = 0, s3: Float = 0
        var j = 0
        while j < c4 { s0 += r[j]; s1 += r[j + 1]; s2 += r[j + 2]; s3 += r[j + 3]; j += 4 }
        var sum = (s0 + s1) + (s2 + s3)
        while j < cols { sum += r[j]; j += 1 }
        let inv = 1 / sum
        for j in 0..<cols { r[j] *= inv }
    }
}

/// Splits 0..<tasks into `chunks` contiguous ranges run concurrently (body gets the chunk index), each with its own scratch buffer of
/// `scratch` floats. The bodies call sgemm on small matrices (N×N×hd, N = 49 for Swin's 7×7 windows), which
/// OpenBLAS runs on the calling thread, so the two thread pools do not oversubscribe.
func runChunks(_ tasks: Int, chunks: Int? = nil, scratch: Int,
               _ body: (Int, Range<Int>, UnsafeMutablePointer<Float>) -> Void) {
    let chunks = max(1, min(chunks ?? Threads.count, tasks))
    Threads.run(chunks) { ci in
        let start = tasks * ci / chunks, end = tasks * (ci + 1) / chunks
        if start >= end { return }
        let buf = UnsafeMutablePointer<Float>.allocate(capacity: max(scratch, 1))
        defer { buf.deallocate() }
        body(ci, start..<end, buf)
    }
}

