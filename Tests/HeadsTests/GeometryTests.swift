import Engine
import Foundation
import Heads
import XCTest

/// Anchors, box coding, assignment and NMS against mmdet/mmcv values and brute-force references.
final class GeometryTests: XCTestCase {
    func assertClose(_ a: [Float], _ b: [Float], tol: Float = 1e-3, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.count, b.count, file: file, line: line)
        for (x, y) in zip(a, b) where abs(x - y) > tol { XCTFail("\(a) != \(b)", file: file, line: line); return }
    }

    /// mmdet tests/test_utils/test_anchor.py `test_retina_anchor`: the stride-8 base anchors of RetinaNet.
    func testRetinaBaseAnchorsMatchMMDet() {
        let g = AnchorGenerator()
        let expected: [Float] = [
            -22.6274, -11.3137, 22.6274, 11.3137, -28.5088, -14.2544, 28.5088, 14.2544, -35.9188, -17.9594, 35.9188, 17.9594,
            -16.0000, -16.0000, 16.0000, 16.0000, -20.1587, -20.1587, 20.1587, 20.1587, -25.3984, -25.3984, 25.3984, 25.3984,
            -11.3137, -22.6274, 11.3137, 22.6274, -14.2544, -28.5088, 14.2544, 28.5088, -17.9594, -35.9188, 17.9594, 35.9188,
        ]
        assertClose(g.baseAnchors(level: 0), expected)
        XCTAssertEqual(g.numBaseAnchors, 9)
        // Level 4 (stride 128) is the same shape scaled by 16.
        assertClose(g.baseAnchors(level: 4), expected.map { $0 * 16 }, tol: 2e-2)
    }

    /// Grid order: row-major locations, then the 9 base anchors; shifts are x·stride, y·stride (center offset 0).
    func testGridAnchorOrder() {
        let g = AnchorGenerator()
        let a = g.gridAnchors(level: 1, height: 2, width: 3)
        XCTAssertEqual(a.count, 2 * 3 * 9 * 4)
        let base = g.baseAnchors(level: 1)
        for loc in 0..<6 {
            let (y, x) = (loc / 3, loc % 3)
            for k in 0..<9 {
                let i = (loc * 9 + k) * 4
                assertClose(Array(a[i..<(i + 4)]), [base[4 * k] + Float(16 * x), base[4 * k + 1] + Float(16 * y),
                                                    base[4 * k + 2] + Float(16 * x), base[4 * k + 3] + Float(16 * y)])
            }
        }
        let all = g.anchors(featureSizes: [(4, 4), (2, 2), (1, 1), (1, 1), (1, 1)])
        XCTAssertEqual(all.count, (16 + 4 + 3) * 9 * 4)
        assertClose(Array(all[(16 * 36)..<(16 * 36 + 4)]), Array(g.baseAnchors(level: 1)[0..<4]))
    }

    func testBoxCoderRoundTripClampAndClip() {
        var rng = SplitMix64(seed: 3)
        var anchors: [Float] = [], gts: [Float] = []
        for _ in 0..<200 {
            let x = Float(rng.uniform(0, 300)), y = Float(rng.uniform(0, 300))
            anchors += [x, y, x + Float(rng.uniform(8, 200)), y + Float(rng.uniform(8, 200))]
            let u = Float(rng.uniform(0, 300)), v = Float(rng.uniform(0, 300))
            gts += [u, v, u + Float(rng.uniform(4, 150)), v + Float(rng.uniform(4, 150))]
        }
        for coder in [DeltaXYWHBBoxCoder(), DeltaXYWHBBoxCoder(means: [0.1, -0.1, 0, 0.2], stds: [0.1, 0.1, 0.2, 0.2])] {
            let d = coder.encode(anchors: anchors, gts: gts)
            assertClose(coder.decode(anchors: anchors, deltas: d), gts, tol: 2e-3)
        }
        // Identity anchor ↔ gt → zero deltas; mmdet's formula on one case.
        assertClose(DeltaXYWHBBoxCoder().encode(anchors: [0, 0, 10, 20], gts: [0, 0, 10, 20]), [0, 0, 0, 0])
        assertClose(DeltaXYWHBBoxCoder().encode(anchors: [0, 0, 10, 10], gts: [5, 0, 25, 5]),
                    [1, -0.25, Foundation.log(2), Foundation.log(0.5)], tol: 1e-5)
        // dw, dh clamp at log(1000/16): width at most 62.5x the anchor's.
        let big = DeltaXYWHBBoxCoder().decode(anchors: [0, 0, 10, 10], deltas: [0, 0, 10, -10])
        XCTAssertEqual(big[2] - big[0], 625, accuracy: 0.05)
        XCTAssertEqual(big[3] - big[1], 0.16, accuracy: 1e-3)
        // Clip to (height, width).
        assertClose(DeltaXYWHBBoxCoder().decode(anchors: [0, 0, 10, 10], deltas: [-1, 1, 0, 0], maxShape: (12, 30)),
                    [0, 10, 0, 12])
    }

    func testMaxIoUAssignerHandCases() {
        let gts: [Float] = [0, 0, 10, 10, 50, 50, 54, 54]
        let anchors: [Float] = [
            0, 0, 10, 10,        // IoU 1 with gt0 → positive
            5, 0, 15, 10,        // 0.333 → negative
            2, 0, 12, 10,        // 0.667 → positive
            3, 0, 13, 10,        // 0.538 → positive
            4, 0, 14, 10,        // 0.4286 → ignored (between thresholds)
            100, 100, 110, 110,  // 0 → negative
            50, 50, 60, 60,      // 0.16, gt1's best → positive (low-quality match)
            45, 45, 55, 55,      // 0.16 too: gt_max_assign_all → positive as well
            210, 210, 220, 220,  // inside the ignore box (IoF 1) → ignored
            290, 290, 310, 310,  // IoF 0.25 with the ignore box → negative
        ]
        let ignore: [Float] = [200, 200, 300, 300]
        let assigner = MaxIoUAssigner()
        XCTAssertEqual(assigner.assign(anchors: anchors, gts: gts, ignore: ignore), [1, 0, 1, 1, -1, 0, 2, 2, -1, 0])
        // gt_max_assign_all off: only the first best anchor gets the low-quality match.
        var single = assigner
        single.gtMaxAssignAll = false
        XCTAssertEqual(single.assign(anchors: anchors, gts: gts, ignore: ignore), [1, 0, 1, 1, -1, 0, 2, 0, -1, 0])
        // No ignore regions: the anchor inside it is a plain negative.
        XCTAssertEqual(assigner.assign(anchors: anchors, gts: gts)[8], 0)
        // An ignored anchor is not matched even when it overlaps a gt well.
        XCTAssertEqual(assigner.assign(anchors: [0, 0, 10, 10, 0, 0, 9, 10], gts: [0, 0, 10, 10], ignore: [0, 0, 10, 10]), [-1, -1])
        // No ground truth: everything is background.
        XCTAssertEqual(assigner.assign(anchors: anchors, gts: []), [Int](repeating: 0, count: 10))
        XCTAssertEqual(bboxOverlaps([0, 0, 10, 10], [5, 0, 15, 10]), [Float(50) / 150])
        XCTAssertEqual(bboxOverlaps([0, 0, 10, 10], [5, 0, 15, 10], iof: true), [0.5])
    }

    /// Greedy NMS by class against a direct reference: per class, repeatedly take the best remaining box and drop
    /// every box overlapping it by more than the threshold; results merged by score.
    func testBatchedNMSMatchesBruteForce() {
        var rng = SplitMix64(seed: 11)
        for trial in 0..<20 {
            let n = 30 + trial * 7
            var boxes: [Float] = [], scores: [Float] = [], labels: [Int] = []
            for _ in 0..<n {
                let x = Float(rng.uniform(0, 100)), y = Float(rng.uniform(0, 100))
                boxes += [x, y, x + Float(rng.uniform(5, 60)), y + Float(rng.uniform(5, 60))]
                scores.append(Float(rng.uniform()))
                labels.append(rng.randint(0, 3))
            }
            let thr: Float = trial % 2 == 0 ? 0.5 : 0.3
            var reference: [Int] = []
            for c in 0..<3 {
                var remaining = (0..<n).filter { labels[$0] == c }
                while let best = remaining.max(by: { scores[$0] < scores[$1] || (scores[$0] == scores[$1] && $0 > $1) }) {
                    reference.append(best)
                    remaining = remaining.filter { j in
                        j != best && bboxOverlaps(Array(boxes[(4 * best)..<(4 * best + 4)]), Array(boxes[(4 * j)..<(4 * j + 4)]))[0] <= thr
                    }
                }
            }
            reference.sort { scores[$0] > scores[$1] }
            XCTAssertEqual(batchedNMS(boxes: boxes, scores: scores, labels: labels, iouThreshold: thr), reference, "trial \(trial)")
        }
        XCTAssertEqual(nms(boxes: [0, 0, 10, 10, 1, 0, 11, 10, 50, 50, 60, 60], scores: [0.9, 0.8, 0.7], iouThreshold: 0.5), [0, 2])
    }

    /// mmdet py_sigmoid_focal_loss: −α(1−p)^γ log p for targets 1, −(1−α) p^γ log(1−p) for targets 0.
    func testSigmoidFocalLossMatchesFormula() {
        let logits: [Float] = [-3, -1, -0.2, 0, 0.5, 2, 4, -5]
        let targets: [Float] = [0, 1, 0, 1, 1, 0, 1, 0]
        let loss = sigmoidFocalLoss(Tensor(logits, shape: [8]), Tensor(targets, shape: [8]), gamma: 2, alpha: 0.25, reduction: .none)
        for i in 0..<8 {
            let p = 1 / (1 + Foundation.exp(-Double(logits[i])))
            let expected = targets[i] == 1 ? -0.25 * pow(1 - p, 2) * Foundation.log(p) : -0.75 * pow(p, 2) * Foundation.log(1 - p)
            XCTAssertEqual(Double(loss[flat: i]), expected, accuracy: 1e-5 * max(1, expected))
        }
    }
}
