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
        if s == 1 {
            ws.scaleQueries(segment: 0, q: q, scale: scale)
            let seg = UnsafeMutablePointer<Float>.allocate(capacity: d * geo.lenBlocks)
            defer { seg.deallocate() }
            let taps = TapBlocks(geo)
            for i0 in stride(from: 0, to: geo.len, by: attentionBlock) {
                taps.weights(ws, at: i0)
                taps.weightedSum(taps.a, ws.vp, planeSize: geo.planeSize, d: d, at: i0, into: seg, pitch: geo.lenBlocks)
            }
            for c in 0..<d { ws.scatterSegment(seg + c * geo.lenBlocks, 0, into: o + c * geo.ho * geo.wo) }
            taps.free()
            return
        }
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
            if s == 1 {
                let taps = TapBlocks(geo)
                defer { taps.free() }
                taps.backward(ws, q: q, scale: scale, outputGradient: grad, gkp: gkp, gvp: gvp, gq: gq)
                ws.fold(gkp, into: gbase + (nd + hd * d) * h * w, sign: 1)
                ws.fold(gkp, into: gp + pair * d * h * w, sign: -1)
                ws.fold(gvp, into: gbase + (2 * nd + hd * d) * h * w, sign: 1)
                return
            }
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
    /// len rounded up to whole blocks of positions (the blocked stride-1 kernels' row pitch).
    let lenBlocks: Int
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
        lenBlocks = (len + attentionBlock - 1) / attentionBlock * attentionBlock
        // Slack past the last row: the last taps' reads, and a whole block of positions past the last segment.
        planeSize = hp * wp + kernel + attentionBlock
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
        qs = .allocate(capacity: g.d * g.lenBlocks)
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
            (out + g.hp * g.wp).update(repeating: 0, count: g.planeSize - g.hp * g.wp)
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

    /// Fills `qs` with the scaled queries of `segment` (pitch `lenBlocks` at stride 1, zero past the image).
    func scaleQueries(segment: Int, q: UnsafePointer<Float>, scale: Float) {
        let len = g.s == 1 ? g.lenBlocks : g.len
        for c in 0..<g.d {
            let dst = qs + c * len
            if g.s == 1 {
                for y in 0..<g.h {
                    let src = q + (c * g.h + y) * g.w, o = dst + y * g.wp
                    for x in 0..<g.w { o[x] = src[x] * scale }
                    (o + g.w).update(repeating: 0, count: g.wp - g.w)
                }
                (dst + g.len).update(repeating: 0, count: g.lenBlocks - g.len)
            } else {
                let src = q + (c * g.h + segment * g.s) * g.w
                for x in 0..<g.wo { dst[x] = src[x * g.s] * scale }
            }
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

/// Query positions per block of the stride-1 kernels: two eight-lane registers per tap.
let attentionBlock = 16

/// The stride-1 kernels, one block of 16 query positions at a time: the block's 49 logits (or gradients) per
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
        offsets = (0..<g.kk).map { ($0 / g.kernel) * g.wp + $0 % g.kernel }
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
    /// position 0 of rows with zero margins on both sides.
    func gatherAdjoint(_ w: UnsafePointer<Float>, _ x: UnsafePointer<Float>, pitch: Int, d: Int, at j0: Int,
                       into planes: UnsafeMutablePointer<Float>, planeSize: Int) {
        var c = 0
        while c < d {
            let n = min(4, d - c)
            var s0 = SIMD16<Float>(), s1 = SIMD16<Float>(), s2 = SIMD16<Float>(), s3 = SIMD16<Float>()
            let x0 = x + c * pitch + j0, x1 = x + (c + min(1, n - 1)) * pitch + j0
            let x2 = x + (c + min(2, n - 1)) * pitch + j0, x3 = x + (c + min(3, n - 1)) * pitch + j0
            for t in 0..<g.kk {
                let o = -offsets[t], wt = load16(w + t * pitch + j0 + o)
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

    /// The stride-1 backward of one (image, head): attention weights and logit gradients for every position (block by
    /// block), the query gradient, then the padded k − pe and v gradients in gather form. gkp and gvp are written
    /// whole (every padded position), gq accumulated.
    func backward(_ ws: LocalAttentionWorkspace, q: UnsafePointer<Float>, scale: Float, outputGradient: UnsafePointer<Float>,
                  gkp: UnsafeMutablePointer<Float>, gvp: UnsafeMutablePointer<Float>, gq: UnsafeMutablePointer<Float>) {
        let d = g.d, lenB = g.lenBlocks
        // Rows over positions −margin ..< span + margin, zero outside the segment: the gathers read off(t) before.
        let span = (g.hp * g.wp + attentionBlock - 1) / attentionBlock * attentionBlock
        let margin = (offsets.last! + attentionBlock - 1) / attentionBlock * attentionBlock
        let pitch = margin + max(span, lenB) + attentionBlock
        let rows = UnsafeMutablePointer<Float>.allocate(capacity: (2 * g.kk + 2 * d) * pitch)
        defer { rows.deallocate() }
        rows.update(repeating: 0, count: (2 * g.kk + 2 * d) * pitch)
        let aAll = rows + margin, glAll = aAll + g.kk * pitch, qw = glAll + g.kk * pitch, gw = qw + d * pitch
        let gqs = UnsafeMutablePointer<Float>.allocate(capacity: d * lenB)
        defer { gqs.deallocate() }
        ws.scaleQueries(segment: 0, q: q, scale: scale)
        for c in 0..<d {
            (qw + c * pitch).update(from: ws.qs + c * lenB, count: lenB)
            ws.gatherSegment(outputGradient + c * g.ho * g.wo, 0, into: gw + c * pitch)
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
        for c in 0..<d { ws.addQueryGradient(gqs + c * lenB, 0, scale: scale, into: gq + c * g.h * g.w) }
        for j0 in stride(from: 0, to: span, by: attentionBlock) {
            // gv[c][j] = Σ_t a[t][j − off]·g[c][j − off];  gk[c][j] = Σ_t gl[t][j − off]·q[c][j − off]
            gatherAdjoint(aAll, gw, pitch: pitch, d: d, at: j0, into: gvp, planeSize: g.planeSize)
            gatherAdjoint(glAll, qw, pitch: pitch, d: d, at: j0, into: gkp, planeSize: g.planeSize)
        }
    }

    /// grad ← a·(grad − Σ_t a·grad): the softmax backward over taps, per position.
    func softmaxBackward() {
        var dot = SIMD16<Float>()
        for t in 0..<g.kk { dot += load16(a + t * 16) * load16(grad + t * 16) }
        for t in 0..<g.kk { store16(load16(a + t * 16) * (load16(grad + t * 16) - dot), grad + t * 16) }
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

