import Engine
import Foundation
import NN
import XCTest

/// RoIAlign against torchvision's roi_align (which mmcv's equals), forward and backward, and its gradient check.
final class RoIAlignTests: XCTestCase {
    func testMatchesTorchvisionForwardAndBackward() throws {
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/roi_align/roi_align.safetensors").path
        let f = try SafeTensors.read(path: path).tensors
        let rois = f["rois"]!.array
        for (name, outH, outW, ratio, aligned) in [("a7s0", 7, 7, 0, true), ("a7s2", 7, 7, 2, true), ("a14s0", 14, 14, 0, true),
                                                   ("u5x3s0", 5, 3, 0, false)] {
            let x = Tensor(f["features"]!.array, shape: f["features"]!.shape, requiresGrad: true)
            let y = x.roiAlign(rois: rois, outH: outH, outW: outW, spatialScale: 0.25, samplingRatio: ratio, aligned: aligned)
            let ref = f["\(name).output"]!
            XCTAssertEqual(y.shape, ref.shape, name)
            var worst: Float = 0
            for (a, b) in zip(y.array, ref.array) { worst = max(worst, abs(a - b)) }
            XCTAssertLessThan(worst, 1e-5, "\(name) forward")
            (y * f["\(name).grad_output"]!).sum().backward()
            worst = 0
            for (a, b) in zip(x.grad!.array, f["\(name).grad_features"]!.array) { worst = max(worst, abs(a - b)) }
            XCTAssertLessThan(worst, 1e-5, "\(name) backward")
        }
    }

    func testGradientCheck() {
        let x = randomTensor([2, 2, 6, 7], seed: 3)
        let rois: [Float] = [0, 1.2, 0.7, 5.9, 4.4, 1, -0.8, 2.0, 3.3, 7.5, 1, 2.0, 1.0, 2.6, 1.9]
        gradCheck([x]) { $0[0].roiAlign(rois: rois, outH: 3, outW: 2, spatialScale: 1, samplingRatio: 0, aligned: true) }
        gradCheck([x]) { $0[0].roiAlign(rois: rois, outH: 2, outW: 2, spatialScale: 0.5, samplingRatio: 3, aligned: false) }
    }
}
