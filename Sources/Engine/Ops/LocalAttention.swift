/// ACmix's attention path as one fused op: for every query position, softmax attention over its
/// kernel×kernel reflection-padded neighbourhood, without ever unfolding keys or values (the authors' unfold
/// holds kernel² copies of k and v).
///
/// The authors compute logits q·(k_j + pe_q − pe_j). The pe_q term is the same for every j of a query, so it
/// cancels in the softmax (and its gradient, Σ_j ∂logit_j, is zero): the kernel uses q·(k_j − pe_j).
///
/// Layout: channels-first, so every inner loop runs over query positions with the tap offset fixed — plain
/// shifted reads of reflection-padded per-head copies of k − pe and v, which vectorise. The padded map is stored as
/// stride² phase planes (rows ≡ py and columns ≡ px modulo the stride): a query (y, x) and its tap (ty, tx) read phase
/// (ty mod s, tx mod s) at (y + ty/s, x + tx/s), so with any stride the queries form one segment at the phase planes'
/// row pitch and every tap is a contiguous read (the pitch columns past the output are computed with zero queries and
/// dropped). With stride 1 there is one phase, the padded map itself.
///
/// - qkv: [B, 3·heads·d, H, W], channel blocks q | k | v, each head-major (head·d + c): the 1×1 projections' output.
/// - pe: [d, H·W] positional encoding (conv_p of the coordinate grid), shared by heads and batch.
/// - Returns [B, heads·d, Ho, Wo] with Ho = (H−1)/stride + 1, queries taken every `stride` pixels.
public func acmixLocalAttention(_ qkv: Tensor, _ pe: Tensor, heads: Int, height h: Int, width w: Int,
                                kernel: Int, stride s: Int, scale: Float) -> Tensor {
    let b = qkv.shape[0], nd = qkv.shape[1] / 3, d = nd / heads
    let geo = LocalAttentionGeometry(h: h, w: w, d: d, kernel: kernel, stride: s)
    precondition(qkv.rank == 4 && qkv.shape[1] == 3 * heads * d && qkv.shape[2] == h && qkv.shape[3] == w && pe.count == d * h * w,
                 "acmix attention: qkv \(qkv.shape), pe \(pe.shape), \(heads) heads, \(h)x\(w)")
    precondition(h > geo.pad && w > geo.pad,
                 "ACmix attention needs feature maps larger than \(geo.pad) pixels (kernel \(kernel)), got \(h)x\(w)")
    let out = Tensor(uninitialized: [b, nd, geo.ho, geo.wo])
    FlopCounter.add("acmix_attention", 2 * out.count * geo.kk)   // q·k over the window, then the weighted sum of v
    let x = qkv.data, p = pe.data, y = out.data
    parallelFor(b * heads, cost: geo.ho * geo.wo * geo.kk * d * 4) { pair in
        let bi = pair / heads, hd = pair % heads
        let base = x + bi * 3 * nd * h * w
        let ws = LocalAttentionWorkspace(geo)
        defer { ws.free() }
        ws.pad(base + (nd + hd * d) * h * w, minus: p, into: ws.kp)
        ws.pad(base + (2 * nd + hd * d) * h * w, minus: nil, into: ws.vp)
        let q = base + hd * d * h * w, o = y + (bi * nd + hd * d) * geo.ho * geo.wo
        ws.scaleQueries(q, scale: scale)
        let seg = UnsafeMutablePointer<Float>.allocate(capacity: d * geo.lenBlocks)
        defer { seg.deallocate() }
        let taps = TapBlocks(geo)
        defer { taps.free() }
        for i0 in stride(from: 0, to: geo.len, by: attentionBlock) {
            taps.weights(ws, at: i0)
            taps.weightedSum(taps.a, ws.vp, planeSize: geo.planeSize, d: d, at: i0, into: seg, pitch: geo.lenBlocks)
        }
        for c in 0..<d { ws.scatterSegment(seg + c * geo.lenBlocks, into: o + c * geo.ho * geo.wo) }
    }
    return out.record("acmix_local_attention", [qkv, pe]) { g in
        let gqkv = Tensor(zeros: qkv.shape)
        // (batch, head) pairs write disjoint channel slices of gqkv; pe gradients go to per-pair buffers.
        let gpe = Tensor(zeros: [b * heads, d, h * w])
        let gx = gqkv.data, gy = g.data, gp = gpe.data
        parallelFor(b * heads, cost: geo.ho * geo.wo * geo.kk * d * 8) { pair in
            let bi = pair / heads, hd = pair % heads
            let base = x + bi * 3 * nd * h * w, gbase = gx + bi * 3 * nd * h * w
            let ws = LocalAttentionWorkspace(geo)
            ws.pad(base + (nd + hd * d) * h * w, minus: p, into: ws.kp)
            ws.pad(base + (2 * nd + hd * d) * h * w, minus: nil, into: ws.vp)
            let gkp = ws.zeroPadded(), gvp = ws.zeroPadded()
            let taps = TapBlocks(geo)
            defer { ws.free(); gkp.deallocate(); gvp.deallocate(); taps.free() }
            let q = base + hd * d * h * w, gq = gbase + hd * d * h * w
            let grad = gy + (bi * nd + hd * d) * geo.ho * geo.wo
            taps.backward(ws, q: q, scale: scale, outputGradient: grad, gkp: gkp, gvp: gvp, gq: gq)
            // Fold the padded gradients back through the reflection: k and v get them, pe gets −gkp.
            ws.fold(gkp, into: gbase + (nd + hd * d) * h * w, sign: 1)
            ws.fold(gkp, into: gp + pair * d * h * w, sign: -1)
            ws.fold(gvp, into: gbase + (2 * nd + hd * d) * h * w, sign: 1)
        }
        return [qkv.requiresGrad ? gqkv : nil, pe.requiresGrad ? gpe.sum(axes: [0]).reshape(pe.shape) : nil]
    }
}

