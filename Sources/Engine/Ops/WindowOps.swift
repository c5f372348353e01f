import Dispatch
import Foundation

/// Fused kernels for Swin-style window attention and the ACmix convolution path, all on channels-last maps
/// (B, H, W, C). They exist because composing them from reshape/permute/roll/matmul costs one full copy of the
/// map per step and one sgemm call per (window, head) through the generic batched matmul; here each window's
/// tokens are gathered straight from the spatial map, and the result is written straight back to it.

// MARK: - Cyclic shift with padding

extension Tensor {
    /// (B, H, W, C) → (B, Hp, Wp, C): zero-pads at the bottom/right to Hp×Wp, then rolls rows and columns by
    /// −shift (torch.roll(x, (−s, −s), (1, 2))), in one copy. Hp ≥ H, Wp ≥ W.
    public func windowPadShift(height hp: Int, width wp: Int, shift: Int) -> Tensor {
        precondition(rank == 4 && hp >= shape[1] && wp >= shape[2], "windowPadShift: \(shape) to \(hp)x\(wp)")
        if hp == shape[1] && wp == shape[2] && shift == 0 { return self }
        let (h, w) = (shape[1], shape[2])
        let out = rollCopy(self, outH: hp, outW: wp, modH: hp, modW: wp, offset: shift)
        return out.record("window_pad_shift", [self]) { g in
            [rollCopy(g, outH: h, outW: w, modH: hp, modW: wp, offset: -shift)]
        }
    }

    /// (B, Hp, Wp, C) → (B, H, W, C): rolls rows and columns by +shift, then crops to H×W (the inverse of
    /// `windowPadShift`).
    public func windowUnshiftCrop(height h: Int, width w: Int, shift: Int) -> Tensor {
        precondition(rank == 4 && h <= shape[1] && w <= shape[2], "windowUnshiftCrop: \(shape) to \(h)x\(w)")
        let (hp, wp) = (shape[1], shape[2])
        if hp == h && wp == w && shift == 0 { return self }
        let out = rollCopy(self, outH: h, outW: w, modH: hp, modW: wp, offset: -shift)
        return out.record("window_unshift_crop", [self]) { g in
            [rollCopy(g, outH: hp, outW: wp, modH: hp, modW: wp, offset: shift)]
        }
    }
}

/// out[b, i, j] = x[b, (i + offset) mod modH, (j + offset) mod modW] where that lies inside x, else 0.
func rollCopy(_ x: Tensor, outH: Int, outW: Int, modH: Int, modW: Int, offset: Int) -> Tensor {
    let (b, h, w, c) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
    let out = Tensor(uninitialized: [b, outH, outW, c])
    let xd = x.data, yd = out.data
    parallelFor(b * outH, cost: outW * c) { r in
        let bi = r / outH, i = r % outH
        let si = ((i + offset) % modH + modH) % modH
        let dstRow = yd + r * outW * c
        if si >= h { dstRow.update(repeating: 0, count: outW * c); return }
        let srcRow = xd + (bi * h + si) * w * c
        for j in 0..<outW {
            let sj = ((j + offset) % modW + modW) % modW
            if sj < w { (dstRow + j * c).update(from: srcRow + sj * c, count: c) }
            else { (dstRow + j * c).update(repeating: 0, count: c) }
        }
    }
    return out
}

// MARK: - Window attention

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
    for i in 0..<(rows * cols) { s[i] = fastExp(s[i]) }
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
    withoutActuallyEscaping(body) { body in
        DispatchQueue.concurrentPerform(iterations: chunks) { ci in
            let start = tasks * ci / chunks, end = tasks * (ci + 1) / chunks
            if start >= end { return }
            let buf = UnsafeMutablePointer<Float>.allocate(capacity: max(scratch, 1))
            defer { buf.deallocate() }
            body(ci, start..<end, buf)
        }
    }
}

// MARK: - ACmix convolution path

