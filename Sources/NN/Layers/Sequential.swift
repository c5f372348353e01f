import Engine

/// A layer that maps a tensor to a tensor; lets `Sequential` chain heterogeneous layers.
public protocol UnaryLayer: Module {
    func callAsFunction(_ x: Tensor) -> Tensor
}

extension Conv2d: UnaryLayer {}
extension Linear: UnaryLayer {}
extension BatchNorm2d: UnaryLayer {}
extension LayerNorm: UnaryLayer {}
extension GroupNorm: UnaryLayer {}

/// nn.Sequential: children keyed "0", "1", ... as PyTorch names them.
public final class Sequential: Module, UnaryLayer {
    public let layers: [any UnaryLayer]

    public init(_ layers: [any UnaryLayer]) { self.layers = layers }

    public override func children() -> [(String, Module)] { layers.enumerated().map { ("\($0.offset)", $0.element) } }

    public func callAsFunction(_ x: Tensor) -> Tensor { layers.reduce(x) { $1($0) } }
}

/// nn.ReLU as a layer (for Sequential).
public final class ReLU: Module, UnaryLayer {
    public override init() {}
    public func callAsFunction(_ x: Tensor) -> Tensor { x.relu() }
}
