/// Broadcasting add, sub, mul, div (NumPy rules) with their backward passes.

/// The broadcast shape of two shapes, or a precondition failure naming both.
public func broadcastShape(_ a: [Int], _ b: [Int]) -> [Int] {
    let r = max(a.count, b.count)
    var out = [Int](repeating: 1, count: r)
    for i in 0..<r {
        let da = i < r - a.count ? 1 : a[i - (r - a.count)]
        let db = i < r - b.count ? 1 : b[i - (r - b.count)]
        precondition(da == db || da == 1 || db == 1, "cannot broadcast \(a) with \(b)")
        out[i] = max(da, db)
    }
    return out
}

/// Loop plan for a broadcast binary op: output dims with each input's strides (0 where broadcast),
/// adjacent dims merged wherever both inputs allow it, so the inner loop is as long as possible.
struct BroadcastPlan {
    var dims: [Int] = []
    var sa: [Int] = []
    var sb: [Int] = []

    init(_ a: [Int], _ b: [Int], _ out: [Int]) {
        let r = out.count
        func strides(_ s: [Int]) -> [Int] {
            let padded = [Int](repeating: 1, count: r - s.count) + s
            let c = contiguousStrides(padded)
            return (0..<r).map { padded[$0] == 1 && out[$0] != 1 ? 0 : c[$0] }
        }
        let fa = strides(a), fb = strides(b)
        for i in 0..<r where out[i] != 1 {
            if let last = dims.indices.last,
               sa[last] == fa[i] * out[i], sb[last] == fb[i] * out[i] {
                dims[last] *= out[i]; sa[last] = fa[i]; sb[last] = fb[i]
            } else {
                dims.append(out[i]); sa.append(fa[i]); sb.append(fb[i])
            }
        }
        if dims.isEmpty { dims = [1]; sa = [0]; sb = [0] }
    }
}

@inline(__always)
func broadcastApply<K: BinaryFn>(_ a: Tensor, _ b: Tensor, _ f: K) -> Tensor {
    if a.shape == b.shape { return zipMap(a, b, f) }
    let outShape = broadcastShape(a.shape, b.shape)
    let out = Tensor(uninitialized: outShape)
    let x = a.data, z = b.data, y = out.data
    if b.count == 1, a.count == out.count {
        let v = z[0]
        parallelChunks(out.count) { s, e in for i in s..<e { y[i] = f(x[i], v) } }
        return out
    }
    if a.count == 1, b.count == out.count {
        let v = x[0]
        parallelChunks(out.count) { s, e in for i in s..<e { y[i] = f(v, z[i]) } }
        return out
    }
    let plan = BroadcastPlan(a.shape, b.shape, outShape)
    let inner = plan.dims.last!, ia = plan.sa.last!, ib = plan.sb.last!
    let outer = out.count / inner
    let od = Array(plan.dims.dropLast()), oa = Array(plan.sa.dropLast()), ob = Array(plan.sb.dropLast())
    parallelChunks(outer, cost: inner) { s, e in
        for o in s..<e {
            // Offsets of row `o` in each input, from its multi-index over the outer dims.
            var rem = o, offA = 0, offB = 0
            for d in stride(from: od.count - 1, through: 0, by: -1) {
                let idx = rem % od[d]; rem /= od[d]
                offA += idx * oa[d]; offB += idx * ob[d]
            }
            let yo = y + o * inner
            if ia == 1 && ib == 1 {
                for i in 0..<inner { yo[i] = f(x[offA + i], z[offB + i]) }
            } else if ia == 1 && ib == 0 {
                let v = z[offB]
                for i in 0..<inner { yo[i] = f(x[offA + i], v) }
            } else if ia == 0 && ib == 1 {
                let v = x[offA]
                for i in 0..<inner { yo[i] = f(v, z[offB + i]) }
            } else {
                for i in 0..<inner { yo[i] = f(x[offA + i * ia], z[offB + i * ib]) }
            }
        }
    }
    return out
}

extension Tensor {
    /// Sums a broadcast gradient back to `shape` (the inverse of broadcasting).
    public func sumTo(_ target: [Int]) -> Tensor {
        if shape == target { return self }
        let lead = rank - target.count
        var axes: [Int] = Array(0..<lead)
        for i in 0..<target.count where target[i] == 1 && shape[lead + i] != 1 { axes.append(lead + i) }
        return sum(axes: axes, keepDims: true).reshape(target)
    }
}

// add and sub capture only shapes and flags: their backward needs no input values.
public func + (a: Tensor, b: Tensor) -> Tensor {
    let (sa, sb, ra, rb) = (a.shape, b.shape, a.requiresGrad, b.requiresGrad)
    return broadcastApply(a, b, AddFn()).record("add", [a, b]) { g in
        [ra ? g.sumTo(sa) : nil, rb ? g.sumTo(sb) : nil]
    }
}

public func - (a: Tensor, b: Tensor) -> Tensor {
    let (sa, sb, ra, rb) = (a.shape, b.shape, a.requiresGrad, b.requiresGrad)
    return broadcastApply(a, b, SubFn()).record("sub", [a, b]) { g in
        [ra ? g.sumTo(sa) : nil, rb ? (-g).sumTo(sb) : nil]
    }
}

public func * (a: Tensor, b: Tensor) -> Tensor {
    broadcastApply(a, b, MulFn()).record("mul", [a, b]) { g in
        [a.requiresGrad ? (g * b.detached()).sumTo(a.shape) : nil,
         b.requiresGrad ? (g * a.detached()).sumTo(b.shape) : nil]
    }
}

public func / (a: Tensor, b: Tensor) -> Tensor {
    broadcastApply(a, b, DivFn()).record("div", [a, b]) { g in
        let bd = b.detached()
        return [a.requiresGrad ? (g / bd).sumTo(a.shape) : nil,
                b.requiresGrad ? (broadcastApply(g, a.detached(), MulFn()) / (bd * bd)).negated().sumTo(b.shape) : nil]
    }
}

public prefix func - (a: Tensor) -> Tensor { a.negated() }

extension Tensor {
    public func negated() -> Tensor {
        map(self, AffineFn(scale: -1, shift: 0)).record("neg", [self]) { g in [map(g, AffineFn(scale: -1, shift: 0))] }
    }
}

// Scalar forms: the scalar is a constant.
public func + (a: Tensor, s: Float) -> Tensor { map(a, AffineFn(scale: 1, shift: s)).record("add_scalar", [a]) { g in [g] } }
public func + (s: Float, a: Tensor) -> Tensor { a + s }
public func - (a: Tensor, s: Float) -> Tensor { a + (-s) }
public func - (s: Float, a: Tensor) -> Tensor {
    map(a, AffineFn(scale: -1, shift: s)).record("rsub_scalar", [a]) { g in [map(g, AffineFn(scale: -1, shift: 0))] }
}
public func * (a: Tensor, s: Float) -> Tensor {
    map(a, AffineFn(scale: s, shift: 0)).record("mul_scalar", [a]) { g in [map(g, AffineFn(scale: s, shift: 0))] }
}
public func * (s: Float, a: Tensor) -> Tensor { a * s }
public func / (a: Tensor, s: Float) -> Tensor { a * (1 / s) }
