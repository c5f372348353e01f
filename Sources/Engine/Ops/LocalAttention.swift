/// ACmix's attention path as one fused op: for every query position, softmax attention over its
/// kernel×kernel reflection-padded neighbourhood, without ever unfolding keys or values (the authors' unfold
/// holds kernel² copies of k and v).
///
/// The authors compute logits q·(k_j + pe_q − pe_j). The pe_q term is the same for every j of a query, so it
/// cancels in the softmax (and its gradient, Σ_j ∂logit_j, is zero): the kernel uses q·(k_j − pe_j).
///
/// Layout: channels-first rows, so every inner loop runs over the x positions of one row with the tap offset
/// fixed — plain shifted reads of reflection-padded per-head copies of k − pe and v, which vectorise.
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
        var ws = LocalAttentionWorkspace(geo)
        ws.pad(base + (nd + hd * d) * h * w, minus: p, into: ws.kp)
        ws.pad(base + (2 * nd + hd * d) * h * w, minus: nil, into: ws.vp)
        let q = base + hd * d * h * w, o = y + (bi * nd + hd * d) * geo.ho * geo.wo
        for oy in 0..<geo.ho {
            ws.attention(row: oy, q: q, scale: scale)
            // out[c][x] = Σ_t a[t][x]·v[c][y+ty][x·s+tx]
            for c in 0..<d {
                let orow = o + (c * geo.ho + oy) * geo.wo
                orow.update(repeating: 0, count: geo.wo)
                for t in 0..<geo.kk {
                    let src = ws.tap(ws.vp, c, oy, t), a = ws.a + t * geo.wo
                    for xo in 0..<geo.wo { orow[xo] += a[xo] * src[xo * s] }
                }
            }
        }
        ws.free()
    }
    return out.record("acmix_local_attention", [qkv, pe]) { g in
        let gqkv = Tensor(zeros: qkv.shape)
        // (batch, head) pairs write disjoint channel slices of gqkv; pe gradients go to per-pair buffers.
        let gpe = Tensor(zeros: [b * heads, d, h * w])
        let gx = gqkv.data, gy = g.data, gp = gpe.data
        parallelFor(b * heads, cost: geo.ho * geo.wo * geo.kk * d * 8) { pair in
            let bi = pair / heads, hd = pair % heads
            let base = x + bi * 3 * nd * h * w, gbase = gx + bi * 3 * nd * h * w
            var ws = LocalAttentionWorkspace(geo)
            ws.pad(base + (nd + hd * d) * h * w, minus: p, into: ws.kp)
            ws.pad(base + (2 * nd + hd * d) * h * w, minus: nil, into: ws.vp)
            let gkp = ws.zeroPadded(), gvp = ws.zeroPadded()
            let q = base + hd * d * h * w, gq = gbase + hd * d * h * w
            let grad = gy + (bi * nd + hd * d) * geo.ho * geo.wo
            let ga = UnsafeMutablePointer<Float>.allocate(capacity: geo.kk * geo.wo)
            let rowDot = UnsafeMutablePointer<Float>.allocate(capacity: geo.wo)
            for oy in 0..<geo.ho {
                ws.attention(row: oy, q: q, scale: scale)
                // ga[t][x] = Σ_c g[c][x]·v[c][tap];  gv[c][tap] += a[t][x]·g[c][x]
                ga.update(repeating: 0, count: geo.kk * geo.wo)
                for c in 0..<d {
                    let grow = grad + (c * geo.ho + oy) * geo.wo
                    for t in 0..<geo.kk {
                        let src = ws.tap(ws.vp, c, oy, t), dst = ws.tap(gvp, c, oy, t)
                        let gat = ga + t * geo.wo, a = ws.a + t * geo.wo
                        for xo in 0..<geo.wo { gat[xo] += grow[xo] * src[xo * s]; dst[xo * s] += a[xo] * grow[xo] }
                    }
                }
                // Softmax backward: gl[t][x] = a·(ga − Σ_t a·ga), kept in ga.
                rowDot.update(repeating: 0, count: geo.wo)
                for t in 0..<geo.kk { let a = ws.a + t * geo.wo, gat = ga + t * geo.wo; for xo in 0..<geo.wo { rowDot[xo] += a[xo] * gat[xo] } }
                for t in 0..<geo.kk {
                    let a = ws.a + t * geo.wo, gat = ga + t * geo.wo
                    for xo in 0..<geo.wo { gat[xo] = a[xo] * (gat[xo] - rowDot[xo]) }
                }
                // gq[c][x] += scale·Σ_t gl·kp[c][tap];  gkp[c][tap] += gl·qs[c][x]
                for c in 0..<d {
                    let qs = ws.qs + c * geo.wo
                    let gqrow = gq + (c * h + oy * s) * w
                    for t in 0..<geo.kk {
                        let src = ws.tap(ws.kp, c, oy, t), dst = ws.tap(gkp, c, oy, t), gl = ga + t * geo.wo
                        for xo in 0..<geo.wo { gqrow[xo * s] += scale * gl[xo] * src[xo * s]; dst[xo * s] += gl[xo] * qs[xo] }
                    }
                }
            }
            // Fold the padded gradients back through the reflection: k and v get them, pe gets −gkp.
            ws.fold(gkp, into: gbase + (nd + hd * d) * h * w, sign: 1)
            ws.fold(gkp, into: gp + pair * d * h * w, sign: -1)
            ws.fold(gvp, into: gbase + (2 * nd + hd * d) * h * w, sign: 1)
            gkp.deallocate(); gvp.deallocate(); ga.deallocate(); rowDot.deallocate()
            ws.free()
        }
        return [qkv.requiresGrad ? gqkv : nil, pe.requiresGrad ? gpe.sum(axes: [0]).reshape(pe.shape) : nil]
    }
}

