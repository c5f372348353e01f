import XCTest
import Engine
import NN

/// `convBN` folds an eval-mode BatchNorm into its convolution only where that is exact and gradient-free.
final class ConvBNTests: XCTestCase {
    func make() -> (Conv2d, BatchNorm2d, Tensor) {
        EngineRandom.seed(3)
        let conv = Conv2d(8, 16, kernelSize: 3, padding: 1, bias: true)
        let bn = BatchNorm2d(16)
        for c in 0..<16 {
            bn.running_mean.data[c] = Float(c) * 0.1 - 0.7
            bn.running_var.data[c] = 0.5 + Float(c) * 0.05
            bn.weight.data[c] = 1 + Float(c % 3) * 0.2
            bn.bias.data[c] = Float(c % 5) * 0.1 - 0.2
        }
        let x = Tensor((0..<(2 * 8 * 9 * 9)).map { Float(($0 * 37) % 101) / 50 - 1 }, shape: [2, 8, 9, 9])
        return (conv, bn, x)
    }

    func testEvalFoldMatchesLayers() {
        let (conv, bn, x) = make()
        bn.eval()
        let residual = Tensor((0..<(2 * 16 * 81)).map { Float($0 % 13) / 6 - 1 }, shape: [2, 16, 9, 9])
        let want = withNoGrad { (bn(conv(x)) + residual).relu() }
        let got = withNoGrad { convBN(x, conv, bn, residual: residual, relu: true) }
        XCTAssertNil(got.node)
        for i in 0..<want.count { XCTAssertEqual(got.data[i], want.data[i], accuracy: 1e-5 * max(1, abs(want.data[i]))) }
    }

    func testTrainingModeRunsTheLayers() {
        let (conv, bn, x) = make()
        bn.train()
        let before = bn.running_mean.array
        let y = convBN(x, conv, bn, relu: true)
        XCTAssertNotNil(y.node, "training records the graph")
        XCTAssertNotEqual(bn.running_mean.array, before, "batch statistics update the running mean")
        XCTAssertEqual(bn.num_batches_tracked.item, 1)
    }

    func testEvalWithGradientsIsExact() {
        let (conv, bn, x) = make()
        bn.eval()
        convBN(x, conv, bn, relu: true).sum().backward()
        let gw = conv.weight.grad!.array, gbn = bn.weight.grad!.array
        conv.zeroGrad(); bn.zeroGrad()
        bn(conv(x)).relu().sum().backward()
        XCTAssertEqual(conv.weight.grad!.array, gw)
        XCTAssertEqual(bn.weight.grad!.array, gbn)
    }
}
