import Engine
import NN

/// The paper's ACmix module (ResNet style): shared 1×1 q/k/v projections feed a local self-attention path and a
/// shift-convolution path, mixed as rate1·attention + rate2·convolution.
///
/// Input [N, in, H, W] → [N, out, Ho, Wo] with Ho = (H−1)/stride + 1. Keys as the authors' state dict:
/// `rate1`, `rate2`, `conv1/2/3` (q, k, v; 1×1 with bias), `conv_p` (2 → head_dim), `fc` (3·head → k_conv², no
/// bias), `dep_conv` (grouped k_conv×k_conv, groups = head_dim, no bias).
public final class ACmix: Module {
    public let rate1: Tensor
    public let rate2: Tensor
    public let conv1: Conv2d
    public let conv2: Conv2d
    public let conv3: Conv2d
    public let conv_p: Conv2d
    public let fc: Conv2d
    public let dep_conv: Conv2d
    public let head: Int, headDim: Int, kernelAtt: Int, kernelConv: Int, stride: Int

    public init(inPlanes: Int, outPlanes: Int, kernelAtt: Int = 7, head: Int = 4, kernelConv: Int = 3, stride: Int = 1) {
        self.head = head; headDim = outPlanes / head
        self.kernelAtt = kernelAtt; self.kernelConv = kernelConv; self.stride = stride
        rate1 = Init.constant([1], 0.5)
        rate2 = Init.constant([1], 0.5)
        conv1 = Conv2d(inPlanes, outPlanes, kernelSize: 1)
        conv2 = Conv2d(inPlanes, outPlanes, kernelSize: 1)
        conv3 = Conv2d(inPlanes, outPlanes, kernelSize: 1)
        conv_p = Conv2d(2, outPlanes / head, kernelSize: 1)
        fc = Conv2d(3 * head, kernelConv * kernelConv, kernelSize: 1, bias: false)
        dep_conv = Conv2d(kernelConv * kernelConv * (outPlanes / head), outPlanes, kernelSize: kernelConv, stride: stride,
                          padding: kernelConv / 2, groups: outPlanes / head, bias: false)
        super.init()
        // Shift initialisation: input channel i of every group is the one-hot kernel at tap i.
        let kk = kernelConv * kernelConv
        dep_conv.weight.fill(0)
        for o in 0..<outPlanes { for i in 0..<kk { dep_conv.weight.data[(o * kk + i) * kk + i] = 1 } }
    }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        let (b, h, w) = (x.shape[0], x.shape[2], x.shape[3])
        let kk = kernelConv * kernelConv
        // q | k | v from one sgemm: output channels are already grouped (3·head, head_dim) as the conv path wants.
        let qkvWeight = concat([conv1.weight, conv2.weight, conv3.weight], axis: 0)
        let qkvBias = concat([conv1.bias!, conv2.bias!, conv3.bias!], axis: 0)
        let qkv = conv2d(x, qkvWeight, qkvBias)                                        // [B, 3·out, H, W]

        // Convolution path: fc mixes the 3·head groups into k² maps per head_dim channel, then the shift conv.
        let f = acmixHeadMix(qkv.reshape([b, 3 * head, headDim, h * w]), fc.weight)     // [B, d, k², HW]
            .reshape([b, headDim * kk, h, w])
        let outConv = dep_conv(f)                                                        // [B, out, Ho, Wo]

        // Attention path straight on the NCHW projections, positional encoding from the coordinate grid.
        let pe = conv_p(coordinateGrid(h, w)).reshape([headDim, h * w])                  // [d, HW]
        let outAtt = acmixLocalAttention(qkv, pe, heads: head, height: h, width: w, kernel: kernelAtt, stride: stride,
                                         scale: 1 / Float(headDim).squareRoot())          // [B, out, Ho, Wo]
        return weightedSum(outAtt, rate1, outConv, rate2)                                  // one pass
    }
}

/// [1, 2, H, W]: channel 0 the column coordinate, channel 1 the row coordinate, each linspace(−1, 1).
func coordinateGrid(_ h: Int, _ w: Int) -> Tensor {
    let g = Tensor(uninitialized: [1, 2, h, w])
    func lin(_ i: Int, _ n: Int) -> Float { n == 1 ? -1 : -1 + 2 * Float(i) / Float(n - 1) }
    for y in 0..<h { for x in 0..<w { g.data[y * w + x] = lin(x, w); g.data[h * w + y * w + x] = lin(y, h) } }
    return g
}