struct LocalAttentionGeometry {
    let h, w, d, kernel, s, pad, hp, wp, ho, wo, kk: Int
    /// Rows and row pitch of each of the s² phase planes (zero where a phase has no padded pixel), and their size.
    let hq, pitch, phaseSize: Int
    /// Query positions: ho rows at `pitch`; len rounded up to whole blocks of positions.
    let len, lenBlocks: Int
    /// A channel's phase planes, with slack so the last block's taps past the pitch columns stay in bounds.
    let planeSize: Int
    /// Source row/column of each padded row/column (reflection without repeating the edge).
    let rowMap: [Int], colMap: [Int]
    /// Per tap (ty·kernel + tx): its phase plane, and its offset inside that plane from a query's position.
    let phase: [Int], inPhase: [Int]
    /// Per phase plane, its taps in the order the backward sums a padded pixel's: by tap at stride 1 (as the blocked
    /// kernel always did); at larger strides by the queries' rows ascending (taps' rows descending), then columns, the
    /// order of the per-row kernel this replaced, whose gradients it reproduces bit for bit.
    let phaseTaps: [[Int]]
    /// Where padded row yp starts in a channel's phase planes, and where padded column xp lies from a row's start.
    let rowStart: [Int], columnOffset: [Int]

    init(h: Int, w: Int, d: Int, kernel: Int, stride: Int) {
        self.h = h; self.w = w; self.d = d; self.kernel = kernel; s = stride
        pad = kernel / 2
        hp = h + 2 * pad; wp = w + 2 * pad
        ho = (h - 1) / stride + 1; wo = (w - 1) / stride + 1
        kk = kernel * kernel
        hq = (hp + stride - 1) / stride; pitch = (wp + stride - 1) / stride; phaseSize = hq * pitch
        len = ho * pitch
        lenBlocks = (len + attentionBlock - 1) / attentionBlock * attentionBlock
        // A query's last tap reads below row ho − 1 + (kernel − 1)/s < hq of the last phase: past the planes only the
        // block rounding and the last columns.
        planeSize = stride * stride * phaseSize + kernel + attentionBlock
        rowMap = (0..<hp).map { reflectIndex($0 - kernel / 2, h) }
        colMap = (0..<wp).map { reflectIndex($0 - kernel / 2, w) }
        phase = (0..<kk).map { ($0 / kernel % stride) * stride + $0 % kernel % stride }
        let (pitch, kernel) = (pitch, kernel)
        inPhase = (0..<kk).map { ($0 / kernel / stride) * pitch + $0 % kernel / stride }
        let (phase, phaseSize) = (phase, phaseSize)
        phaseTaps = (0..<stride * stride).map { p in
            let taps = (0..<kernel * kernel).filter { phase[$0] == p }
            return stride == 1 ? taps : taps.sorted { (-($0 / kernel), $0 % kernel) < (-($1 / kernel), $1 % kernel) }
        }
        rowStart = (0..<hp).map { ($0 % stride) * stride * phaseSize + ($0 / stride) * pitch }
        columnOffset = (0..<wp).map { ($0 % stride) * phaseSize + $0 / stride }
    }

