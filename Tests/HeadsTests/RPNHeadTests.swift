import Engine
import Foundation
import Heads
import NN
import XCTest

/// RPN proposals against mmdet 3.3's RPNHead.predict_by_feat (Tests/Fixtures/rpn/make_rpn.py).
final class RPNHeadTests: XCTestCase {
    func testProposalsMatchMMDet() throws {
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/rpn/rpn.safetensors").path
        let f = try SafeTensors.read(path: path).tensors
        let head = RPNHead(inChannels: 8, featChannels: 8)
        XCTAssertEqual(Set(head.stateDict().keys), Set(f.keys.filter { $0.hasPrefix("head.") }.map { String($0.dropFirst(5)) }))
        try head.load(stateDict: f, strict: false, stripPrefix: "head.")
        let feats = (0..<5).map { f["feat\($0)"]! }
        let cfg = RPNHead.ProposalConfig(nmsPre: 200, minBBoxSize: 0, iouThreshold: 0.7, maxPerImage: 150)
        let props = head.proposals(feats, imgShapes: [(90, 120), (96, 100)], config: cfg)
        for (i, p) in props.enumerated() {
            let refBoxes = f["proposals\(i).boxes"]!.array, refScores = f["proposals\(i).scores"]!.array
            XCTAssertEqual(p.scores.count, refScores.count, "image \(i)")
            guard p.scores.count == refScores.count else { continue }
            XCTAssertLessThan(zip(p.boxes, refBoxes).map { abs($0 - $1) }.max()!, 1e-2, "image \(i) boxes")
            XCTAssertLessThan(zip(p.scores, refScores).map { abs($0 - $1) }.max()!, 1e-4, "image \(i) scores")
        }
    }
}
