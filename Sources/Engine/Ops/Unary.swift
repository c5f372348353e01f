import Foundation

/// Pointwise math and activations with their derivatives.
extension Tensor {
    public func exp() -> Tensor {
        let y = map(self) { Foundation.exp($0) }
        return y.record("exp", [self]) { g in [zipMap(g, y) { $0 * $1 }] }
    }

    public func log() -> Tensor {
        map(self) { Foundation.log($0) }.record("log", [self]) { g in [zipMap(g, self) { $0 / $1 }] }
    }

    public func sqrt() -> Tensor {
        let y = map(self) { $0.squareRoot() }
        return y.record("sqrt", [self]) { g in [zipMap(g, y) { 0.5 * $0 / $1 }] }
    }

    public func pow(_ p: Float) -> Tensor {
        map(self) { Foundation.pow($0, p) }.record("pow", [self]) { g in
            [zipMap(g, self) { $0 * p * Foundation.pow($1, p - 1) }]
        }
    }

    public func abs() -> Tensor {
        map(self) { Swift.abs($0) }.record("abs", [self]) { g in
            [zipMap(g, self) { $1 > 0 ? $0 : ($1 < 0 ? -$0 : 0) }]
        }
    }

    public func relu() -> Tensor {
        let y = map(self) { $0 > 0 ? $0 : 0 }
        return y.record("relu", [self]) { g in [zipMap(g, y) { $1 > 0 ? $0 : 0 }] }
    }

    public func sigmoid() -> Tensor {
        let y = map(self) { 1 / (1 + Foundation.exp(-$0)) }
        return y.record("sigmoid", [self]) { g in [zipMap(g, y) { $0 * $1 * (1 - $1) }] }
    }

    public func tanh() -> Tensor {
        let y = map(self) { Foundation.tanh($0) }
        return y.record("tanh", [self]) { g in [zipMap(g, y) { $0 * (1 - $1 * $1) }] }
    }

    /// GELU in its exact form, x·Φ(x) with Φ the standard normal CDF (PyTorch's default, not the tanh approximation).
    public func gelu() -> Tensor {
        map(self) { 0.5 * $0 * (1 + erf($0 * 0.70710678118654752)) }.record("gelu", [self]) { g in
            [zipMap(g, self) { g, x in
                let cdf = 0.5 * (1 + erf(x * 0.70710678118654752))
                let pdf = Foundation.exp(-0.5 * x * x) * 0.39894228040143268
                return g * (cdf + x * pdf)
            }]
        }
    }

    /// Clamp to [lo, hi]; the gradient passes where the input was inside the range.
    public func clamp(min lo: Float = -.infinity, max hi: Float = .infinity) -> Tensor {
        map(self) { Swift.min(Swift.max($0, lo), hi) }.record("clamp", [self]) { g in
            [zipMap(g, self) { $1 >= lo && $1 <= hi ? $0 : 0 }]
        }
    }
}
