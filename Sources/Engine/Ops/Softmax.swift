import Foundation

/// Softmax and log-softmax along any axis, viewing the tensor as [outer, r, inner].
extension Tensor {
    public func softmax(axis: Int) -> Tensor {
        let a = normalizedAxis(axis)
        let (outer, r, inner) = split(at: a)
        let y = softmaxKernel(outer, r, inner, log: false)
        let ys = y.detached()   // not y itself: y → node → closure → y would be a retain cycle
        return y.record("softmax", [self]) { g in
            // gx = y·(g − Σ g·y)
            let gx = Tensor(uninitialized: ys.shape)
            let gd = g.data, yd = ys.data, xd = gx.data
            parallelFor(outer * inner, cost: r) { p in
                let o = p / inner, i = p % inner, base = o * r * inner + i
                var dot: Float = 0
                for j in 0..<r { dot += gd[base + j * inner] * yd[base + j * inner] }
                for j in 0..<r { let k = base + j * inner; xd[k] = yd[k] * (gd[k] - dot) }
            }
            return [gx]
        }
    }

    public func logSoftmax(axis: Int) -> Tensor {
        let a = normalizedAxis(axis)
        let (outer, r, inner) = split(at: a)
        let y = softmaxKernel(outer, r, inner, log: true)
        let ys = y.detached()   // not y itself: y → node → closure → y would be a retain cycle
        return y.record("log_softmax", [self]) { g in
            // gx = g − softmax·Σ g
            let gx = Tensor(uninitialized: ys.shape)
            let gd = g.data, yd = ys.data, xd = gx.data
            parallelFor(outer * inner, cost: r) { p in
                let o = p / inner, i = p % inner, base = o * r * inner + i
                var s: Float = 0
                for j in 0..<r { s += gd[base + j * inner] }
                for j in 0..<r { let k = base + j * inner; xd[k] = gd[k] - fastExp(yd[k]) * s }
            }
            return [gx]
        }
    }

    func softmaxKernel(_ outer: Int, _ r: Int, _ inner: Int, log: Bool) -> Tensor {
        let out = Tensor(uninitialized: shape)
        let x = data, y = out.data
        if inner == 1 {
            // Contiguous rows (the common last-axis case): three vectorisable passes per row.
            parallelFor(outer, cost: r * 4) { o in
                let xr = x + o * r, yr = y + o * r
                let m = maxElement(xr, r)
                let s = expShifted(xr, yr, r, minus: m)
                if log {
                    let ls = Foundation.log(s) + m
                    for j in 0..<r { yr[j] = xr[j] - ls }
                } else {
                    let inv = 1 / s
                    for j in 0..<r { yr[j] *= inv }
                }
            }
            return out
        }
        parallelFor(outer * inner, cost: r) { p in
            let o = p / inner, i = p % inner, base = o * r * inner + i
            var m = -Float.infinity
            for j in 0..<r { m = Swift.max(m, x[base + j * inner]) }
            var s: Float = 0
            for j in 0..<r { let e = fastExp(x[base + j * inner] - m); y[base + j * inner] = e; s += e }
            if log {
                let ls = Foundation.log(s) + m
                for j in 0..<r { y[base + j * inner] = x[base + j * inner] - ls }
            } else {
                let inv = 1 / s
                for j in 0..<r { y[base + j * inner] *= inv }
            }
        }
        return out
    }
}
