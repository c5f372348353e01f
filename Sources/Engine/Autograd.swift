import Dispatch
/// One recorded op on the tape: where its inputs came from and the function that maps the output's gradient
/// to theirs.
///
/// A node refers to an interior input by that input's node, not by the tensor: the tape itself keeps no
/// activation alive. Only what a backward closure captures stays in memory (the input of a conv, the output of a
/// ReLU), so a BatchNorm output consumed by a ReLU is freed during the forward pass, as in PyTorch.
public final class Node {
    enum Input {
        /// A tensor without a node that requires grad: a parameter or an input; receives `grad`.
        case leaf(Tensor)
        /// The output of another recorded op.
        case interior(Node)
        /// Needs no gradient.
        case constant
    }

    let inputs: [Input]
    /// Returns one gradient per input (nil where none is needed); shapes equal the inputs' shapes. Released after it
    /// runs, so the activations it captured are freed as the backward pass moves down the graph.
    var backward: ((Tensor) -> [Tensor?])?
    let name: String
    let inputShapes: [[Int]]

    init(_ name: String, _ inputs: [Tensor], _ backward: @escaping (Tensor) -> [Tensor?]) {
        self.name = name
        self.inputs = inputs.map { t in !t.requiresGrad ? .constant : (t.node.map { .interior($0) } ?? .leaf(t)) }
        inputShapes = inputs.map(\.shape)
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
        OpProfile.forward(name, inputs)
        if GradMode.isEnabled && inputs.contains(where: { $0.requiresGrad }) {
            requiresGrad = true
            node = Node(name, inputs, backward)
        }
        return self
    }

    /// Back-propagates from this scalar (or from `gradient` for non-scalars), accumulating into leaves' `grad`.
    /// Intermediate gradients are dropped as soon as they have been propagated.
    public func backward(_ gradient: Tensor? = nil) {
        precondition(gradient != nil || count == 1, "backward() without a gradient needs a scalar, got \(shape)")
        // The walk accumulates into the gradients it holds: a caller's tensor is copied first, never written.
        let seed = gradient?.copy() ?? Tensor(zeros: shape, value: 1)
        guard let root = node else { if requiresGrad { accumulate(seed) }; return }

        // Topological order of the nodes reachable from the root (iterative DFS; deep nets overflow recursion).
        // A node is marked when it is expanded, not when it is pushed: a node pushed early by one parent and reached
        // again through a longer path must still be finished after every node it feeds.
        var order: [Node] = []
        var visited = Set<ObjectIdentifier>()
        var stack: [(Node, Bool)] = [(root, false)]
        while let (n, expanded) = stack.popLast() {
            if expanded { order.append(n); continue }
            guard visited.insert(ObjectIdentifier(n)).inserted else { continue }
            stack.append((n, true))
            for case let .interior(child) in n.inputs where !visited.contains(ObjectIdentifier(child)) {
                stack.append((child, false))
            }
        }

        var grads: [ObjectIdentifier: Tensor] = [ObjectIdentifier(root): seed]
        if OpProfile.enabled { OpProfile.mark("fwd (untaped work before backward)") }
        defer { if OpProfile.enabled { OpProfile.mark("bwd (graph walk)") } }
        for n in order.reversed() {
            if OpProfile.enabled { OpProfile.mark("bwd (graph walk)") }
            defer { if OpProfile.enabled { OpProfile.mark("bwd " + OpProfile.label(n.name, n.inputShapes)) } }
            guard let g = grads.removeValue(forKey: ObjectIdentifier(n)) else { continue }
            guard let fn = n.backward else {
                preconditionFailure("backward through \(n.name) a second time: its saved tensors were freed after the first")
            }
            n.backward = nil
            let inputGrads = withNoGrad {
                MixedPrecision.inBackward = true   // training precision (`amp`) holds in the backward pass too
                defer { MixedPrecision.inBackward = false }
                return fn(g)
            }
            // g is the walk's own (removed from `grads` above), so the first interior input handed its buffer (a
            // reshape's gradient is a view of it) may keep it; a second one gets a copy, since each entry of
            // `grads` is accumulated into in place.
            var handedOut = false
            for (k, (input, ig)) in zip(n.inputs, inputGrads).enumerated() {
                guard let ig else { continue }
                precondition(ig.shape == n.inputShapes[k], "\(n.name) backward: grad \(ig.shape) for input \(n.inputShapes[k])")
                switch input {
                case .constant: continue
                case let .leaf(t): t.accumulate(ig)
                case let .interior(child):
                    let id = ObjectIdentifier(child)
                    if let existing = grads[id] {
                        existing.addInPlace(ig)
                    } else if ig.storage === g.storage {
                        grads[id] = handedOut ? ig.copy() : ig
                        handedOut = true
                    } else {
                        grads[id] = ig
                    }
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

/// Wall time per op on the thread that drives the tape, for finding the ops that do not scale with threads
/// (`bench --profile-ops`): each taped op (forward, recorded whether or not gradients are on) is charged the time
/// since the previous mark, so untaped code in between counts towards the op that follows it; each backward node is
/// charged its closure and the accumulation of its gradients.
public enum OpProfile {
    nonisolated(unsafe) public static var enabled = false
    /// Also keys each op by its inputs' shapes, to tell one convolution from another.
    nonisolated(unsafe) public static var byShape = false
    nonisolated(unsafe) static var last: UInt64 = 0
    nonisolated(unsafe) public private(set) static var table: [String: (seconds: Double, calls: Int)] = [:]

    /// Starts a fresh table from now.
    public static func reset() {
        table = [:]
        last = DispatchTime.now().uptimeNanoseconds
    }

    /// The table's ops, the most time first.
    public static var slowestFirst: [(key: String, value: (seconds: Double, calls: Int))] {
        table.sorted { $0.value.seconds > $1.value.seconds }
    }

    /// The table key of an op: its name, and with `byShape` its inputs' shapes.
    static func label(_ name: String, _ shapes: @autoclosure () -> [[Int]]) -> String {
        byShape ? name + " " + shapes().map { "\($0)" }.joined(separator: " ") : name
    }

    /// Marks a forward op's end (ops inside a backward closure belong to that node's time). `record` calls it; fused
    /// inference ops that record nothing call it themselves.
    @inline(__always)
    static func forward(_ name: String, _ inputs: @autoclosure () -> [Tensor]) {
        if enabled && !MixedPrecision.inBackward { mark("fwd " + label(name, inputs().map(\.shape))) }
    }

    public static func mark(_ name: String) {
        let now = DispatchTime.now().uptimeNanoseconds
        let entry = table[name] ?? (0, 0)
        table[name] = (entry.seconds + Double(now &- last) / 1e9, entry.calls + 1)
        last = now
    }
}
