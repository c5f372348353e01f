import Dispatch
import Foundation

/// The ACmix convolution path as one fused kernel on channels-last q/k/v (see `acmixConvPath`), and the learned
/// rate1/rate2 mix of the two paths.

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
    FlopCounter.add("conv", b * h * w * hd * g3 * kk, weight: fcWeight)   // fc: 3·heads → k² maps per channel
    FlopCounter.add("conv", b * h * w * c * kk * k * k, weight: depWeight)   // dep_conv: k² maps, k×k taps per output
    let inputs = [qkv, fcWeight, depWeight] + (fcBias.map { [$0] } ?? [])
    if hd % 8 == 0 && (!GradMode.isEnabled || !inputs.contains(where: { $0.requiresGrad })) {
        return acmixConvPathChannelsLast(qkv, heads: heads, fcWeight: fcWeight, fcBias: fcBias, depWeight: depWeight)
    }
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
                            td[(o * kk + j) * kk + tap] += dot(gp, src + geo.tapOffset(tap, k), span)
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

/// `acmixConvPath` with nothing to differentiate, from channels-last q/k/v to channels-last output with no layout
/// changes (which cost the planar form as much as its convolution at inference); hd a multiple of 8. The fc maps go
/// to zero-bordered planes of eight-channel vectors, (B, hd/8, H+2p, W+2p, k², 8): for one group of eight channels,
/// a tile's neighbourhood and its weights then fit in L1. The grouped conv runs in tiles of three pixels × three
/// heads × those eight channels.
func acmixConvPathChannelsLast(_ qkv: Tensor, heads: Int, fcWeight: Tensor, fcBias: Tensor?, depWeight: Tensor) -> Tensor {
    let (b, h, w, c3) = (qkv.shape[0], qkv.shape[1], qkv.shape[2], qkv.shape[3])
    let c = c3 / 3, hd = c / heads, g3 = 3 * heads, dv = hd / 8
    let kk = fcWeight.shape[0], k = depWeight.shape[3], pad = k / 2
    let hp = h + 2 * pad, wp = w + 2 * pad, pix = kk * 8   // floats per bordered pixel of one channel group
    let f = Tensor(uninitialized: [b, dv, hp, wp, kk, 8])
    let x = qkv.data, fd = f.data, fw = fcWeight.data, fb = fcBias?.data
    let group = hp * wp * pix   // one channel group's bordered planes
    parallelFor(b * hp, cost: wp * kk * g3 * hd) { r in
        let bi = r / hp, y = r % hp
        for v in 0..<dv {
            let row = fd + (bi * dv + v) * group + y * wp * pix
            if y < pad || y >= h + pad { row.update(repeating: 0, count: wp * pix); continue }
            row.update(repeating: 0, count: pad * pix)
            (row + (w + pad) * pix).update(repeating: 0, count: pad * pix)
        }
        if y < pad || y >= h + pad { return }
        let src = x + ((bi * h + y - pad) * w) * c3, dst = fd + bi * dv * group + (y * wp + pad) * pix
        for xi in 0..<w {
            fcPixel(src + xi * c3, groups: g3, hd: hd, weight: fw, bias: fb, maps: kk, into: dst + xi * pix, groupStride: group)
        }
    }
    // wt[m, v, j, t, l] = depWeight[(8v + l)·heads + m, j, t]: one head's weights for one channel group side by side.
    let wt = Tensor(uninitialized: [heads, dv, kk, kk, 8])
    let wd = depWeight.data, wtd = wt.data
    for o in 0..<c {
        let d = o / heads, m = o % heads
        for jt in 0..<(kk * kk) { wtd[((m * dv + d / 8) * kk * kk + jt) * 8 + d % 8] = wd[o * kk * kk + jt] }
    }
    var taps = [Int](repeating: 0, count: kk)
    for t in 0..<kk { taps[t] = ((t / k) * wp + t % k) * pix }
    let out = Tensor(uninitialized: [b, h, w, c])
    let od = out.data
    let headWeights = dv * kk * kk * 8
    taps.withUnsafeBufferPointer { tp in
        let taps = tp.baseAddress!
        parallelFor(b * h * dv, cost: w * c * kk * kk) { i in
            let row = i / dv, v = i % dv, bi = row / h, y = row % h
            let src = fd + (bi * dv + v) * group + y * wp * pix, dst = od + row * w * c + 8 * v * heads
            let weights = wtd + v * kk * kk * 8
            guard heads >= 3 && w >= 3 else {
                for xi in 0..<w {
                    for m in 0..<heads {
                        depPixel(src + xi * pix, weights: weights + m * headWeights, maps: kk, taps: taps, out: dst + xi * c + m, heads: heads)
                    }
                }
                return
            }
            // The last three heads (and the last tile of a row) overlap the ones before rather than leave a remainder:
            // this task recomputes a few of its own outputs with the same result.
            var h0 = 0
            while h0 < heads {
                let m0 = min(h0, heads - 3)
                var x0 = 0
                while x0 < w {
                    let xi = min(x0, w - 3)
                    depTile3x3(src + xi * pix, pix: pix, weights: weights + m0 * headWeights, headStride: headWeights, maps: kk,
                               taps: taps, out: dst + xi * c + m0, c: c, heads: heads)
                    x0 += 3
                }
                h0 += 3
            }
        }
    }
    OpProfile.forward("acmix_conv_path", [qkv, fcWeight, depWeight])
    return out
}