struct LocalAttentionGeometry {
    let h, w, d, kernel, s, pad, hp, wp, ho, wo, kk: Int
    /// Source row/column of each padded row/column (reflection without repeating the edge).
    let rowMap: [Int], colMap: [Int]

    init(h: Int, w: Int, d: Int, kernel: Int, stride: Int) {
        self.h = h; self.w = w; self.d = d; self.kernel = kernel; s = stride
        pad = kernel / 2
        hp = h + 2 * pad; wp = w + 2 * pad
        ho = (h - 1) / stride + 1; wo = (w - 1) / stride + 1
        kk = kernel * kernel
        rowMap = (0..<(h + 2 * (kernel / 2))).map { reflectIndex($0 - kernel / 2, h) }
        colMap = (0..<(w + 2 * (kernel / 2))).map { reflectIndex($0 - kernel / 2, w) }
    }
}

/// Per-(batch, head) scratch: padded k − pe and v, the scaled query row and the attention weights of one row.
struct LocalAttentionWorkspace {
    let g: LocalAttentionGeometry
    let kp, vp: UnsafeMutablePointer<Float>   // [d][hp][wp]
    let qs: UnsafeMutablePointer<Float>       // [d][wo]
    let a: UnsafeMutablePointer<Float>        // [kk][wo]

    init(_ g: LocalAttentionGeometry) {
        self.g = g
        kp = .allocate(capacity: g.d * g.hp * g.wp)
        vp = .allocate(capacity: g.d * g.hp * g.wp)
        qs = .allocate(capacity: g.d * g.wo)
        a = .allocate(capacity: g.kk * g.wo)
    }

    func free() { kp.deallocate(); vp.deallocate(); qs.deallocate(); a.deallocate() }

    func zeroPadded() -> UnsafeMutablePointer<Float> {
        let t = UnsafeMutablePointer<Float>.allocate(capacity: g.d * g.hp * g.wp)
        t.update(repeating: 0, count: g.d * g.hp * g.wp)
        return t
    }

    /// Reflection-pads d channel planes of `src` (minus `sub`, the same-shaped pe, when given).
    func pad(_ src: UnsafePointer<Float>, minus sub: UnsafePointer<Float>?, into dst: UnsafeMutablePointer<Float>) {
        for c in 0..<g.d {
            let plane = src + c * g.h * g.w, sp = sub.map { $0 + c * g.h * g.w }
            for yp in 0..<g.hp {
                let row = plane + g.rowMap[yp] * g.w, out = dst + (c * g.hp + yp) * g.wp
                if let sp {
                    let srow = sp + g.rowMap[yp] * g.w
                    for xp in 0..<g.wp { out[xp] = row[g.colMap[xp]] - srow[g.colMap[xp]] }
                } else {
                    for xp in 0..<g.wp { out[xp] = row[g.colMap[xp]] }
                }
            }
        }
    }

    /// Adds a padded gradient back onto the unpadded planes (the adjoint of `pad`).
    func fold(_ src: UnsafePointer<Float>, into dst: UnsafeMutablePointer<Float>, sign: Float) {
        for c in 0..<g.d {
            let plane = dst + c * g.h * g.w
            for yp in 0..<g.hp {
                let row = plane + g.rowMap[yp] * g.w, inRow = src + (c * g.hp + yp) * g.wp
                for xp in 0..<g.wp { row[g.colMap[xp]] += sign * inRow[xp] }
            }
        }
    }

    /// Start of padded channel c's row for output row oy and tap t; element x·stride is the tap of query x.
    @inline(__always)
    func tap(_ t0: UnsafeMutablePointer<Float>, _ c: Int, _ oy: Int, _ t: Int) -> UnsafeMutablePointer<Float> {
        t0 + (c * g.hp + oy * g.s + t / g.kernel) * g.wp + t % g.kernel
    }

    /// Fills `qs` with the scaled queries of output row oy and `a` with their softmax weights over the taps.
    func attention(row oy: Int, q: UnsafePointer<Float>, scale: Float) {
        let wo = g.wo, s = g.s
        for c in 0..<g.d {
            let src = q + (c * g.h + oy * s) * g.w, dst = qs + c * wo
            for xo in 0..<wo { dst[xo] = src[xo * s] * scale }
        }
        a.update(repeating: 0, count: g.kk * wo)
        for c in 0..<g.d {
            let qrow = qs + c * wo
            for t in 0..<g.kk {
                let src = tap(kp, c, oy, t), lg = a + t * wo
                for xo in 0..<wo { lg[xo] += qrow[xo] * src[xo * s] }
            }
        }
        // Softmax over taps, vectorised across the row.
        let m = UnsafeMutablePointer<Float>.allocate(capacity: 2 * wo), sum = m + wo
        m.update(from: a, count: wo)
        for t in 1..<g.kk { let lg = a + t * wo; for xo in 0..<wo { m[xo] = max(m[xo], lg[xo]) } }
        sum.update(repeating: 0, count: wo)
        for t in 0..<g.kk { let lg = a + t * wo; for xo in 0..<wo { lg[xo] = fastExp(lg[xo] - m[xo]); sum[xo] += lg[xo] } }
        for xo in 0..<wo { sum[xo] = 1 / sum[xo] }
        for t in 0..<g.kk { let lg = a + t * wo; for xo in 0..<wo { lg[xo] *= sum[xo] } }
        m.deallocate()
    }
}
