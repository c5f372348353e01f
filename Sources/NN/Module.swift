import Engine

/// Base class of every layer and model, in the style of MLXNN: stored properties are named exactly like the
/// PyTorch `state_dict` keys, so a property path such as `layer1.0.conv2.weight` is the checkpoint key.
///
/// Children and tensors are found by reflection over stored properties: `Tensor` (a parameter, or a buffer when
/// listed in `bufferNames`), `Tensor?`, `Module`, `Module?` and `[Module]` (keys `name.0`, `name.1`, ... as
/// nn.ModuleList). Subclasses whose keys differ from their property names override `children()`.
open class Module {
    /// Train mode (batch statistics, dropout active) or eval mode; set recursively by `train(_:)`.
    public private(set) var training = true

    // Default `ownTensors()` / `children()` results, reflected once on first use: assumes the tree is complete when
    // `init` returns and stored tensors/modules are never reassigned (weights change in place). Overrides bypass it.
    private var reflectedTensors: [(String, Tensor)]?
    private var reflectedChildren: [(String, Module)]?
    private static let unreflected: Set<String> = ["training", "reflectedTensors", "reflectedChildren"]

    public init() {}

    /// Names of this module's own tensors that are buffers (saved in the state dict, never optimised).
    open var bufferNames: Set<String> { [] }

    /// This module's own tensors (not its children's), by key.
    open func ownTensors() -> [(String, Tensor)] {
        if let cached = reflectedTensors { return cached }
        let out: [(String, Tensor)] = reflectedProperties().compactMap { name, value in
            if let t = value as? Tensor { return (name, t) }
            if let t = value as? Tensor?, let t { return (name, t) }
            return nil
        }
        reflectedTensors = out
        return out
    }

    /// Direct children by key.
    open func children() -> [(String, Module)] {
        if let cached = reflectedChildren { return cached }
        var out: [(String, Module)] = []
        for (name, value) in reflectedProperties() {
            if let m = value as? Module { out.append((name, m)) }
            else if let m = value as? Module?, let m { out.append((name, m)) }
            else if let list = value as? [Module] { out += list.enumerated().map { ("\(name).\($0.offset)", $0.element) } }
        }
        reflectedChildren = out
        return out
    }

    func reflectedProperties() -> [(String, Any)] {
        var out: [(String, Any)] = []
        var mirror: Mirror? = Mirror(reflecting: self)
        var levels: [[(String, Any)]] = []
        while let m = mirror {
            levels.append(m.children.compactMap { c in c.label.map { ($0, c.value) } }.filter { !Module.unreflected.contains($0.0) })
            mirror = m.superclassMirror
        }
        for level in levels.reversed() { out += level }
        return out
    }

    /// Every module in the tree with its key prefix ("" for self), parents before children.
    public func namedModules(prefix: String = "") -> [(String, Module)] {
        var out = [(prefix, self)]
        for (name, child) in children() {
            out += child.namedModules(prefix: prefix.isEmpty ? name : "\(prefix).\(name)")
        }
        return out
    }

    /// Every tensor of the state dict (parameters and buffers) by full key.
    public func namedTensors() -> [(String, Tensor)] {
        namedModules().flatMap { prefix, m in m.ownTensors().map { (prefix.isEmpty ? $0.0 : "\(prefix).\($0.0)", $0.1) } }
    }

    /// Parameters only (buffers excluded), by full key, including frozen ones.
    public func namedParameters() -> [(String, Tensor)] {
        namedModules().flatMap { prefix, m in
            m.ownTensors().filter { !m.bufferNames.contains($0.0) }.map { (prefix.isEmpty ? $0.0 : "\(prefix).\($0.0)", $0.1) }
        }
    }

    /// Parameters that an optimizer should update.
    public func trainableParameters() -> [(String, Tensor)] { namedParameters().filter { $0.1.requiresGrad } }

    public func stateDict() -> [String: Tensor] { Dictionary(namedTensors(), uniquingKeysWith: { a, _ in a }) }

    /// Sets train/eval mode recursively; returns self for chaining.
    @discardableResult
    open func train(_ mode: Bool = true) -> Self {
        for (_, m) in namedModules() { m.training = mode }
        return self
    }

    @discardableResult
    public func eval() -> Self { train(false) }

    /// Stops gradients for every parameter of this subtree (frozen stages).
    public func freeze() { for (_, p) in namedParameters() { p.requiresGrad = false } }

    public func zeroGrad() { for (_, p) in namedParameters() { p.zeroGrad() } }
}