/// One pixel's fc: dst[v][j, l] = bias[j] + Σ_g weight[j, g] · src[g, 8v + l] for the k² maps j, src holding 3·heads
/// groups of hd channels; channel group v's maps at dst + v·groupStride.
@inline(__always)
private func fcPixel(_ src: UnsafePointer<Float>, groups g3: Int, hd: Int, weight: UnsafePointer<Float>,
                     bias: UnsafePointer<Float>?, maps: Int, into dst: UnsafeMutablePointer<Float>, groupStride: Int) {
    typealias V = SIMD8<Float>
    for j in 0..<maps {
        let wj = weight + j * g3, bj = bias?[j] ?? 0, dj = dst + j * 8
        var d = 0
        while d + 32 <= hd {
            var a0 = V(repeating: bj), a1 = a0, a2 = a0, a3 = a0
            for g in 0..<g3 {
                let wv = V(repeating: wj[g]), s = src + g * hd + d
                a0 = a0.addingProduct(wv, load8(s)); a1 = a1.addingProduct(wv, load8(s + 8))
                a2 = a2.addingProduct(wv, load8(s + 16)); a3 = a3.addingProduct(wv, load8(s + 24))
            }
            let o = dj + d / 8 * groupStride
            store8(a0, o); store8(a1, o + groupStride); store8(a2, o + 2 * groupStride); store8(a3, o + 3 * groupStride)
            d += 32
        }
        while d < hd {
            var a = V(repeating: bj)
            for g in 0..<g3 { a = a.addingProduct(V(repeating: wj[g]), load8(src + g * hd + d)) }
            store8(a, dj + d / 8 * groupStride)
            d += 8
        }
    }
}

/// Three neighbouring pixels × three heads × one group of eight channels of the grouped conv:
/// out[p, (8v+l)·heads + m] = Σ_j Σ_t weights[m, j, t, l] · src[p + taps[t], j, l]. `src` points at the first pixel's
/// top-left tap; `weights` at head m0's. Nine accumulators, three weights and a source vector fit AVX2's sixteen
/// registers (a tile of four pixels spilled its twelve).
@inline(__always)
private func depTile3x3(_ src: UnsafePointer<Float>, pix: Int, weights: UnsafePointer<Float>, headStride hs: Int, maps: Int,
                        taps: UnsafePointer<Int>, out: UnsafeMutablePointer<Float>, c: Int, heads: Int) {
    typealias V = SIMD8<Float>
    var a00 = V(), a01 = V(), a02 = V(), a10 = V(), a11 = V(), a12 = V(), a20 = V(), a21 = V(), a22 = V()
    for j in 0..<maps {
        for t in 0..<maps {
            let s = src + taps[t] + j * 8, wv = weights + (j * maps + t) * 8
            let w0 = load8(wv), w1 = load8(wv + hs), w2 = load8(wv + 2 * hs)
            var f = load8(s)
            a00 = a00.addingProduct(w0, f); a01 = a01.addingProduct(w1, f); a02 = a02.addingProduct(w2, f)
            f = load8(s + pix)
            a10 = a10.addingProduct(w0, f); a11 = a11.addingProduct(w1, f); a12 = a12.addingProduct(w2, f)
            f = load8(s + 2 * pix)
            a20 = a20.addingProduct(w0, f); a21 = a21.addingProduct(w1, f); a22 = a22.addingProduct(w2, f)
        }
    }
    // Output channel (8v+l)·heads + m: lanes go out `heads` apart.
    @inline(__always) func put(_ a: V, _ o: UnsafeMutablePointer<Float>) { for l in 0..<8 { o[l * heads] = a[l] } }
    put(a00, out); put(a01, out + 1); put(a02, out + 2)
    put(a10, out + c); put(a11, out + c + 1); put(a12, out + c + 2)
    put(a20, out + 2 * c); put(a21, out + 2 * c + 1); put(a22, out + 2 * c + 2)
}

/// The grouped conv for one pixel, one head and one group of eight channels (maps with fewer than three heads or
/// columns).
@inline(__always)
private func depPixel(_ src: UnsafePointer<Float>, weights: UnsafePointer<Float>, maps: Int, taps: UnsafePointer<Int>,
                      out: UnsafeMutablePointer<Float>, heads: Int) {
    var a = SIMD8<Float>()
    for j in 0..<maps {
        for t in 0..<maps { a = a.addingProduct(load8(weights + (j * maps + t) * 8), load8(src + taps[t] + j * 8)) }
    }
    for l in 0..<8 { out[l * heads] = a[l] }
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
        func gradDot(_ p: UnsafeMutablePointer<Float>) -> Tensor {
            // Fixed blocks (the same sum whatever the thread count): SIMD dots in float, added up in double.
            let block = 1024, blocks = (n + block - 1) / block
            var partial = [Double](repeating: 0, count: blocks)
            partial.withUnsafeMutableBufferPointer { pp in
                let pp = pp.baseAddress!
                parallelFor(blocks, cost: block) { i in pp[i] = Double(dot(gd + i * block, p + i * block, Swift.min(block, n - i * block))) }
            }
            return Tensor(zeros: wa.shape, value: Float(partial.reduce(0, +)))
        }
        return [a.requiresGrad ? g * u : nil, wa.requiresGrad ? gradDot(ad) : nil,
                b.requiresGrad ? g * v : nil, wb.requiresGrad ? gradDot(bd) : nil]
    }
}
