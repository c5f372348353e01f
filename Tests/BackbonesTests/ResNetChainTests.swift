import Backbones
import Engine
import NN
import TestSupport
import XCTest

/// A ResNet backbone on chained bf16 activations (`ConvChain`) against its per-convolution bf16 path and float32.
final class ResNetChainTests: XCTestCase {
    override func setUpWithError() throws { try selectNativeBF16OrSkip() }

    override func tearDown() {
        ConvChain.enabled = true
        FrozenWeights.clear()
        GradMode.isEnabled = true
        try? MixedPrecision.select(.fp32)
    }

    private func values(_ n: Int, _ f: Double, _ scale: Float = 1) -> [Float] { (0..<n).map { Float(sin(Double($0) * f + 0.3)) * scale } }

    /// ‖u − v‖ / ‖v‖.
    private func relativeError(_ u: Tensor, _ v: Tensor) -> Float {
        let num = (0..<u.count).reduce(Float(0)) { $0 + (u.data[$1] - v.data[$1]) * (u.data[$1] - v.data[$1]) }
        let den = (0..<v.count).reduce(Float(0)) { $0 + v.data[$1] * v.data[$1] }
        return (num / max(den, 1e-20)).squareRoot()
    }

    /// A small ResNet in eval mode with BatchNorm statistics of its own, an input for it, and gradients off.
    private func network(numClasses: Int?) -> (ResNet, Tensor) {
        let net = ResNet(layers: [1, 2, 1, 1], acmix: nil, numClasses: numClasses, baseWidth: 16)
        for (_, m) in net.namedModules() {
            guard let bn = m as? BatchNorm2d else { continue }
            let c = bn.weight.count
            bn.running_mean.assign(Tensor(values(c, 0.7, 0.1), shape: [c]))
            bn.running_var.assign(Tensor(values(c, 0.3).map { 0.5 + $0 * $0 }, shape: [c]))
            bn.weight.assign(Tensor(values(c, 1.1).map { 0.8 + 0.4 * $0 }, shape: [c]))
        }
        _ = net.eval()
        let x = Tensor(values(2 * 3 * 64 * 48, 0.013), shape: [2, 3, 64, 48])
        GradMode.isEnabled = false
        return (net, x)
    }

    /// A ResNet's features at float32 chained (`ConvChain.f32Active`: oneDNN's float32 kernels, BatchNorm folded,
    /// shortcut and ReLU fused) against the per-convolution float32 path: equal up to summation order, every
    /// convolution after the stem chained, and frozen (packed) weights give the chain's numbers exactly.
    func testResNetFeaturesChainedAtFloat32AgreeWithThePerConvolutionPath() throws {
        try MixedPrecision.select(.fp32)
        guard ConvChain.float32Kernels else { throw XCTSkip("oneDNN has no float32 chain kernels on this CPU (\(CPUInfo.current.summary))") }
        let (net, x) = network(numClasses: 10)
        XCTAssertTrue(ConvChain.f32Active)
        let before = ConvChain.passes
        let chained = net.features(x), logits = net(x)
        XCTAssertEqual(ConvChain.passes - before, 2 * (5 * 3 + 4 + (ConvChain.layout == .nhwc ? 1 : 0)),
                       "every bottleneck convolution and shortcut (and in nhwc the stem) runs chained")
        XCTAssertTrue(chained.allSatisfy { $0.array.allSatisfy(\.isFinite) })
        ConvChain.enabled = false
        let perConv = net.features(x), perConvLogits = net(x)
        ConvChain.enabled = true
        for (i, (a, b)) in zip(chained, perConv).enumerated() {
            XCTAssertEqual(a.shape, b.shape)
            XCTAssertLessThan(relativeError(a, b), 1e-5, "stage \(i): float32 chained against per convolution")
        }
        XCTAssertLessThan(relativeError(logits, perConvLogits), 1e-5, "logits (pooled in the chain)")
        FrozenWeights.install(net.namedTensors().map(\.1), owner: net)
        for (i, (a, b)) in zip(net.features(x), chained).enumerated() {
            XCTAssertEqual(a.array, b.array, "stage \(i): packed weights change the numbers")
        }
    }

    /// A ResNet's features in bf16: chained, the per-convolution path, and float32 agree to bf16's precision, the chain
    /// runs every convolution after the stem, and frozen (packed) weights give each path's numbers exactly, whichever
    /// path ran first.
    func testResNetFeaturesChainedAgreeWithThePerConvolutionPath() throws {
        let (net, x) = network(numClasses: nil)
        func features() -> [Tensor] { net.features(x) }
        let before = ConvChain.passes
        let chained = features()
        XCTAssertEqual(ConvChain.passes - before, 5 * 3 + 4 + (ConvChain.layout == .nhwc ? 1 : 0),
                       "every bottleneck convolution and shortcut (and in nhwc the stem) runs chained")
        // The per-convolution bf16 path and float32, then back to the chain.
        func otherPaths() throws -> (perConv: [Tensor], fp32: [Tensor]) {
            ConvChain.enabled = false
            let perConv = features()
            try MixedPrecision.select(.fp32)
            let fp32 = features()
            try MixedPrecision.select(.bf16)
            ConvChain.enabled = true
            return (perConv, fp32)
        }
        let (perConv, fp32) = try otherPaths()
        FrozenWeights.install(net.namedTensors().map(\.1), owner: net)
        let frozen = features()
        // The same frozen weights through the per-convolution path, and in float32: each kind of plan keeps packed
        // weights of its own (the chain's have the BatchNorm folded in).
        let (frozenPerConv, frozenFP32) = try otherPaths()
        let frozenAgain = features()
        for (i, (a, (b, r))) in zip(chained, zip(perConv, fp32)).enumerated() {
            XCTAssertEqual(frozenPerConv[i].array, b.array, "stage \(i): per-convolution bf16 from packed weights")
            XCTAssertEqual(frozenAgain[i].array, a.array, "stage \(i): chained again after the per-convolution path")
            XCTAssertLessThan(relativeError(frozenFP32[i], r), 1e-5, "stage \(i): float32 from packed weights")
            XCTAssertEqual(a.shape, r.shape)
            XCTAssertLessThan(relativeError(a, r), 0.02, "stage \(i): chained against float32")
            XCTAssertLessThan(relativeError(b, r), 0.02, "stage \(i): per-convolution bf16 against float32")
            XCTAssertEqual(frozen[i].array, a.array, "stage \(i): packed weights change the numbers")
        }
    }
}
