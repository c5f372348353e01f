/// ACmix's attention path as one fused op: for every query position, softmax attention over its
/// kernel×kernel reflection-padded neighbourhood, without ever unfolding keys or values (the authors' unfold
/// holds kernel² copies of k and v).
///
/// The authors compute logits q·(k_j + pe_q − pe_j). The pe_q term is the same for every j of a query, so it
/// cancels in the softmax (and its gradient, Σ_j ∂logit_j, is zero): the kernel uses q·(k_j − pe_j).
///
/// Layout: channels-first, so every inner loop runs over query positions with the tap offset fixed — plain
/// shifted reads of reflection-padded per-head copies of k − pe and v, which vectorise. With stride 1 all queries
/// of a plane form one "segment" laid out with the padded row pitch (the few pitch columns past the image are
/// computed with zero queries and dropped); with stride 2 each output row is a segment read every other pixel.
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
    let x = qkv.data, p = pe.data, y = out.data
    parallelFor(b * heads, cost: geo.ho * geo.wo * geo.kk * d * 4) { pair in
        let bi = pair / heads, hd = pair % heads
        let base = x + bi * 3 * nd * h * w
        let ws = LocalAttentionWorkspace(geo)
        defer { ws.free() }
        ws.pad(base + (nd + hd * d) * h * w, minus: p, into: ws.kp)
        ws.pad(base + (2 * nd + hd * d) * h * w, minus: nil, into: ws.vp)
        let q = base + hd * d * h * w, o = y + (bi * nd + hd * d) * geo.ho * geo.wo
        for seg in 0..<geo.segments {
            ws.attention(segment: seg, q: q, scale: scale)
            // out[c][i] = Σ_t a[t][i]·v[c][tap]
            for c in 0..<d {
                ws.buf.update(repeating: 0, count: geo.len)
                for t in 0..<geo.kk { gatherMulAdd(ws.buf, ws.a + t * geo.len, ws.tap(ws.vp, c, seg, t), geo.len, geo.step) }
                ws.scatterSegment(ws.buf, seg, into: o + c * geo.ho * geo.wo)
            }
        }
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
            let gseg = UnsafeMutablePointer<Float>.allocate(capacity: d * geo.len)
            let ga = UnsafeMutablePointer<Float>.allocate(capacity: geo.kk * geo.len)
            let dot = UnsafeMutablePointer<Float>.allocate(capacity: geo.len)
            defer { ws.free(); gkp.deallocate(); gvp.deallocate(); gseg.deallocate(); ga.deallocate(); dot.deallocate() }
            let q = base + hd * d * h * w, gq = gbase + hd * d * h * w
            let grad = gy + (bi * nd + hd * d) * geo.ho * geo.wo
            for seg in 0..<geo.segments {
                ws.attention(segment: seg, q: q, scale: scale)
                for c in 0..<d { ws.gatherSegment(grad + c * geo.ho * geo.wo, seg, into: gseg + c * geo.len) }
                // ga[t][i] = Σ_c g[c][i]·v[c][tap];  gv[c][tap] += a[t][i]·g[c][i]
                ga.update(repeating: 0, count: geo.kk * geo.len)
                for c in 0..<d {
                    let gc = gseg + c * geo.len
                    for t in 0..<geo.kk {
                        gatherMulAdd(ga + t * geo.len, gc, ws.tap(ws.vp, c, seg, t), geo.len, geo.step)
                        scatterMulAdd(ws.tap(gvp, c, seg, t), ws.a + t * geo.len, gc, geo.len, geo.step)
                    }
                }
                // Softmax backward, in place: gl[t][i] = a·(ga − Σ_t a·ga).
                dot.update(repeating: 0, count: geo.len)
                for t in 0..<geo.kk { let a = ws.a + t * geo.len, gt = ga + t * geo.len; for i in 0..<geo.len { dot[i] += a[i] * gt[i] } }
                for t in 0..<geo.kk {
                    let a = ws.a + t * geo.len, gt = ga + t * geo.len
                    for i in 0..<geo.len { gt[i] = a[i] * (gt[i] - dot[i]) }
                }
                // gq[c][i] = scale·Σ_t gl·kp[c][tap];  gkp[c][tap] += gl·qs[c][i]
                for c in 0..<d {
                    ws.buf.update(repeating: 0, count: geo.len)
                    for t in 0..<geo.kk {
                        gatherMulAdd(ws.buf, ga + t * geo.len, ws.tap(ws.kp, c, seg, t), geo.len, geo.step)
                        scatterMulAdd(ws.tap(gkp, c, seg, t), ga + t * geo.len, ws.qs + c * geo.len, geo.len, geo.step)
                    }
                    ws.addQueryGradient(ws.buf, seg, scale: scale, into: gq + c * h * w)
                }
            }
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
    /// Query segments per plane, positions per segment, and the padded-map step between neighbouring positions.
    let segments, len, step: Int
    /// Padded plane size, with slack so the last segment's taps past the pitch columns stay in bounds.
    let planeSize: Int
    /// Source row/column of each padded row/column (reflection without repeating the edge).
    let rowMap: [Int], colMap: [Int]

    init(h: Int, w: Int, d: Int, kernel: Int, stride: Int) {
        self.h = h; self.w = w; self.d = d; self.kernel = kernel; s = stride
        pad = kernel / 2
        hp = h + 2 * pad; wp = w + 2 * pad
        ho = (h - 1) / stride + 1; wo = (w - 1) / stride + 1
        kk = kernel * kernel
        if stride == 1 { segments = 1; len = ho * wp; step = 1 } else { segments = ho; len = wo; step = stride }
        planeSize = hp * wp + kernel
        rowMap = (0..<hp).map { reflectIndex($0 - kernel / 2, h) }
        colMap = (0..<wp).map { reflectIndex($0 - kernel / 2, w) }
    }
}

