import Engine

/// nn.Conv2d. Input [N, in, H, W] → [N, out, Ho, Wo]; `weight` [out, in/groups, kh, kw], `bias` [out].
public final class Conv2d: Module {
    public let weight: Tensor
    public let bias: Tensor?
    public let stride: (Int, Int), padding: (Int, Int), dilation: (Int, Int), groups: Int

    public init(_ inChannels: Int, _ outChannels: Int, kernelSize: Int, stride: Int = 1, padding: Int = 0,
                dilation: Int = 1, groups: Int = 1, bias: Bool = true) {
        let fanIn = inChannels / groups * kernelSize * kernelSize
        let bound = 1 / Float(fanIn).squareRoot()
        weight = Init.uniform([outChannels, inChannels / groups, kernelSize, kernelSize], bound: bound)
        self.bias = bias ? Init.uniform([outChannels], bound: bound) : nil
        self.stride = (stride, stride); self.padding = (padding, padding); self.dilation = (dilation, dilation)
        self.groups = groups
    }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        conv2d(x, weight, bias, stride: stride, padding: padding, dilation: dilation, groups: groups)
    }

    /// relu(conv(x)) as one op (the ReLU in the convolution's epilogue).
    public func callAsFunction(_ x: Tensor, relu: Bool) -> Tensor {
        conv2d(x, weight, bias, stride: stride, padding: padding, dilation: dilation, groups: groups, relu: relu)
    }
}

/// torch.nn.ConvTranspose2d (no output padding, dilation or groups): [N, in, H, W] →
/// [N, out, (H − 1)·stride − 2·padding + k, ...]. Keys `weight` [in, out, k, k] and `bias` [out].
public final class ConvTranspose2d: Module {
    public let weight: Tensor
    public let bias: Tensor?
    public let stride: (Int, Int), padding: (Int, Int)

    public init(_ inChannels: Int, _ outChannels: Int, kernelSize: Int, stride: Int = 1, padding: Int = 0, bias: Bool = true) {
        // PyTorch's default: fan_in is computed from weight.size(1) · k², which for this layout is the output channels.
        let bound = 1 / Float(outChannels * kernelSize * kernelSize).squareRoot()
        weight = Init.uniform([inChannels, outChannels, kernelSize, kernelSize], bound: bound)
        self.bias = bias ? Init.uniform([outChannels], bound: bound) : nil
        self.stride = (stride, stride); self.padding = (padding, padding)
    }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        convTranspose2d(x, weight, bias, stride: stride, padding: padding)
    }
}
