/// Direct kernels for grouped convolutions with few inputs per output (depthwise, ACmix's shift convolution), where
/// an im2col and a tiny sgemm per group would cost far more than the arithmetic.
///
/// Undilated convolutions with equal strides run on "phase planes": the zero-padded input split into s² planes by
/// (row mod s, column mod s), each with the row pitch wq = ⌈padded width / s⌉. Output (oh, ow) of tap (ki, kj)
/// reads phase (ki mod s, kj mod s) at (oh + ki/s, ow + kj/s), so with the output laid out at the same pitch every
/// tap is one contiguous shifted read over the whole plane: each of the cg·kh·kw passes is a single long vectorised
/// loop (the few pitch columns past the output are computed and dropped). Other convolutions take the row-by-row
/// kernels.

extension Conv2dGeometry {
    var isPhased: Bool { dh == 1 && dw == 1 && sh == sw }
}

/// The phase-plane layout of one image-group's input channels.
struct PhasePlanes {
    let g: Conv2dGeometry
    /// Phases per dim, phase rows and pitch, floats per phase plane (with slack for the last taps), per channel.
    let s, hq, wq, plane, channel: Int
    /// Output positions per plane at pitch wq.
    var len: Int { g.ho * wq }

    init(_ g: Conv2dGeometry) {
        self.g = g
        s = g.sh
        hq = (g.h + 2 * g.ph + s - 1) / s
        wq = (g.w + 2 * g.pw + s - 1) / s
        plane = hq * wq + g.kw
        channel = s * s * plane
    }

    /// Where tap t's read of output position 0 starts, from a channel's first phase plane.
    @inline(__always)
    func tapOffset(_ t: Int) -> Int {
        let ki = t / g.kw, kj = t % g.kw
        return ((ki % s) * s + kj % s) * plane + (ki / s) * wq + kj / s
    }

    /// Fills `dst` (cg channels) from the planes of `src` [cg, h, w], zero elsewhere.
    func split(_ src: UnsafePointer<Float>, into dst: UnsafeMutablePointer<Float>) {
        dst.update(repeating: 0, count: g.cg * channel)
        for m in 0..<g.cg {
            let x = src + m * g.h * g.w, out = dst + m * channel
            for ih in 0..<g.h {
                let r = ih + g.ph, row = x + ih * g.w
                if s == 1 { (out + r * wq + g.pw).update(from: row, count: g.w); continue }
                for b in 0..<s {
                    // Columns iw with (iw + pw) mod s == b land in phase (r mod s, b) at column (iw + pw) / s.
                    let first = (b - g.pw % s + s) % s
                    let o = out + ((r % s) * s + b) * plane + (r / s) * wq + (first + g.pw) / s
                    var iw = first, k = 0
                    while iw < g.w { o[k] = row[iw]; iw += s; k += 1 }
                }
            }
        }
    }

    /// Adds the planes of `src` (cg channels) onto `dst` [cg, h, w] (the adjoint of `split`).
    func fold(_ src: UnsafePointer<Float>, into dst: UnsafeMutablePointer<Float>) {
        for m in 0..<g.cg {
            let x = dst + m * g.h * g.w, inp = src + m * channel
            for ih in 0..<g.h {
                let r = ih + g.ph, row = x + ih * g.w
                if s == 1 {
                    let p = inp + r * wq + g.pw
                    for c in 0..<g.w { row[c] += p[c] }
                    continue
                }
                for b in 0..<s {
                    let first = (b - g.pw % s + s) % s
                    let p = inp + ((r % s) * s + b) * plane + (r / s) * wq + (first + g.pw) / s
                    var iw = first, k = 0
                    while iw < g.w { row[iw] += p[k]; iw += s; k += 1 }
                }
            }
        }
    }
}

