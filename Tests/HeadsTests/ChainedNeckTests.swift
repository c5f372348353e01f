import Engine
import Heads
import NN
import TestSupport
import XCTest

/// The FPN on chained bf16 activations (`ConvChain`): each variant of extra levels (stride-2 max pooling, convolutions
/// on the input or the output, ReLU before them) against the float32 FPN, within bf16's precision.
final class ChainedNeckTests: XCTestCase {
    override func setUpWithError() throws { try selectNativeBF16OrSkip() }

    override func tearDown() {
        GradMode.isEnabled = true
        try? MixedPrecision.select(.fp32)
    }

    func testChainedFPNMatchesFloat32() throws {
        let shapes: [[Int]] = [[1, 32, 40, 27], [1, 64, 20, 14], [1, 128, 10, 7]]
        var inputs: [Tensor] = []
        for (i, s) in shapes.enumerated() {
            let f = 0.31 + Double(i)
            let v: [Float] = (0..<s.reduce(1, *)).map { Float(sin(Double($0) * f + 0.2)) }
            inputs.append(Tensor(v, shape: s))
        }
        GradMode.isEnabled = false
        for (extra, relu, start) in [(FPN.ExtraConvs.none, false, 0), (.onInput, false, 1), (.onOutput, true, 0)] {
            let fpn = FPN(inChannels: [32, 64, 128], outChannels: 32, numOuts: 5, startLevel: start, addExtraConvs: extra,
                          reluBeforeExtraConvs: relu)
            for m in fpn.lateral_convs + fpn.fpn_convs { m.conv.bias?.assign(Tensor((0..<32).map { Float($0 % 5) * 0.1 - 0.2 }, shape: [32])) }
            try MixedPrecision.select(.fp32)
            let reference = fpn(inputs)
            try MixedPrecision.select(.bf16)
            let before = ConvChain.passes
            XCTAssertTrue(fpn.chains)
            let maps: [ChainTensor] = fpn.chained(inputs.map { ConvChain.enter($0) })
            let chained: [Tensor] = maps.map { $0.tensor() }
            XCTAssertEqual(ConvChain.passes - before, fpn.lateral_convs.count + fpn.fpn_convs.count, "\(extra): every convolution chained")
            XCTAssertEqual(chained.map { $0.shape }, reference.map { $0.shape }, "\(extra)")
            for (level, (a, r)) in zip(chained, reference).enumerated() {
                let err = zip(a.array, r.array).map { ($0 - $1) * ($0 - $1) }.reduce(0, +).squareRoot()
                let norm = r.array.map { $0 * $0 }.reduce(0, +).squareRoot()
                XCTAssertLessThan(err / norm, 0.02, "\(extra) level \(level)")
            }
        }
    }
}
