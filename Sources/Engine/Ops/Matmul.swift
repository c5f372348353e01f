/// Matrix products on sgemm: matmul (batched, with broadcasting of a 2-D right operand) and linear.

/// a [..., M, K] · b [..., K, N] → [..., M, N]. b may be 2-D (shared by every batch) or have a's batch dims.
public func matmul(_ a: Tensor, _ b: Tensor) -> Tensor {
    precondition(a.rank >= 2 && b.rank >= 2, "matmul needs rank ≥ 2, got \(a.shape) and \(b.shape)")
    let m = a.shape[a.rank - 2], k = a.shape[a.rank - 1], n = b.shape[b.rank - 1]
    precondition(b.shape[b.rank - 2] == k, "matmul: \(a.shape) · \(b.shape)")
    let batch = a.count / (m * k)
    let shared = b.rank == 2
    precondition(shared || b.count / (k * n) == batch, "matmul batch dims: \(a.shape) · \(b.shape)")
    let out = Tensor(uninitialized: Array(a.shape.dropLast()) + [n])
    FlopCounter.add("matmul", batch * m * n * k)
    if shared {
        sgemm(m: batch * m, n: n, k: k, a: a.data, lda: k, b: b.data, ldb: n, c: out.data, ldc: n)
    } else {
        for i in 0..<batch {
            sgemm(m: m, n: n, k: k, a: a.data + i * m * k, lda: k, b: b.data + i * k * n, ldb: n,
                  c: out.data + i * m * n, ldc: n)
        }
    }
    return out.record("matmul", [a, b]) { g in
        var ga: Tensor? = nil, gb: Tensor? = nil
        if a.requiresGrad {
            let t = Tensor(uninitialized: a.shape)
            if shared {
                sgemm(transB: true, m: batch * m, n: k, k: n, a: g.data, lda: n, b: b.data, ldb: n, c: t.data, ldc: k)
            } else {
                for i in 0..<batch {
                    sgemm(transB: true, m: m, n: k, k: n, a: g.data + i * m * n, lda: n, b: b.data + i * k * n, ldb: n,
                          c: t.data + i * m * k, ldc: k)
                }
            }
            ga = t
        }
        if b.requiresGrad {
            let t = Tensor(uninitialized: b.shape)
            if shared {
                sgemm(transA: true, m: k, n: n, k: batch * m, a: a.data, lda: k, b: g.data, ldb: n, c: t.data, ldc: n)
            } else {
                for i in 0..<batch {
                    sgemm(transA: true, m: k, n: n, k: m, a: a.data + i * m * k, lda: k, b: g.data + i * m * n, ldb: n,
                          c: t.data + i * k * n, ldc: n)
                }
            }
            gb = t
        }
        return [ga, gb]
    }
}

/// x [..., in] · weightᵀ + bias, with weight [out, in] as nn.Linear stores it. Passes that record no gradient run a
/// quantized model's layer in int8 (`Int8Inference`) and are seen by calibration's observer.
public func linear(_ x: Tensor, _ weight: Tensor, _ bias: Tensor? = nil) -> Tensor {
    let inF = weight.shape[1], outF = weight.shape[0]
    precondition(x.shape.last == inF, "linear: input \(x.shape) for weight \(weight.shape)")
    let rows = x.count / inF
    let out = Tensor(uninitialized: Array(x.shape.dropLast()) + [outF])
    FlopCounter.add("linear", rows * outF * inF, weight: weight)
    let inputs = [x, weight] + (bias.map { [$0] } ?? [])
    let inference = !GradMode.isEnabled || !inputs.contains(where: { $0.requiresGrad })
    // int8 (a quantized model's layer): a 1×1 convolution over `rows` images of `inF` channels is the same product.
    let int8 = inference && MixedPrecision.inference == .int8 && rows > 0 ? Int8Inference.model : nil
    let g = int8 == nil ? nil : Conv2dGeometry([rows, inF, 1, 1], [outF, inF, 1, 1])
    if let int8, let g, let q = int8.layer(for: weight.data, g) {
        int8ConvForward(g, x.data, q, bias?.data, out.data, epilogue: ConvEpilogue(), native: Int8Inference.native)
    } else {
        if let bias {
            let y = out.data, bd = bias.data
            parallelFor(rows, cost: outF) { r in (y + r * outF).update(from: bd, count: outF) }
        }
        sgemm(transB: true, m: rows, n: outF, k: inF, a: x.data, lda: inF, b: weight.data, ldb: inF,
              beta: bias == nil ? 0 : 1, c: out.data, ldc: outF)
    }
    if inference && rows > 0, let observer = Int8Inference.observer {
        observer.observe(weight: weight.data, groups: 1, input: UnsafeBufferPointer(start: x.data, count: x.count),
                         output: UnsafeBufferPointer(start: out.data, count: out.count))
    }
    return out.record("linear", inputs) { g in
        var gx: Tensor? = nil, gw: Tensor? = nil, gb: Tensor? = nil
        if x.requiresGrad {
            let t = Tensor(uninitialized: x.shape)
            sgemm(m: rows, n: inF, k: outF, a: g.data, lda: outF, b: weight.data, ldb: inF, c: t.data, ldc: inF)
            gx = t
        }
        if weight.requiresGrad {
            let t = Tensor(uninitialized: weight.shape)
            sgemm(transA: true, m: outF, n: inF, k: rows, a: g.data, lda: outF, b: x.data, ldb: inF, c: t.data, ldc: inF)
            gw = t
        }
        if let bias, bias.requiresGrad { gb = g.reshape([rows, outF]).sum(axes: [0]) }
        return [gx, gw, gb]
    }
}