    /// Each tap's offset from a query's position in a channel's phase planes.
    var offsets: [Int] { (0..<kk).map { phase[$0] * phaseSize + inPhase[$0] } }
}

/// Per-(batch, head) scratch: k − pe and v in padded phase planes, and the scaled queries.
struct LocalAttentionWorkspace {
    let g: LocalAttentionGeometry
    let kp, vp: UnsafeMutablePointer<Float>   // [d][planeSize]
    let qs: UnsafeMutablePointer<Float>       // [d][lenBlocks]

    init(_ g: LocalAttentionGeometry) {
        self.g = g
        kp = .allocate(capacity: g.d * g.planeSize)
        vp = .allocate(capacity: g.d * g.planeSize)
        qs = .allocate(capacity: g.d * g.lenBlocks)
    }

    func free() { kp.deallocate(); vp.deallocate(); qs.deallocate() }

    func zeroPadded() -> UnsafeMutablePointer<Float> {
        let t = UnsafeMutablePointer<Float>.allocate(capacity: g.d * g.planeSize)
        t.update(repeating: 0, count: g.d * g.planeSize)
        return t
    }

    /// Reflection-pads d channel planes of `src` (minus `sub`, the same-shaped pe, when given) into phase planes (zero
    /// where a phase plane has no padded pixel).
    func pad(_ src: UnsafePointer<Float>, minus sub: UnsafePointer<Float>?, into dst: UnsafeMutablePointer<Float>) {
        dst.update(repeating: 0, count: g.d * g.planeSize)
        for c in 0..<g.d {
            for yp in 0..<g.hp {
                let row = src + (c * g.h + g.rowMap[yp]) * g.w, o = dst + c * g.planeSize + g.rowStart[yp]
                if let sub {
                    let srow = sub + (c * g.h + g.rowMap[yp]) * g.w
                    for xp in 0..<g.wp { o[g.columnOffset[xp]] = row[g.colMap[xp]] - srow[g.colMap[xp]] }
                } else {
                    for xp in 0..<g.wp { o[g.columnOffset[xp]] = row[g.colMap[xp]] }
                }
            }
        }
    }

    /// Adds padded phase-plane gradients back onto the unpadded planes (the adjoint of `pad`), in the padded map's
    /// raster order: a pixel's reflections are summed in the order the plain padded map would sum them, whatever the
    /// stride (the sums' rounding does not depend on the phase layout).
    func fold(_ src: UnsafePointer<Float>, into dst: UnsafeMutablePointer<Float>, sign: Float) {
        for c in 0..<g.d {
            for yp in 0..<g.hp {
                let row = dst + (c * g.h + g.rowMap[yp]) * g.w, at = src + c * g.planeSize + g.rowStart[yp]
                for xp in 0..<g.wp { row[g.colMap[xp]] += sign * at[g.columnOffset[xp]] }
            }
        }
    }

    /// Copies a [ho, wo] plane into segment layout (zero in the pitch columns).
    func gatherSegment(_ plane: UnsafePointer<Float>, into dst: UnsafeMutablePointer<Float>) {
        for y in 0..<g.ho {
            (dst + y * g.pitch).update(from: plane + y * g.wo, count: g.wo)
            (dst + y * g.pitch + g.wo).update(repeating: 0, count: g.pitch - g.wo)
        }
    }

