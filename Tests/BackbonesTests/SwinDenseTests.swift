import Backbones
import Engine
import Foundation
import NN
import XCTest

/// Dense mode against an independent PyTorch composition of the mmdetection / Swin-det dense forward
/// (Tests/Fixtures/make_swin_dense_mini.py): batch 2, 58×45 input, so the image, every block's map and every
/// merge need padding.
final class SwinDenseTests: XCTestCase {
    func testDenseMatchesSwinDetComposition() throws {
        var root = URL(fileURLWithPath: #filePath)
        while root.path != "/" && !FileManager.default.fileExists(atPath: root.appendingPathComponent("Package.swift").path) {
            root.deleteLastPathComponent()
        }
        let fixture = try SafeTensors.read(path: root.appendingPathComponent("Tests/Fixtures/swin_dense_mini.safetensors").path).tensors
        var weights = try swinReference("acmix_swin_mini.weights.safetensors").tensors
        for key in ["norm.weight", "norm.bias", "head.weight", "head.bias"] { weights[key] = nil }
        for i in 0..<4 { for p in ["weight", "bias"] { weights["norm\(i).\(p)"] = fixture["norm\(i).\(p)"] } }

        let model = SwinTransformer(SwinConfig(embedDim: 32, depths: [2, 2, 2, 2], numHeads: [1, 2, 4, 8], acmix: true,
                                               numClasses: 10, mode: .dense))
        model.eval()
        try model.load(stateDict: weights, strict: true)
        let x = try XCTUnwrap(fixture["input"])
        let feats = withNoGrad { model.features(x) }
        XCTAssertEqual(feats.map(\.shape), [[2, 32, 15, 12], [2, 64, 8, 6], [2, 128, 4, 3], [2, 256, 2, 2]])
        for i in 0..<4 { assertSwinClose(feats[i], fixture["out\(i)"], "dense out\(i)") }
    }
}
