import Foundation

/// Losses with PyTorch/mmdetection semantics. Elementwise ones take a `Reduction`.
public enum Reduction { case none, sum, mean }

extension Tensor {
    func reduced(_ r: Reduction) -> Tensor {
        switch r { case .none: return self; case .sum: return sum(); case .mean: return mean() }
    }
}

/// Cross-entropy of logits [N, C, ...] against class indices (N·... of them), skipping `ignoreIndex`;
/// the mean is weighted by the optional class weights, as torch.nn.functional.cross_entropy.
public func crossEntropy(_ logits: Tensor, _ target: [Int32], ignoreIndex: Int32 = -100, weight: [Float]? = nil) -> Tensor {
    let n = logits.shape[0], c = logits.shape[1], s = logits.count / (n * c)
    precondition(target.count == n * s, "cross_entropy: \(target.count) targets for logits \(logits.shape)")
    let x = logits.data
    var total = 0.0, wsum = 0.0
    for b in 0..<n {
        for i in 0..<s {
            let t = target[b * s + i]
            if t == ignoreIndex { continue }
            precondition(t >= 0 && Int(t) < c, "cross_entropy: target \(t) outside 0..<\(c)")
            var m = -Float.infinity
            for k in 0..<c { m = max(m, x[(b * c + k) * s + i]) }
            var se: Float = 0
            for k in 0..<c { se += Foundation.exp(x[(b * c + k) * s + i] - m) }
            let w = Double(weight?[Int(t)] ?? 1)
            total += w * Double(Foundation.log(se) + m - x[(b * c + Int(t)) * s + i])
            wsum += w
        }
    }
    let out = Tensor(scalar: wsum > 0 ? Float(total / wsum) : .nan)
    return out.record("cross_entropy", [logits]) { g in
        let gx = Tensor(zeros: logits.shape)
        let gd = gx.data, scale = g.item / Float(max(wsum, 1e-30))
        parallelFor(n * s, cost: c) { p in
            let b = p / s, i = p % s, t = target[p]
            if t == ignoreIndex { return }
            var m = -Float.infinity
            for k in 0..<c { m = max(m, x[(b * c + k) * s + i]) }
            var se: Float = 0
            for k in 0..<c { se += Foundation.exp(x[(b * c + k) * s + i] - m) }
            let w = (weight?[Int(t)] ?? 1) * scale
            for k in 0..<c {
                let idx = (b * c + k) * s + i
                gd[idx] = w * (Foundation.exp(x[idx] - m) / se - (k == Int(t) ? 1 : 0))
            }
        }
        return [gx]
    }
}

/// Binary cross-entropy on logits, numerically stable: max(x,0) − x·t + log(1 + e^−|x|).
public func binaryCrossEntropyWithLogits(_ x: Tensor, _ target: Tensor, reduction: Reduction = .mean) -> Tensor {
    let t = target.detached()
    let loss = zipMap(x, t) { x, t in max(x, 0) - x * t + Foundation.log1p(Foundation.exp(-abs(x))) }
    return loss.record("bce_with_logits", [x]) { g in
        [zipMap3(g, x, t) { g, x, t in g * (1 / (1 + Foundation.exp(-x)) - t) }]
    }.reduced(reduction)
}

/// mmdetection's sigmoid focal loss: BCE(x, t) · (α·t + (1−α)(1−t)) · pt^γ with pt = p(1−t) + (1−p)t... as
/// py_sigmoid_focal_loss writes it (pt there is 1 − p_t). Targets are one-hot floats.
public func sigmoidFocalLoss(_ x: Tensor, _ target: Tensor, gamma: Float = 2, alpha: Float = 0.25,
                             reduction: Reduction = .sum) -> Tensor {
    let t = target.detached()
    precondition(x.shape == t.shape, "sigmoid_focal_loss: logits \(x.shape), targets \(t.shape)")
    let loss = zipMap(x, t) { x, t in
        let p = 1 / (1 + Foundation.exp(-x))
        let pt = (1 - p) * t + p * (1 - t)
        let ce = max(x, 0) - x * t + Foundation.log1p(Foundation.exp(-abs(x)))
        return (alpha * t + (1 - alpha) * (1 - t)) * Foundation.pow(pt, gamma) * ce
    }
    return loss.record("sigmoid_focal_loss", [x]) { g in
        [zipMap3(g, x, t) { g, x, t in
            let p = 1 / (1 + Foundation.exp(-x))
            let pt = (1 - p) * t + p * (1 - t)
            let ce = max(x, 0) - x * t + Foundation.log1p(Foundation.exp(-abs(x)))
            let w = alpha * t + (1 - alpha) * (1 - t)
            // d pt/dx = (1 − 2t)·p(1 − p); d ce/dx = p − t.
            let dpt = (1 - 2 * t) * p * (1 - p)
            let powTerm = gamma == 0 ? 0 : gamma * Foundation.pow(pt, gamma - 1) * dpt * ce
            return g * w * (powTerm + Foundation.pow(pt, gamma) * (p - t))
        }]
    }.reduced(reduction)
}

public func l1Loss(_ x: Tensor, _ target: Tensor, reduction: Reduction = .mean) -> Tensor {
    let t = target.detached()
    return zipMap(x, t) { abs($0 - $1) }.record("l1_loss", [x]) { g in
        [zipMap3(g, x, t) { g, x, t in x > t ? g : (x < t ? -g : 0) }]
    }.reduced(reduction)
}

/// Smooth L1 (Huber with PyTorch's beta form): 0.5·d²/β where |d| < β, else |d| − 0.5β.
public func smoothL1Loss(_ x: Tensor, _ target: Tensor, beta: Float = 1, reduction: Reduction = .mean) -> Tensor {
    let t = target.detached()
    return zipMap(x, t) { x, t in
        let d = abs(x - t)
        return d < beta ? 0.5 * d * d / beta : d - 0.5 * beta
    }.record("smooth_l1_loss", [x]) { g in
        [zipMap3(g, x, t) { g, x, t in
            let d = x - t
            return abs(d) < beta ? g * d / beta : (d > 0 ? g : -g)
        }]
    }.reduced(reduction)
}