    /// Writes a segment's valid positions into a [ho, wo] plane.
    func scatterSegment(_ src: UnsafePointer<Float>, into plane: UnsafeMutablePointer<Float>) {
        for y in 0..<g.ho { (plane + y * g.wo).update(from: src + y * g.pitch, count: g.wo) }
    }

    /// Adds scale·src (segment layout) onto the query plane [h, w] at the query pixels (every s-th row and column).
    func addQueryGradient(_ src: UnsafePointer<Float>, scale: Float, into plane: UnsafeMutablePointer<Float>) {
        for y in 0..<g.ho {
            let r = plane + y * g.s * g.w, sr = src + y * g.pitch
            if g.s == 1 { for x in 0..<g.wo { r[x] += scale * sr[x] } } else { for x in 0..<g.wo { r[x * g.s] += scale * sr[x] } }
        }
    }

    /// Fills `qs` with the scaled queries (pitch `pitch`, zero in the pitch columns and past the last position).
    func scaleQueries(_ q: UnsafePointer<Float>, scale: Float) {
        for c in 0..<g.d {
            let dst = qs + c * g.lenBlocks
            for y in 0..<g.ho {
                let src = q + (c * g.h + y * g.s) * g.w, o = dst + y * g.pitch
                if g.s == 1 { for x in 0..<g.wo { o[x] = src[x] * scale } } else { for x in 0..<g.wo { o[x] = src[x * g.s] * scale } }
                (o + g.wo).update(repeating: 0, count: g.pitch - g.wo)
            }
            (dst + g.len).update(repeating: 0, count: g.lenBlocks - g.len)
        }
    }
}

/// Query positions per block of the kernels: two eight-lane registers per tap.
let attentionBlock = 16

/// The kernels, one block of 16 query positions at a time: the block's 49 logits (or gradients) per
/// position stay in a 3 KB buffer in L1, and every tap is a contiguous 16-float read of a padded plane at the
/// tap's offset. Four taps or four channels share each load of the other operand. (The per-tap sweeps over whole
/// planes they replace streamed kk·len floats through L2 for every channel.)
struct TapBlocks {
    let g: LocalAttentionGeometry
    let offsets: [Int]
    /// Attention weights and a second per-tap buffer (logit gradients), [kk][16] each.
    let a, grad: UnsafeMutablePointer<Float>

    init(_ g: LocalAttentionGeometry) {
        self.g = g
        offsets = g.offsets
        a = .allocate(capacity: g.kk * attentionBlock)
        grad = .allocate(capacity: g.kk * attentionBlock)
    }

    func free() { a.deallocate(); grad.deallocate() }

    /// out[t] = Σ_c x[c][i0…]·plane[c][i0 + off(t)…] for the block at i0 (x at row pitch `pitch`).
    func logits(_ x: UnsafePointer<Float>, pitch: Int, _ planes: UnsafePointer<Float>, planeSize: Int, d: Int, at i0: Int,
                into out: UnsafeMutablePointer<Float>) {
        var t = 0
        while t < g.kk {
            let n = min(4, g.kk - t)
            var a0 = SIMD16<Float>(), a1 = SIMD16<Float>(), a2 = SIMD16<Float>(), a3 = SIMD16<Float>()
            let o0 = offsets[t], o1 = offsets[t + min(1, n - 1)], o2 = offsets[t + min(2, n - 1)], o3 = offsets[t + min(3, n - 1)]
            for c in 0..<d {
                let q = load16(x + c * pitch + i0), p = planes + c * planeSize + i0
                a0 += q * load16(p + o0); a1 += q * load16(p + o1)
                a2 += q * load16(p + o2); a3 += q * load16(p + o3)
            }
            store16(a0, out + t * 16)
            if n > 1 { store16(a1, out + (t + 1) * 16) }
            if n > 2 { store16(a2, out + (t + 2) * 16) }
            if n > 3 { store16(a3, out + (t + 3) * 16) }
            t += n
        }
    }

