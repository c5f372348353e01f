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

    /// Losses and gradients with a sampler that keeps every candidate (no random draw to match across frameworks).
    func testLossesAndGradientsMatchMMDet() throws {
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/rpn/rpn.safetensors").path
        let f = try SafeTensors.read(path: path).tensors
        let head = RPNHead(inChannels: 8, featChannels: 8)
        try head.load(stateDict: f, strict: false, stripPrefix: "head.")
        head.sampler = RandomSampler(num: 100_000, posFraction: 0.5)
        let feats = (0..<5).map { Tensor(f["feat\($0)"]!.array, shape: f["feat\($0)"]!.shape, requiresGrad: true) }
        let targets = (0..<2).map { i -> DetectionTarget in
            let g = f["gt\(i)"]!.array
            return DetectionTarget(boxes: g, labels: [Int](repeating: 0, count: g.count / 4), imgShape: i == 0 ? (90, 120) : (96, 100))
        }
        let terms = head.loss(feats, targets: targets)
        XCTAssertEqual(terms.map(\.0), ["loss_rpn_cls", "loss_rpn_bbox"])
        XCTAssertEqual(terms[0].1.item, f["loss.cls"]!.array[0], accuracy: 1e-4 * f["loss.cls"]!.array[0])
        XCTAssertEqual(terms[1].1.item, f["loss.bbox"]!.array[0], accuracy: 1e-4 * f["loss.bbox"]!.array[0])
        (terms[0].1 + terms[1].1).backward()
        func close(_ a: [Float], _ b: [Float], _ what: String) {
            let scale = max(b.map(abs).max() ?? 0, 1e-12)
            XCTAssertLessThan(zip(a, b).map { abs($0 - $1) }.max()! / scale, 1e-4, what)
        }
        for (k, p) in head.namedParameters() { close(p.grad!.array, f["grad.head.\(k)"]!.array, k) }
        for i in 0..<5 { close(feats[i].grad!.array, f["grad.feat\(i)"]!.array, "feat\(i)") }
    }

    /// RandomSampler keeps at most num·fraction positives, fills with negatives, never draws ignored anchors, and
    /// draws the same anchors from the same seed.
    func testRandomSamplerCounts() {
        let assigned = (0..<1000).map { i in i % 10 == 0 ? 1 + i % 3 : (i % 10 == 1 ? -1 : 0) }
        var rng = SplitMix64(seed: 4), rng2 = SplitMix64(seed: 4)
        let s = RandomSampler(num: 64, posFraction: 0.25).sample(assigned, rng: &rng)
        XCTAssertEqual(s.pos.count, 16)
        XCTAssertEqual(s.neg.count, 48)
        XCTAssertTrue(s.pos.allSatisfy { assigned[$0] > 0 } && s.neg.allSatisfy { assigned[$0] == 0 })
        XCTAssertEqual(Set(s.pos).count, 16)
        let again = RandomSampler(num: 64, posFraction: 0.25).sample(assigned, rng: &rng2)
        XCTAssertEqual(again.pos, s.pos); XCTAssertEqual(again.neg, s.neg)
        let few = RandomSampler(num: 512, posFraction: 0.5).sample(assigned, rng: &rng)
        XCTAssertEqual(few.pos.count, 100, "fewer positives than wanted: all of them")
        XCTAssertEqual(few.neg.count, 412)
    }
}
