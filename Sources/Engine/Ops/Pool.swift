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
            return out
        }
        var argmax = [Int32](repeating: 0, count: out.count)
        argmax.withUnsafeMutableBufferPointer { am in
            let am = am.baseAddress!
            parallelFor(n * c, cost: ho * wo * kernel * kernel) { p in
                let src = x + p * h * w
                for oh in 0..<ho {
                    for ow in 0..<wo {
                        var best = -Float.infinity, bi = -1
                        for ki in 0..<kernel {
                            let ih = oh * s - padding + ki
                            if ih < 0 || ih >= h { continue }
                            for kj in 0..<kernel {
                                let iw = ow * s - padding + kj
                                if iw < 0 || iw >= w { continue }
                                let v = src[ih * w + iw]
                                if v > best || bi < 0 || v.isNaN { best = v; bi = ih * w + iw }
                            }
                        }
                        y[(p * ho + oh) * wo + ow] = best
                        am[(p * ho + oh) * wo + ow] = Int32(bi)
                    }
                }
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
