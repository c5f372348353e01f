/// One recorded op on the tape: its inputs and the function that maps the output's gradient to theirs.
public final class Node {
    let inputs: [Tensor]
    /// Returns one gradient per input (nil where the input needs none); shapes equal the inputs' shapes.
    let backward: (Tensor) -> [Tensor?]
    let name: String

    init(_ name: String, _ inputs: [Tensor], _ backward: @escaping (Tensor) -> [Tensor?]) {
        self.name = name
        self.inputs = inputs
        self.backward = backward
    }
}

/// Global autograd switch; off inside `withNoGrad`. The tape is driven from one thread at a time.
public enum GradMode {
    nonisolated(unsafe) public static var isEnabled = true
}

/// Runs `body` recording nothing: results carry no nodes, so intermediates are freed as soon as they are dropped.
public func withNoGrad<T>(_ body: () throws -> T) rethrows -> T {
    let saved = GradMode.isEnabled
    GradMode.isEnabled = false
    defer { GradMode.isEnabled = saved }
    return try body()
}

extension Tensor {
    /// Whether an op on these inputs must be recorded.
    @inline(__always)
    static func needsGrad(_ inputs: Tensor...) -> Bool {
        GradMode.isEnabled && inputs.contains { $0.requiresGrad }
    }

    /// Attaches a node to `self` (an op's fresh output) when any input requires grad; returns self.
    @discardableResult
    func record(_ name: String, _ inputs: [Tensor], _ backward: @escaping (Tensor) -> [Tensor?]) -> Tensor {
        if GradMode.isEnabled && inputs.contains(where: { $0.requiresGrad }) {
            requiresGrad = true
            node = Node(name, inputs, backward)
        }
        return self
    }

    /// Back-propagates from this scalar (or from `gradient` for non-scalars), accumulating into leaves' `grad`.
    /// Intermediate gradients are dropped as soon as they have been propagated, and the graph is released: a second
    /// `backward()` through the same intermediates finds no graph (PyTorch's default, retain_graph=False).
    public func backward(_ gradient: Tensor? = nil) {
        precondition(gradient != nil || count == 1, "backward() without a gradient needs a scalar, got \(shape)")
        let seed = gradient ?? Tensor(zeros: shape, value: 1)
        guard node != nil else { accumulate(seed); return }

        // Topological order of the nodes reachable from self (iterative DFS; deep nets overflow recursion).
        var order: [Tensor] = []
        var visited = Set<ObjectIdentifier>()
        var stack: [(Tensor, Bool)] = [(self, false)]
        while let (t, expanded) = stack.popLast() {
            if expanded { order.append(t); continue }
            let id = ObjectIdentifier(t)
            if visited.contains(id) { continue }
            visited.insert(id)
            stack.append((t, true))
            for input in t.node?.inputs ?? [] where input.node != nil && !visited.contains(ObjectIdentifier(input)) {
                stack.append((input, false))
            }
        }

        var grads: [ObjectIdentifier: Tensor] = [ObjectIdentifier(self): seed]
        // The graph is freed as it is consumed (PyTorch's retain_graph=False): many backward closures capture their
        // op's output, a retain cycle (output → node → closure → output) that would otherwise leak every graph.
        defer { for t in order { t.node = nil } }
        for t in order.reversed() {
            guard let node = t.node, let g = grads.removeValue(forKey: ObjectIdentifier(t)) else { continue }
            let inputGrads = withNoGrad { node.backward(g) }
            for (input, ig) in zip(node.inputs, inputGrads) {
                guard let ig, input.requiresGrad else { continue }
                precondition(ig.shape == input.shape, "\(node.name) backward: grad \(ig.shape) for input \(input.shape)")
                if input.node == nil {
                    input.accumulate(ig)
                } else if let existing = grads[ObjectIdentifier(input)] {
                    existing.addInPlace(ig)
                } else {
                    // Own the buffer before accumulating into it later: ops may return views of shared grads.
                    grads[ObjectIdentifier(input)] = ig.storage === g.storage ? ig.copy() : ig
                }
            }
        }
    }

    /// grad += g for a leaf.
    func accumulate(_ g: Tensor) {
        if let grad { grad.addInPlace(g) } else { grad = g.copy() }
    }

    /// In-place elementwise add of a same-shaped tensor; records nothing.
    public func addInPlace(_ other: Tensor, scale: Float = 1) {
        precondition(other.count == count, "addInPlace: \(other.shape) into \(shape)")
        let d = data, o = other.data
        parallelChunks(count) { s, e in
            if scale == 1 { for i in s..<e { d[i] += o[i] } } else { for i in s..<e { d[i] += scale * o[i] } }
        }
    }

    public func zeroGrad() { grad = nil }
}
