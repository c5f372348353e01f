/// Sum, mean and max along axes. Each single-axis reduction views the tensor as [outer, r, inner].

extension Tensor {
    func normalizedAxis(_ a: Int) -> Int {
        let ax = a < 0 ? a + rank : a
        precondition(ax >= 0 && ax < rank, "axis \(a) out of range for shape \(shape)")
        return ax
    }

    /// (outer, r, inner) of a reduction along `axis`.
    func split(at axis: Int) -> (Int, Int, Int) {
        (shape[..<axis].reduce(1, *), shape[axis], shape[(axis + 1)...].reduce(1, *))
    }

    /// Sum over `axes` (all when empty), keeping reduced dims as size 1 when `keepDims`.
    public func sum(axes: [Int] = [], keepDims: Bool = false) -> Tensor {
        let ax = axes.isEmpty ? Array(0..<rank) : Set(axes.map(normalizedAxis)).sorted()
        var kept = shape
        for a in ax { kept[a] = 1 }
        let outShape = keepDims ? kept : shape.enumerated().filter { !ax.contains($0.offset) }.map(\.element)
        let out: Tensor
        if ax.count == rank || ax.isEmpty {
            out = Tensor(zeros: outShape)
            var acc = 0.0
            let d = data
            // Double accumulation: a 3-million-element loss sum must not drift.
            for i in 0..<count { acc += Double(d[i]) }
            out.data[0] = Float(acc)
        } else {
            var cur = self.detached()
            for a in ax.reversed() { cur = cur.sumAxis(a) }
            out = cur.reshape(outShape)
        }
        let inShape = shape
        return out.record("sum", [self]) { g in [g.reshape(kept).expand(inShape)] }
    }

    /// Sum along one axis, keeping it as size 1; records nothing.
    func sumAxis(_ axis: Int) -> Tensor {
        let (outer, r, inner) = split(at: axis)
        var s = shape; s[axis] = 1
        let out = Tensor(zeros: s)
        let x = data, y = out.data
        if inner == 1 {
            // Contiguous rows (a bias gradient's spatial sums): SIMD partial sums, not one serial chain per row.
            parallelFor(outer, cost: r) { o in y[o] = Engine.sum(x + o * r, r) }
            return out
        }
        if outer < Threads.count && inner >= 256 {
            // Few long rows to add up (a linear layer's bias gradient): split the columns instead.
            for o in 0..<outer {
                let yo = y + o * inner
                parallelChunks(inner, cost: r) { a, b in
                    for j in 0..<r {
                        let xo = x + (o * r + j) * inner
                        for i in a..<b { yo[i] += xo[i] }
                    }
                }
            }
            return out
        }
        parallelFor(outer, cost: r * inner) { o in
            let yo = y + o * inner
            for j in 0..<r {
                let xo = x + (o * r + j) * inner
                for i in 0..<inner { yo[i] += xo[i] }
            }
        }
        return out
    }

    public func mean(axes: [Int] = [], keepDims: Bool = false) -> Tensor {
        let ax = axes.isEmpty ? Array(0..<rank) : axes.map(normalizedAxis)
        let n = ax.reduce(1) { $0 * shape[$1] }
        return sum(axes: ax, keepDims: keepDims) * (1 / Float(n))
    }

    /// Max along one axis; the gradient goes to the first maximal element, as PyTorch's max(dim).
    public func max(axis: Int, keepDims: Bool = false) -> Tensor {
        let a = normalizedAxis(axis)
        let (outer, r, inner) = split(at: a)
        let (out, argmax) = maxAndArgmax(axis: a)
        let result = keepDims ? out : out.reshape(shape.enumerated().filter { $0.offset != a }.map(\.element))
        let inShape = shape
        return result.record("max", [self]) { g in
            let gx = Tensor(zeros: inShape)
            let gd = g.data, gxd = gx.data
            for o in 0..<outer { for i in 0..<inner { gxd[(o * r + Int(argmax[o * inner + i])) * inner + i] = gd[o * inner + i] } }
            return [gx]
        }
    }

    /// Index of the first maximal element along `axis` (torch.argmax), one per remaining position in row-major order;
    /// e.g. per-pixel class ids from [N, C, H, W] logits with axis 1.
    public func argmax(axis: Int) -> [Int32] { maxAndArgmax(axis: normalizedAxis(axis)).1 }

    /// Max along normalised axis `a` (kept as size 1) and the first index reaching it; records nothing.
    func maxAndArgmax(axis a: Int) -> (Tensor, [Int32]) {
        let (outer, r, inner) = split(at: a)
        var kept = shape; kept[a] = 1
        let out = Tensor(uninitialized: kept)
        var argmax = [Int32](repeating: 0, count: outer * inner)
        let x = data, y = out.data
        argmax.withUnsafeMutableBufferPointer { am in
            let am = am.baseAddress!
            parallelFor(outer, cost: r * inner) { o in
                for i in 0..<inner {
                    var best = x[o * r * inner + i], bj = 0
                    for j in 1..<Swift.max(r, 1) {
                        let v = x[(o * r + j) * inner + i]
                        if v > best { best = v; bj = j }
                    }
                    y[o * inner + i] = best; am[o * inner + i] = Int32(bj)
                }
            }
        }
        return (out, argmax)
    }

    /// Repeats size-1 dims up to `target` (leading dims may be added); the backward sums them back.
    public func expand(_ target: [Int]) -> Tensor {
        if shape == target { return self }
        precondition(broadcastShape(shape, target) == target, "cannot expand \(shape) to \(target)")
        let full = broadcastApply(Tensor(uninitialized: target), self, SecondFn())
        return full.record("expand", [self]) { [shape] g in [g.sumTo(shape)] }
    }
}
