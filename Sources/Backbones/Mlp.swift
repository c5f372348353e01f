import Engine
import NN

/// Swin's feed-forward block: fc1 → GELU (exact erf form) → fc2. Dropout is 0 in every released config,
/// so it is omitted. Input [..., C] → [..., C].
public final class Mlp: Module {
    public let fc1: Linear
    public let fc2: Linear

    public init(_ dim: Int, hidden: Int) {
        fc1 = Linear(dim, hidden)
        fc2 = Linear(hidden, dim)
        // timm/Swin initialisation: trunc_normal(std 0.02) weights, zero biases.
        swinInitLinear(fc1)
        swinInitLinear(fc2)
    }

    public func callAsFunction(_ x: Tensor) -> Tensor { fc2(fc1(x).gelu()) }
}

/// Swin's `_init_weights` for a Linear: weight ~ trunc_normal(0, 0.02), bias = 0.
func swinInitLinear(_ l: Linear) {
    l.weight.assign(Init.truncNormal(l.weight.shape, std: 0.02))
    l.bias?.fill(0)
}
