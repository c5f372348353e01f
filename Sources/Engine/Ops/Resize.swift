/// Bilinear (align_corners=False) and nearest resize of NCHW maps, with PyTorch's source-index rules.

/// For each output index: the two source indices and the weight of the second (PyTorch's area_pixel_compute_source_index).
func bilinearTaps(out: Int, in n: Int, scale: Float?) -> [(Int, Int, Float)] {
    let s = scale.map { 1 / $0 } ?? Float(n) / Float(out)
    return (0..<out).map { i in
        let src = Swift.max((Float(i) + 0.5) * s - 0.5, 0)
        let i0 = Swift.min(Int(src), n - 1)
        let i1 = Swift.min(i0 + 1, n - 1)
        return (i0, i1, src - Float(i0))
    }
}

extension Tensor {
    /// Bilinear resize to (outH, outW); `scaleFactor` reproduces F.interpolate(scale_factor=...) index math.
    public func resizeBilinear(_ outH: Int, _ outW: Int, scaleFactor: (Float, Float)? = nil) -> Tensor {
        let (n, c, h, w) = (shape[0], shape[1], shape[2], shape[3])
        if outH == h && outW == w { return self }
        let rows = bilinearTaps(out: outH, in: h, scale: scaleFactor?.0)
        let cols = bilinearTaps(out: outW, in: w, scale: scaleFactor?.1)
        let out = Tensor(uninitialized: [n, c, outH, outW])
        let x = data, y = out.data
        // Separable: every source row is interpolated along W once (into `across`), then each output row blends two
        // of those; the same operations in the same order as interpolating each output pixel from its four taps.
        parallelFor(n * c, cost: outH * outW + h * outW) { p in
            let src = x + p * h * w, dst = y + p * outH * outW
            let across = UnsafeMutablePointer<Float>.allocate(capacity: h * outW)
            defer { across.deallocate() }
            for r in 0..<h {
                let s = src + r * w, a = across + r * outW
                for (ow, (c0, c1, cx)) in cols.enumerated() { a[ow] = s[c0] * (1 - cx) + s[c1] * cx }
            }
            for (oh, (r0, r1, ry)) in rows.enumerated() {
                let top = across + r0 * outW, bot = across + r1 * outW, d = dst + oh * outW
                for ow in 0..<outW { d[ow] = top[ow] * (1 - ry) + bot[ow] * ry }
            }
        }
        let inShape = shape
        return out.record("resize_bilinear", [self]) { g in
            let gx = Tensor(zeros: inShape)
            let gd = g.data, gxd = gx.data
            // The forward's transpose, also separable: output rows into source rows (along H), then along W.
            parallelFor(n * c, cost: outH * outW + h * outW) { p in
                let src = gd + p * outH * outW, dst = gxd + p * h * w
                let across = UnsafeMutablePointer<Float>.allocate(capacity: h * outW)
                defer { across.deallocate() }
                across.update(repeating: 0, count: h * outW)
                for (oh, (r0, r1, ry)) in rows.enumerated() {
                    let s = src + oh * outW, top = across + r0 * outW, bot = across + r1 * outW
                    for ow in 0..<outW { top[ow] += s[ow] * (1 - ry) }
                    for ow in 0..<outW { bot[ow] += s[ow] * ry }
                }
                for r in 0..<h {
                    let a = across + r * outW, d = dst + r * w
                    for (ow, (c0, c1, cx)) in cols.enumerated() { d[c0] += a[ow] * (1 - cx); d[c1] += a[ow] * cx }
                }
            }
            return [gx]
        }
    }

    /// Nearest resize (PyTorch 'nearest': source index floor(i·in/out)).
    public func resizeNearest(_ outH: Int, _ outW: Int) -> Tensor {
        let (h, w) = (shape[2], shape[3])
        if outH == h && outW == w { return self }
        let rows = (0..<outH).map { Swift.min(Int(Float($0) * Float(h) / Float(outH)), h - 1) }
        let cols = (0..<outW).map { Swift.min(Int(Float($0) * Float(w) / Float(outW)), w - 1) }
        let planes = shape[0] * shape[1]
        let out = Tensor(uninitialized: [shape[0], shape[1], outH, outW])
        let x = data, y = out.data
        parallelFor(planes, cost: outH * outW) { p in
            let src = x + p * h * w, dst = y + p * outH * outW
            for (oh, r) in rows.enumerated() {
                let s = src + r * w, d = dst + oh * outW
                for (ow, c) in cols.enumerated() { d[ow] = s[c] }
            }
        }
        let inShape = shape
        return out.record("resize_nearest", [self]) { g in
            // Each output row's gradient is summed into a source row, then rows into the plane: the same additions,
            // in the same order, as the index_select along W then H this op replaces.
            let gx = Tensor(zeros: inShape)
            let gd = g.data, gxd = gx.data
            parallelFor(planes, cost: outH * outW) { p in
                let src = gd + p * outH * outW, dst = gxd + p * h * w
                let row = UnsafeMutablePointer<Float>.allocate(capacity: w)
                defer { row.deallocate() }
                for (oh, r) in rows.enumerated() {
                    row.update(repeating: 0, count: w)
                    let s = src + oh * outW
                    for (ow, c) in cols.enumerated() { row[c] += s[ow] }
                    let d = dst + r * w
                    for i in 0..<w { d[i] += row[i] }
                }
            }
            return [gx]
        }
    }
}