/// Forward on phase planes, accumulating into y.
func directForwardPhased(_ g: Conv2dGeometry, _ x: UnsafeMutablePointer<Float>, _ w: UnsafeMutablePointer<Float>,
                         _ y: UnsafeMutablePointer<Float>) {
    let pp = PhasePlanes(g), len = pp.len, hw = g.h * g.w, howo = g.ho * g.wo, kk = g.kh * g.kw
    let offsets = (0..<kk).map(pp.tapOffset)
    parallelFor(g.n * g.groups, cost: g.og * len * g.k) { item in
        let b = item / g.groups, group = item % g.groups
        let planes = UnsafeMutablePointer<Float>.allocate(capacity: g.cg * pp.channel)
        let acc = UnsafeMutablePointer<Float>.allocate(capacity: len)
        defer { planes.deallocate(); acc.deallocate() }
        pp.split(x + (b * g.c + group * g.cg) * hw, into: planes)
        for oc in (group * g.og)..<((group + 1) * g.og) {
            acc.update(repeating: 0, count: len)
            for m in 0..<g.cg {
                let wk = w + (oc * g.cg + m) * kk, base = planes + m * pp.channel
                for t in 0..<kk {
                    let wv = wk[t], src = base + offsets[t]
                    for i in 0..<len { acc[i] += wv * src[i] }
                }
            }
            let dst = y + (b * g.o + oc) * howo
            for r in 0..<g.ho {
                let o = dst + r * g.wo, a = acc + r * pp.wq
                for c in 0..<g.wo { o[c] += a[c] }
            }
        }
    }
}

/// Direct grouped kernel, accumulating into y: output channel o reads the cg input channels of its group, each
/// tap a shifted row added with one weight (vectorised over the row when the stride is 1).
func directForward(_ g: Conv2dGeometry, _ x: UnsafeMutablePointer<Float>, _ w: UnsafeMutablePointer<Float>,
                   _ y: UnsafeMutablePointer<Float>) {
    if g.isPhased { directForwardPhased(g, x, w, y); return }
    let howo = g.ho * g.wo, hw = g.h * g.w, kk = g.kh * g.kw
    parallelFor(g.n * g.o, cost: howo * g.k) { i in
        let b = i / g.o, oc = i % g.o, group = oc / g.og
        let dst = y + i * howo
        for m in 0..<g.cg {
            let src = x + (b * g.c + group * g.cg + m) * hw, wk = w + (oc * g.cg + m) * kk
            for ki in 0..<g.kh {
                for kj in 0..<g.kw {
                    let wv = wk[ki * g.kw + kj]
                    let (lo, hi) = validRange(g.wo, g.w, g.sw, g.pw, kj * g.dw)
                    if hi <= lo { continue }
                    for oh in 0..<g.ho {
                        let ih = oh * g.sh - g.ph + ki * g.dh
                        if ih < 0 || ih >= g.h { continue }
                        let s = src + ih * g.w - g.pw + kj * g.dw, d = dst + oh * g.wo
                        if g.sw == 1 { for ow in lo..<hi { d[ow] += wv * s[ow] } } else { for ow in lo..<hi { d[ow] += wv * s[ow * g.sw] } }
                    }
                }
            }
        }
    }
}

func directBackward(_ g: Conv2dGeometry, _ x: UnsafeMutablePointer<Float>, _ w: UnsafeMutablePointer<Float>,
                    _ gy: UnsafeMutablePointer<Float>, _ gx: UnsafeMutablePointer<Float>?, _ gw: UnsafeMutablePointer<Float>?) {
    if g.isPhased { directBackwardPhased(g, x, w, gy, gx, gw); return }
    let howo = g.ho * g.wo, hw = g.h * g.w, kk = g.kh * g.kw
    // Parallel over groups: each owns its input channels' gradients and its output channels' weights.
    parallelFor(g.groups, cost: g.n * g.og * howo * g.k * 2) { group in
        for b in 0..<g.n {
            for oc in (group * g.og)..<((group + 1) * g.og) {
                let gyo = gy + (b * g.o + oc) * howo
                for m in 0..<g.cg {
                    let ic = group * g.cg + m
                    let src = x + (b * g.c + ic) * hw
                    for ki in 0..<g.kh {
                        for kj in 0..<g.kw {
                            let (lo, hi) = validRange(g.wo, g.w, g.sw, g.pw, kj * g.dw)
                            if hi <= lo { continue }
                            let widx = (oc * g.cg + m) * kk + ki * g.kw + kj
                            let wv = w[widx]
                            var acc: Float = 0
                            for oh in 0..<g.ho {
                                let ih = oh * g.sh - g.ph + ki * g.dh
                                if ih < 0 || ih >= g.h { continue }
                                let off = ih * g.w - g.pw + kj * g.dw
                                let grow = gyo + oh * g.wo + lo
                                if gw != nil {
                                    acc += g.sw == 1 ? dot(grow, src + off + lo, hi - lo)
                                                     : (lo..<hi).reduce(0) { $0 + gyo[oh * g.wo + $1] * src[off + $1 * g.sw] }
                                }
                                if let gx {
                                    let d = gx + (b * g.c + ic) * hw + off
                                    if g.sw == 1 { for ow in lo..<hi { d[ow] += wv * gyo[oh * g.wo + ow] } }
                                    else { for ow in lo..<hi { d[ow * g.sw] += wv * gyo[oh * g.wo + ow] } }
                                }
                            }
                            if let gw { gw[widx] += acc }
                        }
                    }
                }
            }
        }
    }
}