/// Per-(batch, head) scratch: padded k − pe and v, the scaled queries and attention weights of one segment.
struct LocalAttentionWorkspace {
    let g: LocalAttentionGeometry
    let kp, vp: UnsafeMutablePointer<Float>   // [d][planeSize]
    let qs: UnsafeMutablePointer<Float>       // [d][len]
    let a: UnsafeMutablePointer<Float>        // [kk][len]
    let buf: UnsafeMutablePointer<Float>      // [len]

    init(_ g: LocalAttentionGeometry) {
        self.g = g
        kp = .allocate(capacity: g.d * g.planeSize)
        vp = .allocate(capacity: g.d * g.planeSize)
        qs = .allocate(capacity: g.d * g.len)
        a = .allocate(capacity: g.kk * g.len)
        buf = .allocate(capacity: g.len)
    }

    func free() { kp.deallocate(); vp.deallocate(); qs.deallocate(); a.deallocate(); buf.deallocate() }

    func zeroPadded() -> UnsafeMutablePointer<Float> {
        let t = UnsafeMutablePointer<Float>.allocate(capacity: g.d * g.planeSize)
        t.update(repeating: 0, count: g.d * g.planeSize)
        return t
    }

    /// Reflection-pads d channel planes of `src` (minus `sub`, the same-shaped pe, when given).
    func pad(_ src: UnsafePointer<Float>, minus sub: UnsafePointer<Float>?, into dst: UnsafeMutablePointer<Float>) {
        for c in 0..<g.d {
            let plane = src + c * g.h * g.w, sp = sub.map { $0 + c * g.h * g.w }, out = dst + c * g.planeSize
            for yp in 0..<g.hp {
                let row = plane + g.rowMap[yp] * g.w, o = out + yp * g.wp
                if let sp {
                    let srow = sp + g.rowMap[yp] * g.w
                    for xp in 0..<g.wp { o[xp] = row[g.colMap[xp]] - srow[g.colMap[xp]] }
                } else {
                    for xp in 0..<g.wp { o[xp] = row[g.colMap[xp]] }
                }
            }
            (out + g.hp * g.wp).update(repeating: 0, count: g.kernel)
        }
    }

    /// Adds a padded gradient back onto the unpadded planes (the adjoint of `pad`).
    func fold(_ src: UnsafePointer<Float>, into dst: UnsafeMutablePointer<Float>, sign: Float) {
        for c in 0..<g.d {
            let plane = dst + c * g.h * g.w
            for yp in 0..<g.hp {
                let row = plane + g.rowMap[yp] * g.w, inRow = src + c * g.planeSize + yp * g.wp
                for xp in 0..<g.wp { row[g.colMap[xp]] += sign * inRow[xp] }
            }
        }
    }

