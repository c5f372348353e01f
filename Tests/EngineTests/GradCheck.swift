import XCTest
import Engine

/// Deterministic test values in [lo, hi).
func randomTensor(_ shape: [Int], seed: UInt64, lo: Float = -1, hi: Float = 1, requiresGrad: Bool = true) -> Tensor {
    var rng = SplitMix64(seed: seed)
    let n = shape.reduce(1, *)
    return Tensor((0..<n).map { _ in lo + (hi - lo) * Float(rng.uniform()) }, shape: shape, requiresGrad: requiresGrad)
}

/// Checks the analytic gradients of `f` against central finite differences of L = Σ f(inputs)·R for a fixed
/// random R (so every output element, and its sign, matters). Finite differences are taken in Float32 with a
/// step large enough for the rounding error, and compared with a tolerance well below a missing term's size.
func gradCheck(_ inputs: [Tensor], eps: Float = 1e-2, rtol: Float = 2e-2, atol: Float = 2e-3,
               file: StaticString = #filePath, line: UInt = #line, _ f: ([Tensor]) -> Tensor) {
    let probe = withNoGrad { f(inputs) }
    let r = randomTensor(probe.shape, seed: 99, lo: -1, hi: 1, requiresGrad: false)
    func loss() -> Double {
        let y = withNoGrad { f(inputs) }
        var s = 0.0
        for i in 0..<y.count { s += Double(y.data[i]) * Double(r.data[i]) }
        return s
    }
    for t in inputs { t.zeroGrad() }
    let y = f(inputs)
    (y * r).sum().backward()
    for (k, t) in inputs.enumerated() where t.requiresGrad {
        guard let g = t.grad else { XCTFail("input \(k) got no gradient", file: file, line: line); continue }
        XCTAssertEqual(g.shape, t.shape, file: file, line: line)
        for i in 0..<t.count {
            let saved = t.data[i]
            t.data[i] = saved + eps; let lp = loss()
            t.data[i] = saved - eps; let lm = loss()
            t.data[i] = saved
            let numeric = Float((lp - lm) / Double(2 * eps))
            let err = abs(numeric - g.data[i]) - (atol + rtol * abs(numeric))
            if err > 0 {
                XCTFail("input \(k) element \(i): analytic \(g.data[i]) vs numeric \(numeric)", file: file, line: line)
                return
            }
        }
    }
}

func assertClose(_ a: Tensor, _ b: [Float], tol: Float = 1e-5, file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(a.count, b.count, "element count", file: file, line: line)
    for i in 0..<min(a.count, b.count) where abs(a.data[i] - b[i]) > tol * max(1, abs(b[i])) {
        XCTFail("element \(i): \(a.data[i]) vs \(b[i])", file: file, line: line)
        return
    }
}