/// The convolution path of ACmix's Swin attention on channels-last q/k/v (the authors' `fc` then `dep_conv`).
///
/// - qkv: (B, H, W, 3C) with C = heads·hd; viewed per pixel as 3·heads feature groups of hd channels (q heads,
///   then k heads, then v heads).
/// - fcWeight: (k², 3·heads, 1, 1), fcBias: (k²) or nil: a 1×1 conv mixing the 3·heads groups into k² maps,
///   applied to each of the hd channels alike.
/// - depWeight: (C, k², k, k): a k×k conv, zero padding k/2, groups = hd, over the hd·k² maps ordered
///   (d, j) with d major; output channel o reads the k² maps of d = o / heads.
/// - Returns (B, H, W, C).
///
/// Internally every plane is stored zero-bordered, (H+2p)×(W+2p) with p = k/2, so each tap of the k×k conv
/// is one long contiguous multiply-add at a fixed offset (no per-row bounds), which keeps small maps
/// (14×14, 7×7) as fast per element as large ones.
public func acmixConvPath(_ qkv: Tensor, heads: Int, fcWeight: Tensor, fcBias: Tensor?, depWeight: Tensor) -> Tensor {
    let (b, h, w, c3) = (qkv.shape[0], qkv.shape[1], qkv.shape[2], qkv.shape[3])
    let c = c3 / 3, hd = c / heads, g3 = 3 * heads
    let kk = fcWeight.shape[0], k = depWeight.shape[3]
    precondition(k * k == kk && k % 2 == 1 && fcWeight.count == kk * g3 && depWeight.shape == [c, kk, k, k] && c % heads == 0,
                 "acmixConvPath: qkv \(qkv.shape), fc \(fcWeight.shape), dep_conv \(depWeight.shape), \(heads) heads")
    let geo = PaddedPlanes(h: h, w: w, pad: k / 2)
    let pp = geo.size, plane = hd * pp
    // X[b]: (3C, P) zero-bordered planes of q/k/v channels = (3·heads, hd·P) rows, so the fc is one sgemm.
    let xt = Tensor(uninitialized: [b, c3, pp])
    for bi in 0..<b { geo.scatterChannelsLast(qkv.data + bi * h * w * c3, channels: c3, into: xt.data + bi * c3 * pp) }
    geo.zeroBorders(xt.data, planes: b * c3)
    // f[b] = fcW·X[b] + bias: (k², hd·P); borders reset to zero (they are the conv's zero padding).
    let f = Tensor(uninitialized: [b, kk, hd, pp])
    for bi in 0..<b {
        let fb = f.data + bi * kk * plane
        if let fcBias { for j in 0..<kk { (fb + j * plane).update(repeating: fcBias.data[j], count: plane) } }
        sgemm(m: kk, n: plane, k: g3, a: fcWeight.data, lda: g3, b: xt.data + bi * c3 * pp, ldb: plane,
              beta: fcBias == nil ? 0 : 1, c: fb, ldc: plane)
        if fcBias != nil { geo.zeroBorders(fb, planes: kk * hd) }
    }
    // Grouped k×k conv: output plane o (row stride W+2p) = Σ_j Σ_taps w · f[j, o/heads] at the tap's offset.
    let span = geo.outputSpan, ostride = geo.outputPlane
    let planes = Tensor(uninitialized: [b, c, ostride])
    let fd = f.data, wd = depWeight.data, od = planes.data
    parallelFor(b * c, cost: kk * kk * ostride) { i in
        let bi = i / c, o = i % c, d = o / heads
        var offsets = [Int](repeating: 0, count: kk)
        for t in 0..<kk { offsets[t] = geo.tapOffset(t, k) }
        offsets.withUnsafeBufferPointer { offs in
            convPlane(src: fd + (bi * kk * hd + d) * pp, srcStride: hd * pp, maps: kk, weights: wd + o * kk * kk,
                      offsets: offs.baseAddress!, taps: kk, out: od + i * ostride, span: span)
        }
        (od + i * ostride + span).update(repeating: 0, count: ostride - span)
    }
    let out = Tensor(uninitialized: [b, h, w, c])
    for bi in 0..<b { geo.gatherToChannelsLast(od + bi * c * ostride, channels: c, into: out.data + bi * h * w * c) }

    let inputs = [qkv, fcWeight, depWeight] + (fcBias.map { [$0] } ?? [])
    return out.record("acmix_conv_path", inputs) { g in
        // f and X stay alive through the closure (the raw pointers above do not retain them).
        let fd = f.data, xtd = xt.data
        // gO[b]: (C, H·(W+2p)) planes in the output layout, the padding columns zero.
        let go = Tensor(zeros: [b, c, ostride])
        for bi in 0..<b { geo.scatterChannelsLastToOutput(g.data + bi * h * w * c, channels: c, into: go.data + bi * c * ostride) }
        let gd = go.data
        var gDep: Tensor? = nil
        if depWeight.requiresGrad {
            let t = Tensor(zeros: depWeight.shape)
            let td = t.data
            parallelFor(c, cost: b * kk * kk * ostride) { o in
                let d = o / heads
                for bi in 0..<b {
                    let gp = gd + (bi * c + o) * ostride
                    for j in 0..<kk {
                        let src = fd + ((bi * kk + j) * hd + d) * pp
                        for tap in 0..<kk {
                            td[(o * kk + j) * kk + tap] += dotProduct(gp, src + geo.tapOffset(tap, k), span)
                        }
                    }
                }
            }
            gDep = t
        }
        let needF = qkv.requiresGrad || fcWeight.requiresGrad || fcBias?.requiresGrad == true
        var gX: Tensor? = nil, gFc: Tensor? = nil, gFcB: Tensor? = nil
        if needF {
            // gF[b, j, d] = Σ_{o of group d} Σ_taps w · gO[o] placed back at the tap's offset (transposed conv);
            // what lands on the borders belongs to the zero padding and is dropped.
            let gf = Tensor(zeros: [b, kk, hd, pp])
            let gfd = gf.data
            parallelFor(b * hd, cost: heads * kk * kk * ostride) { i in
                let bi = i / hd, d = i % hd
                for m in 0..<heads {
                    let o = d * heads + m
                    let gp = gd + (bi * c + o) * ostride
                    for j in 0..<kk {
                        let dst = gfd + ((bi * kk + j) * hd + d) * pp
                        let wj = wd + (o * kk + j) * kk
                        for tap in 0..<kk {
                            let a = wj[tap], dt = dst + geo.tapOffset(tap, k)
                            for q in 0..<span { dt[q] += a * gp[q] }
                        }
                    }
                }
            }
            for bi in 0..<b { geo.zeroBorders(gfd + bi * kk * plane, planes: kk * hd) }
            if let fcBias, fcBias.requiresGrad { gFcB = gf.reshape([b, kk, plane]).sum(axes: [0, 2]) }
            if fcWeight.requiresGrad {
                let t = Tensor(zeros: fcWeight.shape)
                for bi in 0..<b {
                    sgemm(transB: true, m: kk, n: g3, k: plane, a: gfd + bi * kk * plane, lda: plane,
                          b: xtd + bi * c3 * pp, ldb: plane, beta: 1, c: t.data, ldc: g3)
                }
                gFc = t
            }
            if qkv.requiresGrad {
                let gxt = Tensor(uninitialized: [b, c3, pp])
                for bi in 0..<b {
                    sgemm(transA: true, m: g3, n: plane, k: kk, a: fcWeight.data, lda: g3, b: gfd + bi * kk * plane,
                          ldb: plane, c: gxt.data + bi * c3 * pp, ldc: plane)
                }
                let t = Tensor(uninitialized: qkv.shape)
                for bi in 0..<b { geo.gatherInteriorToChannelsLast(gxt.data + bi * c3 * pp, channels: c3, into: t.data + bi * h * w * c3) }
                gX = t
            }
        }
        return [gX, gFc, gDep] + (fcBias != nil ? [gFcB] : [])
    }
}

