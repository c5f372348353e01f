import Backbones
import Engine
import NN
import XCTest

/// Whole Swin+ACmix models: the authors' classifier against reference logits and stage features, dense mode
/// on arbitrary sizes, and dense vs classification where both see the same maps.
final class SwinTransformerTests: XCTestCase {
    /// The reference mini model: embed 32, depths [2,2,2,2], heads [1,2,4,8], window 7, 10 classes.
    func miniConfig(mode: SwinMode) -> SwinConfig {
        SwinConfig(embedDim: 32, depths: [2, 2, 2, 2], numHeads: [1, 2, 4, 8], windowSize: 7, acmix: true,
                   numClasses: 10, dropPathRate: 0.1, mode: mode)
    }

    func testACmixMiniClassifierMatchesReference() throws {
        let weights = try swinReference("acmix_swin_mini.weights.safetensors").tensors
        let io = try swinReference("acmix_swin_mini.io.safetensors").tensors
        let model = SwinTransformer(miniConfig(mode: .classification(imageSize: 224)))
        model.eval()
        try model.load(stateDict: weights, strict: true, source: "acmix_swin_mini")
        let x = try XCTUnwrap(io["input"])
        try withNoGrad {
            let stages = model.stageTokens(x)
            XCTAssertEqual(stages.map { [$0.height, $0.width] }, [[56, 56], [28, 28], [14, 14], [7, 7]])
            for (i, s) in stages.enumerated() {
                assertSwinClose(s.tokens, io["features.stage\(i + 1)"], "features.stage\(i + 1)")
            }
            // features() is the same data in NCHW.
            let feats = model.features(x)
            XCTAssertEqual(feats.map(\.shape), [[1, 32, 56, 56], [1, 64, 28, 28], [1, 128, 14, 14], [1, 256, 7, 7]])
            let ref1 = try XCTUnwrap(io["features.stage1"])
            assertSwinClose(feats[0], ref1.transpose(1, 2), "features()[0] NCHW")
            assertSwinClose(model(x), io["logits"], "logits")
        }
    }

    func testClassificationRejectsOtherSizes() throws {
        let model = SwinTransformer(miniConfig(mode: .classification(imageSize: 224)))
        XCTAssertThrowsError(try model.validate(inputShape: [1, 3, 100, 75])) { error in
            XCTAssertTrue("\(error)".contains("224x224"), "\(error)")
        }
        XCTAssertNoThrow(try model.validate(inputShape: [2, 3, 224, 224]))
    }

    func testDenseModeAnySize() throws {
        EngineRandom.seed(7)
        let model = SwinTransformer(miniConfig(mode: .dense))
        model.eval()
        XCTAssertEqual(model.stateDict().keys.filter { $0.hasPrefix("norm") }.sorted(),
                       ["norm0.bias", "norm0.weight", "norm1.bias", "norm1.weight", "norm2.bias", "norm2.weight",
                        "norm3.bias", "norm3.weight"])
        let x = Tensor((0..<(3 * 100 * 75)).map { Float(($0 * 7919) % 997) / 997 - 0.5 }, shape: [1, 3, 100, 75])
        let feats = withNoGrad { model.features(x) }
        // Strides 4, 8, 16, 32 with ceil rounding (padding at the bottom/right).
        XCTAssertEqual(feats.map(\.shape), [[1, 32, 25, 19], [1, 64, 13, 10], [1, 128, 7, 5], [1, 256, 4, 3]])
        for f in feats { XCTAssertTrue(f.array.allSatisfy(\.isFinite)) }
        // After the per-output LayerNorm (weight 1, bias 0) each pixel's channels have mean 0.
        let f0 = feats[0], c = 32, hw = 25 * 19
        var worst: Float = 0
        for p in 0..<hw {
            var s: Float = 0
            for ch in 0..<c { s += f0.data[ch * hw + p] }
            worst = max(worst, abs(s / Float(c)))
        }
        XCTAssertLessThan(worst, 1e-4)

        // Maps smaller than a window (padded up to one window, masks for the padded size) down to 1×1.
        let tiny = withNoGrad { model.features(Tensor(zeros: [1, 3, 20, 17], value: 0.3)) }
        XCTAssertEqual(tiny.map(\.shape), [[1, 32, 5, 5], [1, 64, 3, 3], [1, 128, 2, 2], [1, 256, 1, 1]])
        for f in tiny { XCTAssertTrue(f.array.allSatisfy(\.isFinite)) }

        // Training mode with drop path runs and back-propagates to the input.
        model.train()
        let xg = Tensor((0..<(2 * 3 * 37 * 45)).map { Float($0 % 13) / 13 }, shape: [2, 3, 37, 45], requiresGrad: true)
        let out = model.features(xg)
        XCTAssertEqual(out.map(\.shape), [[2, 32, 10, 12], [2, 64, 5, 6], [2, 128, 3, 3], [2, 256, 2, 2]])
        out.reduce(Tensor(scalar: 0)) { $0 + $1.sum() }.backward()
        XCTAssertEqual(xg.grad?.shape, [2, 3, 37, 45])
    }

    func testDenseMatchesClassificationWithoutPadding() throws {
        // At 448 every stage (112, 56, 28, 14) is a window multiple larger than the window, so the authors'
        // classifier and the dense backbone compute the same blocks.
        let weights = try swinReference("acmix_swin_mini.weights.safetensors").tensors
        let cls = SwinTransformer(miniConfig(mode: .classification(imageSize: 448)))
        let dense = SwinTransformer(miniConfig(mode: .dense))
        cls.eval(); dense.eval()
        try cls.load(stateDict: weights, strict: true)
        let report = try dense.load(stateDict: weights, strict: false)
        XCTAssertEqual(Set(report.unexpected), ["head.bias", "head.weight", "norm.bias", "norm.weight"])
        XCTAssertEqual(report.missing.count, 8)  // norm0…norm3
        let x = Tensor((0..<(3 * 448 * 448)).map { Float(($0 * 2654435761) % 1000) / 500 - 1 }, shape: [1, 3, 448, 448])
        let (a, b) = withNoGrad { (cls.features(x), dense.rawFeatures(x)) }
        for i in 0..<4 {
            XCTAssertEqual(a[i].shape, b[i].shape)
            assertSwinClose(b[i], a[i], "dense vs classification stage\(i + 1)", tol: 1e-6)
        }
    }

    func testFactoryArchitectures() throws {
        let tiny = try SwinTransformer.make(arch: "swin_tiny", numClasses: 1000)
        // timm's swin_tiny_patch4_window7_224 has 28,288,354 parameters.
        XCTAssertEqual(tiny.namedParameters().reduce(0) { $0 + $1.1.count }, 28_288_354)
        let acmix = try SwinTransformer.make(arch: "acmix_swin_tiny", mode: .dense)
        XCTAssertTrue(acmix.layers[2].blocks[0].attn is WindowAttentionACmix)
        XCTAssertEqual(acmix.config.depths, [2, 2, 6, 2])
        XCTAssertNil(acmix.head)
        XCTAssertEqual(acmix.outNorms.count, 4)
        XCTAssertThrowsError(try SwinTransformer.make(arch: "swin_huge"))
    }
}
