/// The optimizers' per-element updates (measured kernels: NN keeps its checks, these loops run unchecked over
/// `count` elements of equally sized buffers, which NN's optimizers guarantee by construction).

/// SGD with weight decay and (Nesterov) momentum, as torch.optim.SGD; `first` fills the momentum buffer.
public func sgdUpdate(_ p: UnsafeMutablePointer<Float>, grad g: UnsafePointer<Float>, buffer b: UnsafeMutablePointer<Float>, count: Int,
                      lr: Float, weightDecay wd: Float, momentum m: Float, nesterov: Bool, first: Bool) {
    parallelChunks(count) { s, e in
        // Eight lanes at a time, each lane the scalar tail's operations in the same order (bit-identical results).
        let wd8 = SIMD8<Float>(repeating: wd), m8 = SIMD8<Float>(repeating: m), lr8 = SIMD8<Float>(repeating: lr)
        var j = s
        while j + 8 <= e {
            var d = load8(g + j) + wd8 * load8(p + j)
            if m != 0 {
                let bj = first ? d : m8 * load8(b + j) + d
                store8(bj, b + j)
                d = nesterov ? d + m8 * bj : bj
            }
            store8(load8(p + j) - lr8 * d, p + j)
            j += 8
        }
        while j < e {
            var d = g[j] + wd * p[j]
            if m != 0 {
                b[j] = first ? d : m * b[j] + d
                d = nesterov ? d + m * b[j] : b[j]
            }
            p[j] -= lr * d
            j += 1
        }
    }
}

/// AdamW with decoupled weight decay and bias-corrected moments, as torch.optim.AdamW.
public func adamwUpdate(_ p: UnsafeMutablePointer<Float>, grad g: UnsafePointer<Float>, expAvg m: UnsafeMutablePointer<Float>,
                        expAvgSq v: UnsafeMutablePointer<Float>, count: Int, decay: Float, beta1 b1: Float, beta2 b2: Float,
                        eps: Float, stepSize: Float, bc2Sqrt: Float) {
    parallelChunks(count) { s, e in
        // Eight lanes at a time (the scalar loop stayed scalar: a division and a square root per element), each lane
        // the scalar tail's operations in the same order, so results are bit-identical.
        let decay8 = SIMD8<Float>(repeating: decay), b18 = SIMD8<Float>(repeating: b1), b28 = SIMD8<Float>(repeating: b2)
        let c1 = SIMD8<Float>(repeating: 1 - b1), c2 = SIMD8<Float>(repeating: 1 - b2)
        let step8 = SIMD8<Float>(repeating: stepSize), bc8 = SIMD8<Float>(repeating: bc2Sqrt), eps8 = SIMD8<Float>(repeating: eps)
        var j = s
        while j + 8 <= e {
            let gj = load8(g + j)
            let mj = b18 * load8(m + j) + c1 * gj
            let vj = b28 * load8(v + j) + c2 * gj * gj
            store8(mj, m + j)
            store8(vj, v + j)
            store8(load8(p + j) * decay8 - step8 * mj / (vj.squareRoot() / bc8 + eps8), p + j)
            j += 8
        }
        for j in j..<e {
            p[j] *= decay
            m[j] = b1 * m[j] + (1 - b1) * g[j]
            v[j] = b2 * v[j] + (1 - b2) * g[j] * g[j]
            p[j] -= stepSize * m[j] / (v[j].squareRoot() / bc2Sqrt + eps)
        }
    }
}

/// Σ x² in Double with four independent accumulators (a serial Double sum waits on each add's latency: about 2 ms a
/// step over a 1.5M-parameter model's gradients).
public func sumOfSquares(_ x: UnsafePointer<Float>, count: Int) -> Double {
    var a0 = 0.0, a1 = 0.0, a2 = 0.0, a3 = 0.0
    var j = 0
    while j + 4 <= count {
        let x0 = Double(x[j]), x1 = Double(x[j + 1]), x2 = Double(x[j + 2]), x3 = Double(x[j + 3])
        a0 += x0 * x0; a1 += x1 * x1; a2 += x2 * x2; a3 += x3 * x3
        j += 4
    }
    while j < count { let v = Double(x[j]); a0 += v * v; j += 1 }
    return (a0 + a1) + (a2 + a3)
}
