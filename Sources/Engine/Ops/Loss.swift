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
    precondition(weight == nil || weight!.count == c, "cross_entropy: \(weight!.count) class weights for \(c) classes")
    for t in target where t != ignoreIndex {
        precondition(t >= 0 && Int(t) < c, "cross_entropy: target \(t) outside 0..<\(c)")
    }
    // Per pixel: its weight and log Σ exp (the backward's softmax is exp(x − lse)); the loss terms are summed in
    // Double in pixel order afterwards, so the result does not depend on the thread count.
    let lse = Tensor(zeros: [n * s]), term = Tensor(zeros: [n * s]), pixelWeight = Tensor(zeros: [n * s])
    crossEntropyPixels(logits.data, target, n: n, c: c, s: s, ignoreIndex: ignoreIndex, weight: weight,
                       lse: lse.data, term: term.data, pixelWeight: pixelWeight.data)
    var total = 0.0, wsum = 0.0
    for p in 0..<n * s where target[p] != ignoreIndex {
        total += Double(pixelWeight.data[p]) * Double(term.data[p])
        wsum += Double(pixelWeight.data[p])
    }
    let out = Tensor(scalar: wsum > 0 ? Float(total / wsum) : .nan)
    return out.record("cross_entropy", [logits]) { g in
        let gx = Tensor(zeros: logits.shape)
        let scale = g.item / Float(max(wsum, 1e-30))
        crossEntropyBackward(logits.data, target, n: n, c: c, s: s, ignoreIndex: ignoreIndex, lse: lse.data,
                             pixelWeight: pixelWeight.data, scale: scale, grad: gx.data)
        return [gx]
    }
}

/// Pixels per parallel task of the cross-entropy kernels.
private let crossEntropyBlock = 2048

/// The forward's per-pixel pass over [N, C, S] logits, eight pixels per step (a class's pixels are contiguous):
/// lse = log Σₖ e^xₖ, term = lse − x_target, pixelWeight = the target's class weight (0 where ignored). Targets
/// are validated by the caller.
private func crossEntropyPixels(_ x: UnsafePointer<Float>, _ target: [Int32], n: Int, c: Int, s: Int, ignoreIndex: Int32,
                                weight: [Float]?, lse: UnsafeMutablePointer<Float>, term: UnsafeMutablePointer<Float>,
                                pixelWeight: UnsafeMutablePointer<Float>) {
    let blocks = (s + crossEntropyBlock - 1) / crossEntropyBlock
    target.withUnsafeBufferPointer { tp in
        parallelFor(n * blocks, cost: crossEntropyBlock * c * 8) { task in
            let b = task / blocks, i0 = task % blocks * crossEntropyBlock, i1 = min(s, i0 + crossEntropyBlock)
            let base = x + b * c * s
            var i = i0
            while i < i1 {
                let lanes = min(8, i1 - i)
                var m = SIMD8<Float>(repeating: -.infinity), se = SIMD8<Float>(repeating: 0)
                if lanes == 8 {
                    for k in 0..<c { m = lanewiseMax(m, load8(base + k * s + i)) }
                    for k in 0..<c { se += fastExp(load8(base + k * s + i) - m) }
                } else {
                    for l in 0..<lanes { for k in 0..<c { m[l] = max(m[l], base[k * s + i + l]) } }
                    for l in 0..<lanes { for k in 0..<c { se[l] += fastExp(base[k * s + i + l] - m[l]) } }
                }
                for l in 0..<lanes {
                    let p = b * s + i + l, t = tp[p]
                    let logSum = Foundation.log(se[l]) + m[l]
                    lse[p] = logSum
                    if t == ignoreIndex { term[p] = 0; pixelWeight[p] = 0; continue }
                    term[p] = logSum - base[Int(t) * s + i + l]
                    pixelWeight[p] = weight?[Int(t)] ?? 1
                }
                i += lanes
            }
        }
    }
}

/// ∂loss/∂x = scale · w · (e^(x − lse) − [k = target]), zero at ignored pixels.
private func crossEntropyBackward(_ x: UnsafePointer<Float>, _ target: [Int32], n: Int, c: Int, s: Int, ignoreIndex: Int32,
                                  lse: UnsafePointer<Float>, pixelWeight: UnsafePointer<Float>, scale: Float,
                                  grad: UnsafeMutablePointer<Float>) {
    let blocks = (s + crossEntropyBlock - 1) / crossEntropyBlock
    target.withUnsafeBufferPointer { tp in
        parallelFor(n * blocks, cost: crossEntropyBlock * c * 4) { task in
            let b = task / blocks, i0 = task % blocks * crossEntropyBlock, i1 = min(s, i0 + crossEntropyBlock)
            let xb = x + b * c * s, gb = grad + b * c * s, lb = lse + b * s, wb = pixelWeight + b * s
            for k in 0..<c {
                var i = i0
                while i + 8 <= i1 {
                    let xv = load8(xb + k * s + i)
                    let w = load8(wb + i) * scale
                    let e = fastExp(xv - load8(lb + i))
                    store8(w * e, gb + k * s + i)
                    i += 8
                }
                while i < i1 { gb[k * s + i] = wb[i] * scale * fastExp(xb[k * s + i] - lb[i]); i += 1 }
            }
            for i in i0..<i1 {
                let t = tp[b * s + i]
                if t != ignoreIndex { gb[Int(t) * s + i] -= wb[i] * scale } else { for k in 0..<c { gb[k * s + i] = 0 } }
            }
        }
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
