import Engine

/// nn.Linear. Input [..., in] → [..., out]; `weight` [out, in], `bias` [out].
public final class Linear: Module {
    public let weight: Tensor
    public let bias: Tensor?

    public init(_ inFeatures: Int, _ outFeatures: Int, bias: Bool = true) {
        let bound = 1 / Float(inFeatures).squareRoot()
        weight = Init.uniform([outFeatures, inFeatures], bound: bound)
        self.bias = bias ? Init.uniform([outFeatures], bound: bound) : nil
    }

    public func callAsFunction(_ x: Tensor) -> Tensor { linear(x, weight, bias) }
}