/// Backward on phase planes: with the output gradient laid out at the phase pitch (zeros in the pitch columns), the
/// weight gradient of a tap is one long dot product with a shifted phase plane and the input gradient of a tap one
/// long shifted axpy into phase-plane gradients, folded back at the end. Parallel over (image, group) pairs; the
/// weight gradients of several images are summed after, in a fixed order.
func directBackwardPhased(_ g: Conv2dGeometry, _ x: UnsafeMutablePointer<Float>, _ w: UnsafeMutablePointer<Float>,
                          _ gy: UnsafeMutablePointer<Float>, _ gx: UnsafeMutablePointer<Float>?,
                          _ gw: UnsafeMutablePointer<Float>?) {
    let pp = PhasePlanes(g), len = pp.len, hw = g.h * g.w, howo = g.ho * g.wo, kk = g.kh * g.kw
    let offsets = (0..<kk).map(pp.tapOffset)
    let items = g.n * g.groups, wPerGroup = g.og * g.cg * kk
    let partial = gw != nil && g.n > 1 ? UnsafeMutablePointer<Float>.allocate(capacity: items * wPerGroup) : nil
    defer { partial?.deallocate() }
    parallelFor(items, cost: g.og * len * g.k * 2) { item in
        let b = item / g.groups, group = item % g.groups
        let planes = gw != nil ? UnsafeMutablePointer<Float>.allocate(capacity: g.cg * pp.channel) : nil
        let grads = gx != nil ? UnsafeMutablePointer<Float>.allocate(capacity: g.cg * pp.channel) : nil
        let gyp = UnsafeMutablePointer<Float>.allocate(capacity: g.og * len)
        defer { planes?.deallocate(); grads?.deallocate(); gyp.deallocate() }
        if let planes { pp.split(x + (b * g.c + group * g.cg) * hw, into: planes) }
        grads?.update(repeating: 0, count: g.cg * pp.channel)
        gyp.update(repeating: 0, count: g.og * len)
        for j in 0..<g.og {
            let src = gy + (b * g.o + group * g.og + j) * howo, dst = gyp + j * len
            for r in 0..<g.ho { (dst + r * pp.wq).update(from: src + r * g.wo, count: g.wo) }
        }
        let gwOut = gw.map { gw in partial.map { $0 + item * wPerGroup } ?? gw + group * wPerGroup }
        for j in 0..<g.og {
            let oc = group * g.og + j, gyj = gyp + j * len
            for m in 0..<g.cg {
                let wk = w + (oc * g.cg + m) * kk
                for t in 0..<kk {
                    if let gwOut, let planes { gwOut[(j * g.cg + m) * kk + t] = dot(gyj, planes + m * pp.channel + offsets[t], len) }
                    if let grads {
                        let wv = wk[t], dst = grads + m * pp.channel + offsets[t]
                        for i in 0..<len { dst[i] += wv * gyj[i] }
                    }
                }
            }
        }
        if let grads, let gx { pp.fold(grads, into: gx + (b * g.c + group * g.cg) * hw) }
    }
    if let gw, let partial {
        parallelFor(g.groups, cost: g.n * wPerGroup) { group in
            let out = gw + group * wPerGroup
            for b in 0..<g.n {
                let p = partial + (b * g.groups + group) * wPerGroup
                for i in 0..<wPerGroup { out[i] += p[i] }
            }
        }
    }
}
