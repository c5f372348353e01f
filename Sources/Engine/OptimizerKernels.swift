/// The optimizers' per-element updates (measured kernels: NN keeps its checks, these loops run unchecked over
/// `count` elements of equally sized buffers, which NN's optimizers guarantee by construction).

/// SGD with weight decay and (Nesterov) momentum, as torch.optim.SGD; `first` fills the momentum buffer.
public func sgdUpdate(_ p: UnsafeMutablePointer<Float>, grad g: UnsafePointer<Float>, buffer b: UnsafeMutablePointer<Float>, count: Int,
                      lr: Float, weightDecay wd: Float, momentum m: Float, nesterov: Bool, first: Bool) {
    parallelChunks(count) { s, e in
        for j in s..<e {
            var d = g[j] + wd * p[j]
            if m != 0 {
                b[j] = first ? d : m * b[j] + d
                d = nesterov ? d + m * b[j] : b[j]
            }
            p[j] -= lr * d
        }
    }
}

/// AdamW with decoupled weight decay and bias-corrected moments, as torch.optim.AdamW.
public func adamwUpdate(_ p: UnsafeMutablePointer<Float>, grad g: UnsafePointer<Float>, expAvg m: UnsafeMutablePointer<Float>,
                        expAvgSq v: UnsafeMutablePointer<Float>, count: Int, decay: Float, beta1 b1: Float, beta2 b2: Float,
                        eps: Float, stepSize: Float, bc2Sqrt: Float) {
    parallelChunks(count) { s, e in
        for j in s..<e {
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