/// out[q] = Σ_j Σ_t weights[j·taps + t] · src[j·srcStride + offsets[t] + q] for q < span: one output plane of
/// the grouped conv. 32 outputs at a time stay in registers across all maps and taps, so each tap costs
/// loads of the source only (not a load and a store of the accumulator too).
@inline(__always)
func convPlane(src: UnsafePointer<Float>, srcStride: Int, maps: Int, weights: UnsafePointer<Float>,
               offsets: UnsafePointer<Int>, taps: Int, out: UnsafeMutablePointer<Float>, span: Int) {
    typealias V = SIMD8<Float>
    @inline(__always) func load(_ p: UnsafePointer<Float>) -> V { UnsafeRawPointer(p).loadUnaligned(as: V.self) }
    var q = 0
    while q + 32 <= span {
        var a0 = V(), a1 = V(), a2 = V(), a3 = V()
        for j in 0..<maps {
            let sj = src + j * srcStride + q, wj = weights + j * taps
            for t in 0..<taps {
                let wv = V(repeating: wj[t]), s = sj + offsets[t]
                a0 += wv * load(s); a1 += wv * load(s + 8); a2 += wv * load(s + 16); a3 += wv * load(s + 24)
            }
        }
        let o = UnsafeMutableRawPointer(out + q)
        o.storeBytes(of: a0, as: V.self); (o + 32).storeBytes(of: a1, as: V.self)
        (o + 64).storeBytes(of: a2, as: V.self); (o + 96).storeBytes(of: a3, as: V.self)
        q += 32
    }
    if q < span {
        (out + q).update(repeating: 0, count: span - q)
        for j in 0..<maps {
            let sj = src + j * srcStride, wj = weights + j * taps
            for t in 0..<taps {
                let a = wj[t], s = sj + offsets[t]
                for i in q..<span { out[i] += a * s[i] }
            }
        }
    }
}

