/// Max, average and adaptive average pooling over NCHW (PyTorch semantics: floor mode, zero padding counted
/// by avg-pool as count_include_pad=True, padded cells never win a max).

extension Tensor {
    public func maxPool2d(kernel: Int, stride: Int? = nil, padding: Int = 0) -> Tensor {
        let s = stride ?? kernel
        let (n, c, h, w) = (shape[0], shape[1], shape[2], shape[3])
        let ho = (h + 2 * padding - kernel) / s + 1, wo = (w + 2 * padding - kernel) / s + 1
        let out = Tensor(uninitialized: [n, c, ho, wo])
        let x = data, y = out.data
        if !Tensor.needsGrad(self) {
            // No backward: separable max (rows, then columns) without argmax bookkeeping.
            parallelFor(n * c, cost: (h + ho) * wo * kernel) { p in
                let src = x + p * h * w, dst = y + p * ho * wo
                let rowMax = UnsafeMutablePointer<Float>.allocate(capacity: h * wo)
                defer { rowMax.deallocate() }
                for ih in 0..<h {
                    let r = src + ih * w, o = rowMax + ih * wo
                    for ow in 0..<wo {
                        let lo = Swift.max(0, ow * s - padding), hi = Swift.min(w, ow * s - padding + kernel)
                        var best = -Float.infinity
                        for iw in lo..<hi { let v = r[iw]; if v > best || v.isNaN { best = v } }
                        o[ow] = best
                    }
                }
                for oh in 0..<ho {
                    let lo = Swift.max(0, oh * s - padding), hi = Swift.min(h, oh * s - padding + kernel)
                    let o = dst + oh * wo
                    (o).update(from: rowMax + lo * wo, count: wo)
                    for ih in (lo + 1)..<Swift.max(lo + 1, hi) {
                        let r = rowMax + ih * wo
                        for ow in 0..<wo { let v = r[ow]; if v > o[ow] || v.isNaN { o[ow] = v } }
                    }
                }
            }
            OpProfile.forward("max_pool2d", [self])
            return out
        }
        var argmax = [Int32](repeating: 0, count: out.count)
        argmax.withUnsafeMutableBufferPointer { am in
            let am = am.baseAddress!
            parallelFor(n * c, cost: ho * wo * kernel * kernel) { p in
                maxPoolPlaneWithArgmax(x + p * h * w, h: h, w: w, kernel: kernel, stride: s, padding: padding,
                                       ho: ho, wo: wo, into: y + p * ho * wo, argmax: am + p * ho * wo)
            }
        }
        let inShape = shape
        return out.record("max_pool2d", [self]) { g in
            let gx = Tensor(zeros: inShape)
            let gd = g.data, gxd = gx.data
            parallelFor(n * c, cost: ho * wo) { p in
                for i in 0..<(ho * wo) { gxd[p * h * w + Int(argmax[p * ho * wo + i])] += gd[p * ho * wo + i] }
            }
            return [gx]
        }
    }

    public func avgPool2d(kernel: Int, stride: Int? = nil, padding: Int = 0) -> Tensor {
        let s = stride ?? kernel
        let (h, w) = (shape[2], shape[3])
        let ho = (h + 2 * padding - kernel) / s + 1, wo = (w + 2 * padding - kernel) / s + 1
        let windows = (0..<ho).map { oh in (oh * s - padding, oh * s - padding + kernel) }
        let cols = (0..<wo).map { ow in (ow * s - padding, ow * s - padding + kernel) }
        return windowMean(rows: windows, cols: cols, divisor: Float(kernel * kernel), name: "avg_pool2d")
    }

    /// PyTorch's adaptive average pooling: cell i spans [floor(i·H/out), ceil((i+1)·H/out)).
    public func adaptiveAvgPool2d(_ outH: Int, _ outW: Int) -> Tensor {
        let (h, w) = (shape[2], shape[3])
        let rows = (0..<outH).map { i in (i * h / outH, ((i + 1) * h + outH - 1) / outH) }
        let cols = (0..<outW).map { j in (j * w / outW, ((j + 1) * w + outW - 1) / outW) }
        FlopCounter.add("adaptive_avg_pool2d", count)   // fvcore: one per input element
        return windowMean(rows: rows, cols: cols, divisor: nil, name: "adaptive_avg_pool2d")
    }

