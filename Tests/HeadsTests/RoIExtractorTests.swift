import Engine
import Foundation
import Heads
import NN
import XCTest

/// The multi-level RoI extractor against mmdet 3.3's SingleRoIExtractor (Tests/Fixtures/roi_align/make_roi_extractor.py).
final class RoIExtractorTests: XCTestCase {
    func testMatchesMMDetLevelsForwardAndBackward() throws {
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/roi_align/roi_extractor.safetensors").path
        let f = try SafeTensors.read(path: path).tensors
        let rois = f["rois"]!.array
        let extractor = SingleRoIExtractor()
        XCTAssertEqual(extractor.levels(rois), f["levels"]!.array.map { Int($0) })
        XCTAssertEqual(Set(extractor.levels(rois)), [0, 1, 2, 3], "the fixture covers every level")
        let feats = (0..<4).map { Tensor(f["feat\($0)"]!.array, shape: f["feat\($0)"]!.shape, requiresGrad: true) }
        let y = extractor(feats, rois: rois)
        XCTAssertEqual(y.shape, f["output"]!.shape)
        XCTAssertLessThan(zip(y.array, f["output"]!.array).map { abs($0 - $1) }.max()!, 1e-5)
        (y * f["grad_output"]!).sum().backward()
        for i in 0..<4 {
            XCTAssertLessThan(zip(feats[i].grad!.array, f["grad_feat\(i)"]!.array).map { abs($0 - $1) }.max()!, 1e-5, "level \(i)")
        }
        XCTAssertEqual(extractor(feats, rois: []).shape, [0, 4, 7, 7])
    }
}