    /// Padded channel c's element for position 0 of `segment` at tap t; position i is at `step`·i from it.
    @inline(__always)
    func tap(_ t0: UnsafeMutablePointer<Float>, _ c: Int, _ segment: Int, _ t: Int) -> UnsafeMutablePointer<Float> {
        t0 + c * g.planeSize + (segment * g.s + t / g.kernel) * g.wp + t % g.kernel
    }

    /// Copies a [ho, wo] plane's positions of `segment` into segment layout (zero in the pitch columns).
    func gatherSegment(_ plane: UnsafePointer<Float>, _ segment: Int, into dst: UnsafeMutablePointer<Float>) {
        if g.s == 1 {
            for y in 0..<g.ho {
                (dst + y * g.wp).update(from: plane + y * g.wo, count: g.wo)
                (dst + y * g.wp + g.wo).update(repeating: 0, count: g.wp - g.wo)
            }
        } else {
            dst.update(from: plane + segment * g.wo, count: g.wo)
        }
    }

    /// Writes a segment's valid positions into a [ho, wo] plane.
    func scatterSegment(_ src: UnsafePointer<Float>, _ segment: Int, into plane: UnsafeMutablePointer<Float>) {
        if g.s == 1 {
            for y in 0..<g.ho { (plane + y * g.wo).update(from: src + y * g.wp, count: g.wo) }
        } else {
            (plane + segment * g.wo).update(from: src, count: g.wo)
        }
    }

    /// Adds scale·src (segment layout) onto the query plane [h, w] at the segment's query pixels.
    func addQueryGradient(_ src: UnsafePointer<Float>, _ segment: Int, scale: Float, into plane: UnsafeMutablePointer<Float>) {
        if g.s == 1 {
            for y in 0..<g.h { let r = plane + y * g.w, sr = src + y * g.wp; for x in 0..<g.w { r[x] += scale * sr[x] } }
        } else {
            let r = plane + segment * g.s * g.w
            for x in 0..<g.wo { r[x * g.s] += scale * src[x] }
        }
    }

    /// Fills `qs` with the scaled queries of `segment` and `a` with their softmax weights over the taps.
    func attention(segment: Int, q: UnsafePointer<Float>, scale: Float) {
        let len = g.len
        for c in 0..<g.d {
            let dst = qs + c * len
            if g.s == 1 {
                for y in 0..<g.h {
                    let src = q + (c * g.h + y) * g.w, o = dst + y * g.wp
                    for x in 0..<g.w { o[x] = src[x] * scale }
                    (o + g.w).update(repeating: 0, count: g.wp - g.w)
                }
            } else {
                let src = q + (c * g.h + segment * g.s) * g.w
                for x in 0..<g.wo { dst[x] = src[x * g.s] * scale }
            }
        }
        a.update(repeating: 0, count: g.kk * len)
        for c in 0..<g.d {
            for t in 0..<g.kk { gatherMulAdd(a + t * len, qs + c * len, tap(kp, c, segment, t), len, g.step) }
        }
        // Softmax over taps, vectorised across positions.
        let m = buf
        m.update(from: a, count: len)
        for t in 1..<g.kk { let lg = a + t * len; for i in 0..<len { m[i] = max(m[i], lg[i]) } }
        for t in 0..<g.kk { let lg = a + t * len; for i in 0..<len { lg[i] = fastExp(lg[i] - m[i]) } }
        m.update(from: a, count: len)
        for t in 1..<g.kk { let lg = a + t * len; for i in 0..<len { m[i] += lg[i] } }
        for i in 0..<len { m[i] = 1 / m[i] }
        for t in 0..<g.kk { let lg = a + t * len; for i in 0..<len { lg[i] *= m[i] } }
    }
}

// Row kernels with a contiguous fast path: with stride 1 they vectorise; a variable stride would keep them scalar.

/// y[i] += a[i]·x[i·s]
@inline(__always)
func gatherMulAdd(_ y: UnsafeMutablePointer<Float>, _ a: UnsafePointer<Float>, _ x: UnsafePointer<Float>, _ n: Int, _ s: Int) {
    if s == 1 { for i in 0..<n { y[i] += a[i] * x[i] } } else { for i in 0..<n { y[i] += a[i] * x[i * s] } }
}

/// y[i·s] += a[i]·b[i]
@inline(__always)
func scatterMulAdd(_ y: UnsafeMutablePointer<Float>, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int, _ s: Int) {
    if s == 1 { for i in 0..<n { y[i] += a[i] * b[i] } } else { for i in 0..<n { y[i * s] += a[i] * b[i] } }
}