    /// Mean over rectangular windows [r0, r1) × [c0, c1) (clipped to the map); divisor nil = window area after clipping.
    func windowMean(rows: [(Int, Int)], cols: [(Int, Int)], divisor: Float?, name: String) -> Tensor {
        let (n, c, h, w) = (shape[0], shape[1], shape[2], shape[3])
        let ho = rows.count, wo = cols.count
        let out = Tensor(uninitialized: [n, c, ho, wo])
        func scale(_ r: (Int, Int), _ q: (Int, Int)) -> Float {
            divisor.map { 1 / $0 } ?? 1 / Float((Swift.min(r.1, h) - Swift.max(r.0, 0)) * (Swift.min(q.1, w) - Swift.max(q.0, 0)))
        }
        let x = data, y = out.data
        parallelFor(n * c, cost: h * w) { p in
            let src = x + p * h * w
            for (oh, r) in rows.enumerated() {
                for (ow, q) in cols.enumerated() {
                    var acc: Float = 0
                    for ih in Swift.max(r.0, 0)..<Swift.min(r.1, h) { for iw in Swift.max(q.0, 0)..<Swift.min(q.1, w) { acc += src[ih * w + iw] } }
                    y[(p * ho + oh) * wo + ow] = acc * scale(r, q)
                }
            }
        }
        let inShape = shape
        return out.record(name, [self]) { g in
            let gx = Tensor(zeros: inShape)
            let gd = g.data, gxd = gx.data
            parallelFor(n * c, cost: h * w) { p in
                let dst = gxd + p * h * w
                for (oh, r) in rows.enumerated() {
                    for (ow, q) in cols.enumerated() {
                        let v = gd[(p * ho + oh) * wo + ow] * scale(r, q)
                        for ih in Swift.max(r.0, 0)..<Swift.min(r.1, h) { for iw in Swift.max(q.0, 0)..<Swift.min(q.1, w) { dst[ih * w + iw] += v } }
                    }
                }
            }
            return [gx]
        }
    }
}

/// One plane's max pool with PyTorch's argmax: taps in row-major window order, a later tap wins only when it is
/// greater or NaN, and a window whose values are all -inf points at its first valid cell (padding never wins).
/// Eight output columns at a time: each input row is split into `stride` phases padded with -inf on both sides
/// (phase m holds padded column i·stride + m), so tap (ki, kj) of columns ow…ow+7 is one contiguous load.
func maxPoolPlaneWithArgmax(_ src: UnsafePointer<Float>, h: Int, w: Int, kernel k: Int, stride s: Int, padding: Int,
                            ho: Int, wo: Int, into dst: UnsafeMutablePointer<Float>, argmax: UnsafeMutablePointer<Int32>) {
    let lanes = 8
    let blocks = (wo + lanes - 1) / lanes * lanes
    // Phase length: every tap of every (rounded-up) output column, kj / s past the column.
    let phaseLen = blocks + (k - 1) / s + 1
    let phases = UnsafeMutablePointer<Float>.allocate(capacity: h * s * phaseLen)
    let best = UnsafeMutablePointer<Float>.allocate(capacity: blocks)
    let index = UnsafeMutablePointer<Int32>.allocate(capacity: blocks)
    defer { phases.deallocate(); best.deallocate(); index.deallocate() }
    phases.update(repeating: -.infinity, count: h * s * phaseLen)
    for ih in 0..<h {
        let row = src + ih * w
        for m in 0..<s {
            let ph = phases + (ih * s + m) * phaseLen
            // padded column i·s + m is input column i·s + m − padding
            for i in 0..<phaseLen {
                let col = i * s + m - padding
                if col >= 0 && col < w { ph[i] = row[col] }
            }
        }
    }
    // First valid column of each output column's window, and the column index of tap 0.
    var first = [Int32](repeating: 0, count: blocks), col0 = SIMD8<Int32>()
    for ow in 0..<blocks { first[ow] = Int32(max(0, min(w - 1, ow * s - padding))) }
    for l in 0..<lanes { col0[l] = Int32(l * s - padding) }
    for oh in 0..<ho {
        let r0 = max(0, oh * s - padding), r1 = min(h, oh * s - padding + k)
        for ow in 0..<blocks { best[ow] = -.infinity; index[ow] = Int32(r0 * w) + first[ow] }
        for ih in r0..<r1 {
            for kj in 0..<k {
                let ph = phases + (ih * s + kj % s) * phaseLen + kj / s
                var ow = 0
                while ow < blocks {
                    let v = load8(ph + ow)
                    var b = load8(best + ow)
                    var i = UnsafeRawPointer(index + ow).loadUnaligned(as: SIMD8<Int32>.self)
                    let take = (v .> b) .| (v .!= v)
                    b.replace(with: v, where: take)
                    i.replace(with: col0 &+ Int32(ih * w + kj + ow * s), where: take)
                    store8(b, best + ow)
                    UnsafeMutableRawPointer(index + ow).storeBytes(of: i, as: SIMD8<Int32>.self)
                    ow += lanes
                }
            }
        }
        (dst + oh * wo).update(from: best, count: wo)
        (argmax + oh * wo).update(from: index, count: wo)
    }
}