    /// a = softmax over taps of the block's logits q·(k − pe) (queries in the workspace's qs, pre-scaled).
    func weights(_ ws: LocalAttentionWorkspace, at i0: Int) {
        logits(ws.qs, pitch: g.lenBlocks, ws.kp, planeSize: g.planeSize, d: g.d, at: i0, into: a)
        var m = load16(a)
        for t in 1..<g.kk { m = lanewiseMax(m, load16(a + t * 16)) }
        var sum = SIMD16<Float>()
        for t in 0..<g.kk { let e = fastExp(load16(a + t * 16) - m); store16(e, a + t * 16); sum += e }
        let inv = 1 / sum
        for t in 0..<g.kk { store16(load16(a + t * 16) * inv, a + t * 16) }
    }

    /// out[c][i0…] = Σ_t w[t]·plane[c][i0 + off(t)…], four channels at a time.
    func weightedSum(_ w: UnsafePointer<Float>, _ planes: UnsafePointer<Float>, planeSize: Int, d: Int, at i0: Int,
                     into out: UnsafeMutablePointer<Float>, pitch: Int) {
        var c = 0
        while c < d {
            let n = min(4, d - c)
            var s0 = SIMD16<Float>(), s1 = SIMD16<Float>(), s2 = SIMD16<Float>(), s3 = SIMD16<Float>()
            let p0 = planes + c * planeSize + i0
            let p1 = planes + (c + min(1, n - 1)) * planeSize + i0
            let p2 = planes + (c + min(2, n - 1)) * planeSize + i0
            let p3 = planes + (c + min(3, n - 1)) * planeSize + i0
            for t in 0..<g.kk {
                let wt = load16(w + t * 16), o = offsets[t]
                s0 += wt * load16(p0 + o); s1 += wt * load16(p1 + o)
                s2 += wt * load16(p2 + o); s3 += wt * load16(p3 + o)
            }
            store16(s0, out + c * pitch + i0)
            if n > 1 { store16(s1, out + (c + 1) * pitch + i0) }
            if n > 2 { store16(s2, out + (c + 2) * pitch + i0) }
            if n > 3 { store16(s3, out + (c + 3) * pitch + i0) }
            c += n
        }
    }

    /// plane[c][j0…] = Σ_t w[t][j0 − off(t)…]·x[c][j0 − off(t)…]: the adjoint of `weightedSum` into the planes,
    /// computed per destination block (gathering from the sources rather than adding into overlapping destination
    /// windows, whose partially overlapping stores the CPU cannot forward to the next loads). w and x point at
    /// position 0 of rows with zero margins on both sides. Over the taps of one phase plane (`planes` points at it),
    /// off(t) their offsets inside it.
    func gatherAdjoint(_ w: UnsafePointer<Float>, _ x: UnsafePointer<Float>, pitch: Int, d: Int, at j0: Int, taps: [Int],
                       into planes: UnsafeMutablePointer<Float>, planeSize: Int) {
        var c = 0
        while c < d {
            let n = min(4, d - c)
            var s0 = SIMD16<Float>(), s1 = SIMD16<Float>(), s2 = SIMD16<Float>(), s3 = SIMD16<Float>()
            let x0 = x + c * pitch + j0, x1 = x + (c + min(1, n - 1)) * pitch + j0
            let x2 = x + (c + min(2, n - 1)) * pitch + j0, x3 = x + (c + min(3, n - 1)) * pitch + j0
            for t in taps {
                let o = -g.inPhase[t], wt = load16(w + t * pitch + j0 + o)
                s0 += wt * load16(x0 + o); s1 += wt * load16(x1 + o)
                s2 += wt * load16(x2 + o); s3 += wt * load16(x3 + o)
            }
            store16(s0, planes + c * planeSize + j0)
            if n > 1 { store16(s1, planes + (c + 1) * planeSize + j0) }
            if n > 2 { store16(s2, planes + (c + 2) * planeSize + j0) }
            if n > 3 { store16(s3, planes + (c + 3) * planeSize + j0) }
            c += n
        }
    }

