import Foundation

/// Pointwise math and activations with their derivatives.
extension Tensor {
    public func exp() -> Tensor {
        let y = map(self, ExpFn())
        let ys = y.detached()   // not y itself: y → node → closure → y would be a retain cycle
        return y.record("exp", [self]) { g in [zipMap(g, ys, MulFn())] }
    }

    public func log() -> Tensor {
        map(self) { Foundation.log($0) }.record("log", [self]) { g in [zipMap(g, self) { $0 / $1 }] }
    }

    public func sqrt() -> Tensor {
        let y = map(self) { $0.squareRoot() }
        let ys = y.detached()   // not y itself: y → node → closure → y would be a retain cycle
        return y.record("sqrt", [self]) { g in [zipMap(g, ys) { 0.5 * $0 / $1 }] }
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
        let y = map(self, ReLUFn())
        let ys = y.detached()   // not y itself: y → node → closure → y would be a retain cycle
        return y.record("relu", [self]) { g in [reluMasked(g, by: ys)] }
    }

    public func sigmoid() -> Tensor {
        let y = map(self, SigmoidFn())
        let ys = y.detached()   // not y itself: y → node → closure → y would be a retain cycle
        return y.record("sigmoid", [self]) { g in [zipMap(g, ys, SigmoidGradFn())] }
    }

    public func tanh() -> Tensor {
        let y = map(self) { Foundation.tanh($0) }
        let ys = y.detached()   // not y itself: y → node → closure → y would be a retain cycle
        return y.record("tanh", [self]) { g in [zipMap(g, ys) { $0 * (1 - $1 * $1) }] }
    }

    /// GELU in its exact form, x·Φ(x) with Φ the standard normal CDF (PyTorch's default, not the tanh approximation).
    public func gelu() -> Tensor {
        map(self, GELUFn()).record("gelu", [self]) { g in [zipMap(g, self, GELUGradFn())] }
    }

    /// Clamp to [lo, hi]; the gradient passes where the input was inside the range.
    public func clamp(min lo: Float = -.infinity, max hi: Float = .infinity) -> Tensor {
        map(self) { Swift.min(Swift.max($0, lo), hi) }.record("clamp", [self]) { g in
            [zipMap(g, self) { $1 >= lo && $1 <= hi ? $0 : 0 }]
        }
    }
}

struct ReLUFn: UnaryFn { @inline(__always) func callAsFunction(_ x: Float) -> Float { x > 0 ? x : 0 } }
struct ReLUGradFn: BinaryFn { @inline(__always) func callAsFunction(_ g: Float, _ y: Float) -> Float { y > 0 ? g : 0 } }
struct ExpFn: VectorUnaryFn {
    @inline(__always) func callAsFunction(_ x: Float) -> Float { fastExp(x) }
    @inline(__always) func callAsFunction(_ x: SIMD8<Float>) -> SIMD8<Float> { fastExp(x) }
}
struct SigmoidFn: VectorUnaryFn {
    @inline(__always) func callAsFunction(_ x: Float) -> Float { 1 / (1 + fastExp(-x)) }
    @inline(__always) func callAsFunction(_ x: SIMD8<Float>) -> SIMD8<Float> { 1 / (1 + fastExp(-x)) }
}
struct SigmoidGradFn: BinaryFn { @inline(__always) func callAsFunction(_ g: Float, _ y: Float) -> Float { g * y * (1 - y) } }
struct GELUFn: VectorUnaryFn {
    @inline(__always) func callAsFunction(_ x: Float) -> Float { geluExact(x) }
    @inline(__always) func callAsFunction(_ x: SIMD8<Float>) -> SIMD8<Float> { geluExact(x) }
    @inline(__always) func callAsFunction(_ x: SIMD16<Float>) -> SIMD16<Float> { geluExact(x) }
}
/// d/dx x·Φ(x) = Φ(x) + x·φ(x).
struct GELUGradFn: VectorBinaryFn {
    @inline(__always) func callAsFunction(_ g: Float, _ x: Float) -> Float { g * geluDerivative(SIMD8(repeating: x))[0] }
    @inline(__always) func callAsFunction(_ g: SIMD8<Float>, _ x: SIMD8<Float>) -> SIMD8<Float> { g * geluDerivative(x) }
}
