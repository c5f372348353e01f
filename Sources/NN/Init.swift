import Engine
import Foundation

/// Parameter initialisers (PyTorch's defaults), drawing from `EngineRandom`.
public enum Init {
    /// U(−bound, bound): PyTorch's default for conv/linear weights and biases is bound = 1/sqrt(fan_in).
    public static func uniform(_ shape: [Int], bound: Float) -> Tensor {
        let t = Tensor(uninitialized: shape)
        for i in 0..<t.count { t.data[i] = (2 * Float(EngineRandom.generator.uniform()) - 1) * bound }
        t.requiresGrad = true
        return t
    }

    /// N(0, std²) by Box–Muller.
    public static func normal(_ shape: [Int], std: Float, mean: Float = 0) -> Tensor {
        let t = Tensor(uninitialized: shape)
        for i in 0..<t.count {
            let u1 = max(Float(EngineRandom.generator.uniform()), 1e-7), u2 = Float(EngineRandom.generator.uniform())
            t.data[i] = mean + std * (-2 * _log(u1)).squareRoot() * _cos(2 * Float.pi * u2)
        }
        t.requiresGrad = true
        return t
    }

    /// Truncated normal as timm's trunc_normal_(std) with bounds ±2 (absolute), used for Swin tables and linears.
    public static func truncNormal(_ shape: [Int], std: Float) -> Tensor {
        let t = normal(shape, std: std)
        for i in 0..<t.count { t.data[i] = min(max(t.data[i], -2), 2) }
        return t
    }

    /// Kaiming normal (fan_out, ReLU), as torchvision initialises ResNet convolutions.
    public static func kaimingNormalFanOut(_ shape: [Int]) -> Tensor {
        let fanOut = shape[0] * shape.dropFirst(2).reduce(1, *)
        return normal(shape, std: (2 / Float(fanOut)).squareRoot())
    }

    public static func constant(_ shape: [Int], _ value: Float, trainable: Bool = true) -> Tensor {
        Tensor(zeros: shape, value: value, requiresGrad: trainable)
    }
}

@inline(__always) func _log(_ x: Float) -> Float { Float(log(Double(x))) }
@inline(__always) func _cos(_ x: Float) -> Float { Float(cos(Double(x))) }