/// Σ a[i]·b[i] over n floats with 32 partial sums (a plain float reduction does not vectorise).
@inline(__always)
func dotProduct(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> Float {
    typealias V = SIMD8<Float>
    @inline(__always) func load(_ p: UnsafePointer<Float>) -> V { UnsafeRawPointer(p).loadUnaligned(as: V.self) }
    var s0 = V(), s1 = V(), s2 = V(), s3 = V()
    var i = 0
    while i + 32 <= n {
        s0 += load(a + i) * load(b + i); s1 += load(a + i + 8) * load(b + i + 8)
        s2 += load(a + i + 16) * load(b + i + 16); s3 += load(a + i + 24) * load(b + i + 24)
        i += 32
    }
    let v = (s0 + s1) + (s2 + s3)
    var total: Float = 0
    for l in 0..<8 { total += v[l] }
    while i < n { total += a[i] * b[i]; i += 1 }
    return total
}

/// Zero-bordered planes for a k×k "same" convolution over an h×w map, and the output layout that goes with
/// them: output pixel (y, x) at y·(w+2p) + x, so that tap (ky, kx) reads the bordered input at the same index
/// plus ky·(w+2p) + kx.
struct PaddedPlanes {
    let h, w, pad: Int
    var rowStride: Int { w + 2 * pad }
    /// Floats per bordered input plane.
    var size: Int { (h + 2 * pad) * rowStride }
    /// Floats per output plane (rows of stride w+2p; the last 2p columns of each row are unused).
    var outputPlane: Int { h * rowStride }
    /// Output indices a tap loop must cover: up to the last real pixel.
    var outputSpan: Int { (h - 1) * rowStride + w }

    @inline(__always)
    func tapOffset(_ t: Int, _ k: Int) -> Int { (t / k) * rowStride + t % k }

    /// dst[ch, (y+p)·(w+2p) + x+p] = src[(y·w + x)·channels + ch]; dst's borders are left as they are.
    func scatterChannelsLast(_ src: UnsafePointer<Float>, channels: Int, into dst: UnsafeMutablePointer<Float>) {
        let size = self.size, rs = rowStride, pad = self.pad, w = self.w
        parallelFor(h, cost: w * channels) { y in
            transposeBlock(src + y * w * channels, rows: w, cols: channels, srcStride: channels,
                           into: dst + (y + pad) * rs + pad, dstStride: size)
        }
    }

    /// dst[(y·w + x)·channels + ch] = src[ch, (y+p)·(w+2p) + x+p].
    func gatherInteriorToChannelsLast(_ src: UnsafePointer<Float>, channels: Int, into dst: UnsafeMutablePointer<Float>) {
        let size = self.size, rs = rowStride, pad = self.pad, w = self.w
        parallelFor(h, cost: w * channels) { y in
            transposeBlock(src + (y + pad) * rs + pad, rows: channels, cols: w, srcStride: size,
                           into: dst + y * w * channels, dstStride: channels)
        }
    }

    /// dst[ch, y·(w+2p) + x] = src[(y·w + x)·channels + ch] (output layout); the unused columns are left as they are.
    func scatterChannelsLastToOutput(_ src: UnsafePointer<Float>, channels: Int, into dst: UnsafeMutablePointer<Float>) {
        let plane = outputPlane, rs = rowStride, w = self.w
        parallelFor(h, cost: w * channels) { y in
            transposeBlock(src + y * w * channels, rows: w, cols: channels, srcStride: channels,
                           into: dst + y * rs, dstStride: plane)
        }
    }

    /// dst[(y·w + x)·channels + ch] = src[ch, y·(w+2p) + x] (from the output layout).
    func gatherToChannelsLast(_ src: UnsafePointer<Float>, channels: Int, into dst: UnsafeMutablePointer<Float>) {
        let plane = outputPlane, rs = rowStride, w = self.w
        parallelFor(h, cost: w * channels) { y in
            transposeBlock(src + y * rs, rows: channels, cols: w, srcStride: plane, into: dst + y * w * channels, dstStride: channels)
        }
    }

    /// Zeroes the border of `planes` consecutive bordered planes.
    func zeroBorders(_ p: UnsafeMutablePointer<Float>, planes: Int) {
        if pad == 0 { return }
        let size = self.size, rs = rowStride, pad = self.pad, h = self.h, w = self.w
        parallelFor(planes, cost: 2 * (h + w)) { i in
            let base = p + i * size
            base.update(repeating: 0, count: pad * rs)
            (base + (h + pad) * rs).update(repeating: 0, count: pad * rs)
            for y in pad..<(h + pad) {
                (base + y * rs).update(repeating: 0, count: pad)
                (base + y * rs + pad + w).update(repeating: 0, count: pad)
            }
        }
    }
}

/// dst[c·dstStride + r] = src[r·srcStride + c] for r < rows, c < cols. 4×4 blocks go through registers
/// (four vector loads, lane shuffles, four vector stores) instead of sixteen scalar strided moves.
@inline(__always)
func transposeBlock(_ src: UnsafePointer<Float>, rows: Int, cols: Int, srcStride: Int,
                    into dst: UnsafeMutablePointer<Float>, dstStride: Int) {
    typealias V = SIMD4<Float>
    @inline(__always) func load(_ p: UnsafePointer<Float>) -> V { UnsafeRawPointer(p).loadUnaligned(as: V.self) }
    @inline(__always) func store(_ v: V, _ p: UnsafeMutablePointer<Float>) { UnsafeMutableRawPointer(p).storeBytes(of: v, as: V.self) }
    let r4 = rows & ~3, c4 = cols & ~3
    // Column bands of 16 (one cache line of each source row), rows in bands of 64: each destination row
    // segment is written contiguously while the source lines it reads stay in L1.
    var c0 = 0
    while c0 < c4 {
        let c1 = min(c4, c0 + 16)
        var r = 0
        while r < r4 {
            var c = c0
            while c < c1 {
                let s = src + r * srcStride + c
                let a0 = load(s), a1 = load(s + srcStride), a2 = load(s + 2 * srcStride), a3 = load(s + 3 * srcStride)
                let d = dst + c * dstStride + r
                store(V(a0[0], a1[0], a2[0], a3[0]), d)
                store(V(a0[1], a1[1], a2[1], a3[1]), d + dstStride)
                store(V(a0[2], a1[2], a2[2], a3[2]), d + 2 * dstStride)
                store(V(a0[3], a1[3], a2[3], a3[3]), d + 3 * dstStride)
                c += 4
            }
            r += 4
        }
        c0 = c1
    }
    // Leftover rows (all columns) and leftover columns (the rows above), element by element.
    for r in r4..<rows { for c in 0..<cols { dst[c * dstStride + r] = src[r * srcStride + c] } }
    for c in c4..<cols { for r in 0..<r4 { dst[c * dstStride + r] = src[r * srcStride + c] } }
}

// MARK: - Mixing

/// wa·a + wb·b in one pass, with wa and wb one-element tensors (ACmix's rate1·attention + rate2·conv).
public func weightedSum(_ a: Tensor, _ wa: Tensor, _ b: Tensor, _ wb: Tensor) -> Tensor {
    precondition(a.shape == b.shape && wa.count == 1 && wb.count == 1, "weightedSum: \(a.shape), \(wa.shape), \(b.shape), \(wb.shape)")
    let out = Tensor(uninitialized: a.shape)
    let x = a.data, z = b.data, y = out.data, u = wa.data[0], v = wb.data[0]
    parallelChunks(a.count) { s, e in for i in s..<e { y[i] = u * x[i] + v * z[i] } }
    return out.record("weighted_sum", [a, wa, b, wb]) { g in
        let gd = g.data, ad = a.data, bd = b.data, n = a.count
        func dot(_ p: UnsafeMutablePointer<Float>) -> Tensor {
            var acc = 0.0
            for i in 0..<n { acc += Double(gd[i] * p[i]) }
            return Tensor(zeros: wa.shape, value: Float(acc))
        }
        return [a.requiresGrad ? g * u : nil, wa.requiresGrad ? dot(ad) : nil,
                b.requiresGrad ? g * v : nil, wb.requiresGrad ? dot(bd) : nil]
    }
}