    /// The backward of one (image, head): attention weights and logit gradients for every position (block by
    /// block), the query gradient, then the padded k − pe and v gradients in gather form. gkp and gvp are written
    /// whole (every padded position), gq accumulated.
    func backward(_ ws: LocalAttentionWorkspace, q: UnsafePointer<Float>, scale: Float, outputGradient: UnsafePointer<Float>,
                  gkp: UnsafeMutablePointer<Float>, gvp: UnsafeMutablePointer<Float>, gq: UnsafeMutablePointer<Float>) {
        let d = g.d, lenB = g.lenBlocks
        // Rows over positions −margin ..< span + margin, zero outside the segment: the gathers read a tap's offset in
        // its phase plane before; span covers one phase plane.
        let span = (g.phaseSize + attentionBlock - 1) / attentionBlock * attentionBlock
        let margin = (g.inPhase.max()! + attentionBlock - 1) / attentionBlock * attentionBlock
        let pitch = margin + max(span, lenB) + attentionBlock
        let rows = UnsafeMutablePointer<Float>.allocate(capacity: (2 * g.kk + 2 * d) * pitch)
        defer { rows.deallocate() }
        rows.update(repeating: 0, count: (2 * g.kk + 2 * d) * pitch)
        let aAll = rows + margin, glAll = aAll + g.kk * pitch, qw = glAll + g.kk * pitch, gw = qw + d * pitch
        let gqs = UnsafeMutablePointer<Float>.allocate(capacity: d * lenB)
        defer { gqs.deallocate() }
        ws.scaleQueries(q, scale: scale)
        for c in 0..<d {
            (qw + c * pitch).update(from: ws.qs + c * lenB, count: lenB)
            ws.gatherSegment(outputGradient + c * g.ho * g.wo, into: gw + c * pitch)
        }
        for i0 in stride(from: 0, to: g.len, by: attentionBlock) {
            weights(ws, at: i0)
            logits(gw, pitch: pitch, ws.vp, planeSize: g.planeSize, d: d, at: i0, into: grad)
            softmaxBackward()
            weightedSum(grad, ws.kp, planeSize: g.planeSize, d: d, at: i0, into: gqs, pitch: lenB)
            for t in 0..<g.kk {
                (aAll + t * pitch + i0).update(from: a + t * attentionBlock, count: attentionBlock)
                (glAll + t * pitch + i0).update(from: grad + t * attentionBlock, count: attentionBlock)
            }
        }
        // Positions past the segment hold weights of zero queries: zero them (their products with zero rows must not
        // be NaN-poisoned, and they must not contribute).
        for t in 0..<g.kk {
            (aAll + t * pitch + g.len).update(repeating: 0, count: pitch - margin - g.len)
            (glAll + t * pitch + g.len).update(repeating: 0, count: pitch - margin - g.len)
        }
        for c in 0..<d { ws.addQueryGradient(gqs + c * lenB, scale: scale, into: gq + c * g.h * g.w) }
        // Phase by phase, in order: a block's stores past its phase plane land at the next one's start, which that
        // phase then writes (or in the slack after the last). Each padded pixel sums its taps in `phaseTaps` order.
        for (p, taps) in g.phaseTaps.enumerated() {
            let at = p * g.phaseSize
            for j0 in stride(from: 0, to: span, by: attentionBlock) {
                // gv[c][j] = Σ_t a[t][j − off]·g[c][j − off];  gk[c][j] = Σ_t gl[t][j − off]·q[c][j − off]
                gatherAdjoint(aAll, gw, pitch: pitch, d: d, at: j0, taps: taps, into: gvp + at, planeSize: g.planeSize)
                gatherAdjoint(glAll, qw, pitch: pitch, d: d, at: j0, taps: taps, into: gkp + at, planeSize: g.planeSize)
            }
        }
    }

    /// grad ← a·(grad − Σ_t a·grad): the softmax backward over taps, per position.
    func softmaxBackward() {
        var dot = SIMD16<Float>()
        for t in 0..<g.kk { dot += load16(a + t * 16) * load16(grad + t * 16) }
        for t in 0..<g.kk { store16(load16(a + t * 16) * (load16(grad + t * 16) - dot), grad + t * 16) }
    }
}
