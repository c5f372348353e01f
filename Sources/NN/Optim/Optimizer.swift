import Engine
import Foundation

/// Parameters sharing optimisation settings (e.g. no weight decay on norms, biases and position tables).
public struct ParamGroup {
    public var params: [(String, Tensor)]
    public var weightDecay: Float
    public init(params: [(String, Tensor)], weightDecay: Float) { self.params = params; self.weightDecay = weightDecay }
}

/// Two parameter groups of a model's trainable parameters: with `weightDecay`, and without it for 1-D tensors (norm
/// weights, biases: mmdet's `norm_decay_mult = bias_decay_mult = 0`) when `noDecayOn1D`, and for keys containing
/// any of `noDecayKeys` (Swin's position tables: `custom_keys={...: decay_mult=0}`).
public func paramGroups(_ model: Module, weightDecay: Float, noDecayOn1D: Bool, noDecayKeys: [String]) -> [ParamGroup] {
    var decay: [(String, Tensor)] = [], noDecay: [(String, Tensor)] = []
    for (k, p) in model.trainableParameters() {
        if (noDecayOn1D && p.rank <= 1) || noDecayKeys.contains(where: { k.contains($0) }) { noDecay.append((k, p)) }
        else { decay.append((k, p)) }
    }
    return [ParamGroup(params: decay, weightDecay: weightDecay), ParamGroup(params: noDecay, weightDecay: 0)]
}

/// Common interface of SGD and AdamW. `state` exposes every buffer by name so checkpoints restore it exactly.
public protocol Optimizer: AnyObject {
    var lr: Float { get set }
    var groups: [ParamGroup] { get }
    func step()
    /// Optimizer buffers by name (e.g. "momentum_buffer.<param key>", "step").
    func stateTensors() -> [(String, Tensor)]
    func loadState(_ tensors: [String: Tensor]) throws
}

extension Optimizer {
    public func zeroGrad() { for g in groups { for (_, p) in g.params { p.zeroGrad() } } }

    /// Restores buffers saved by `stateTensors()`; every buffer must be present with the right shape.
    func restore(_ names: [(String, Tensor)], from tensors: [String: Tensor]) throws {
        for (name, t) in names {
            guard let src = tensors[name] else { throw KitError.stateDict(LoadReport(missing: [name]), source: "optimizer state") }
            guard src.count == t.count else {
                throw KitError.stateDict(LoadReport(mismatched: [(name, t.shape, src.shape)]), source: "optimizer state")
            }
            t.data.update(from: src.data, count: t.count)
        }
    }
}

/// Scales all gradients so their global L2 norm is at most `maxNorm`; returns the norm before clipping.
@discardableResult
public func clipGradNorm(_ params: [Tensor], maxNorm: Float) -> Float {
    var total = 0.0
    for p in params { if let g = p.grad { total += sumOfSquares(g.data, count: g.count) } }
    let norm = Float(total.squareRoot())
    let coef = maxNorm / (norm + 1e-6)
    if coef < 1 { for p in params { if let g = p.grad { for i in 0..<g.count { g.data[i] *= coef } } } }
    return norm
}

/// torch.optim.SGD: momentum, dampening 0, weight decay added to the gradient, optional Nesterov.
public final class SGD: Optimizer {
    public var lr: Float
    public let groups: [ParamGroup]
    public let momentum: Float, nesterov: Bool
    var buffers: [Tensor]
    var started: Tensor   // 0 until the first step fills the momentum buffers with the gradient, as PyTorch

    public init(_ groups: [ParamGroup], lr: Float, momentum: Float = 0.9, nesterov: Bool = false) {
        self.groups = groups; self.lr = lr; self.momentum = momentum; self.nesterov = nesterov
        buffers = groups.flatMap { $0.params.map { Tensor(zeros: $0.1.shape) } }
        started = Tensor(zeros: [])
    }

    public func step() {
        FrozenWeights.clear()   // packed copies of these weights would go stale
        var i = 0
        let first = started.data[0] == 0
        for g in groups {
            for (_, p) in g.params {
                defer { i += 1 }
                guard let grad = p.grad else { continue }
                precondition(grad.count == p.count && buffers[i].count == p.count, "SGD: buffer sizes differ for a parameter")
                sgdUpdate(p.data, grad: grad.data, buffer: buffers[i].data, count: p.count, lr: lr, weightDecay: g.weightDecay,
                          momentum: momentum, nesterov: nesterov, first: first)
            }
        }
        started.data[0] = 1
    }

    public func stateTensors() -> [(String, Tensor)] {
        var out: [(String, Tensor)] = [("started", started)]
        var i = 0
        for g in groups { for (k, _) in g.params { out.append(("momentum_buffer.\(k)", buffers[i])); i += 1 } }
        return out
    }

    public func loadState(_ tensors: [String: Tensor]) throws { try restore(stateTensors(), from: tensors) }
}

/// torch.optim.AdamW: decoupled weight decay, bias-corrected moments.
public final class AdamW: Optimizer {
    public var lr: Float
    public let groups: [ParamGroup]
    public let beta1: Float, beta2: Float, eps: Float
    var expAvg: [Tensor], expAvgSq: [Tensor]
    var stepCount: Tensor

    public init(_ groups: [ParamGroup], lr: Float, betas: (Float, Float) = (0.9, 0.999), eps: Float = 1e-8) {
        self.groups = groups; self.lr = lr; beta1 = betas.0; beta2 = betas.1; self.eps = eps
        expAvg = groups.flatMap { $0.params.map { Tensor(zeros: $0.1.shape) } }
        expAvgSq = groups.flatMap { $0.params.map { Tensor(zeros: $0.1.shape) } }
        stepCount = Tensor(zeros: [])
    }

    public func step() {
        FrozenWeights.clear()   // packed copies of these weights would go stale
        stepCount.data[0] += 1
        let t = Double(stepCount.data[0])
        let bc1 = Float(1 - Foundation.pow(Double(beta1), t)), bc2 = Float(1 - Foundation.pow(Double(beta2), t))
        let stepSize = lr / bc1, bc2Sqrt = bc2.squareRoot()
        var i = 0
        for g in groups {
            for (_, p) in g.params {
                defer { i += 1 }
                guard let grad = p.grad else { continue }
                precondition(grad.count == p.count && expAvg[i].count == p.count && expAvgSq[i].count == p.count,
                             "AdamW: buffer sizes differ for a parameter")
                adamwUpdate(p.data, grad: grad.data, expAvg: expAvg[i].data, expAvgSq: expAvgSq[i].data, count: p.count,
                            decay: 1 - lr * g.weightDecay, beta1: beta1, beta2: beta2, eps: eps, stepSize: stepSize, bc2Sqrt: bc2Sqrt)
            }
        }
    }

    public func stateTensors() -> [(String, Tensor)] {
        var out: [(String, Tensor)] = [("step", stepCount)]
        var i = 0
        for g in groups {
            for (k, _) in g.params { out.append(("exp_avg.\(k)", expAvg[i])); out.append(("exp_avg_sq.\(k)", expAvgSq[i])); i += 1 }
        }
        return out
    }

    public func loadState(_ tensors: [String: Tensor]) throws { try restore(stateTensors(), from: tensors) }
}
