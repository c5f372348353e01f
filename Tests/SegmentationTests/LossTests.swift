import Engine
import Foundation
import Heads
import NN
import XCTest

final class LossTests: XCTestCase {
    /// Labels for [2, 3, 4, 4] logits with a quarter of the pixels at 255.
    func labels() -> [Int32] {
        var rng = SplitMix64(seed: 4)
        return (0..<32).map { _ in rng.uniform() < 0.25 ? 255 : Int32(rng.randint(0, 3)) }
    }

    /// mmseg 0.x CrossEntropyLoss by hand: Σ over kept pixels of w[t]·(logsumexp − x_t), divided by all pixels
    /// (or by the kept ones with avg_non_ignore).
    func reference(_ logits: Tensor, _ labels: [Int32], weight: [Float]?, nonIgnore: Bool) -> Double {
        let (c, s) = (logits.shape[1], logits.shape[2] * logits.shape[3])
        var total = 0.0, kept = 0
        for (p, t) in labels.enumerated() where t != 255 {
            let b = p / s, i = p % s
            let xs = (0..<c).map { Double(logits.data[(b * c + $0) * s + i]) }
            let lse = Foundation.log(xs.map { Foundation.exp($0) }.reduce(0, +))
            total += Double(weight?[Int(t)] ?? 1) * (lse - xs[Int(t)])
            kept += 1
        }
        return total / Double(nonIgnore ? kept : labels.count)
    }

    func testLossMatchesMMSegReductions() {
        let logits = randomTensor([2, 3, 4, 4], seed: 1)
        let y = labels()
        for (weight, nonIgnore) in [(nil, false), (nil, true), ([0.5, 1, 2] as [Float]?, false), ([0.5, 1, 2], true)] {
            let loss = SegmentationLoss(classWeight: weight, lossWeight: 0.4, avgNonIgnore: nonIgnore)
            let value = loss(logits, labels: y, labelSize: (4, 4)).item
            XCTAssertEqual(Double(value), 0.4 * reference(logits, y, weight: weight, nonIgnore: nonIgnore), accuracy: 1e-5)
        }
    }

    /// Changing logits at ignored pixels changes neither the loss nor any gradient, and ignored pixels get zero gradient.
    func testIgnoredPixelsDoNotAffectLossOrGradients() {
        let y = labels()
        let a = randomTensor([2, 3, 4, 4], seed: 1, requiresGrad: true)
        let b = a.detached().copy()
        for (p, t) in y.enumerated() where t == 255 {
            for k in 0..<3 { b.data[((p / 16) * 3 + k) * 16 + p % 16] += 100 * Float(k + 1) }
        }
        b.requiresGrad = true
        let loss = SegmentationLoss(classWeight: [1, 2, 3])
        let la = loss(a, labels: y, labelSize: (4, 4)), lb = loss(b, labels: y, labelSize: (4, 4))
        la.backward(); lb.backward()
        XCTAssertEqual(la.item, lb.item)
        XCTAssertEqual(a.grad!.array, b.grad!.array)
        for (p, t) in y.enumerated() where t == 255 {
            for k in 0..<3 { XCTAssertEqual(a.grad!.data[((p / 16) * 3 + k) * 16 + p % 16], 0) }
        }
    }

    /// Coarse logits are upsampled to the label size before the loss (BaseDecodeHead.losses), with gradients.
    func testLogitsAreResizedToTheLabels() {
        let coarse = randomTensor([2, 3, 2, 2], seed: 2, requiresGrad: true)
        let y = labels()
        let loss = SegmentationLoss()(coarse, labels: y, labelSize: (4, 4))
        let up = coarse.detached().resizeBilinear(4, 4)
        XCTAssertEqual(Double(loss.item), reference(up, y, weight: nil, nonIgnore: false), accuracy: 1e-5)
        loss.backward()
        XCTAssertEqual(coarse.grad?.shape, [2, 3, 2, 2])
    }

    func testAllIgnoredGivesZeroLoss() {
        let x = randomTensor([1, 3, 4, 4], seed: 3, requiresGrad: true)
        let l = SegmentationLoss()(x, labels: [Int32](repeating: 255, count: 16), labelSize: (4, 4))
        XCTAssertEqual(l.item, 0)
        l.backward()
        XCTAssertEqual(x.grad?.array, [Float](repeating: 0, count: 48))
    }

    func testAccuracyCountsKeptPixels() {
        let x = Tensor([0, 1, 1, 0, /* class 1 logits */ 1, 0, 0, 1], shape: [1, 2, 2, 2])
        // argmax: [1, 0, 0, 1]; labels: right, wrong, ignored, right → 2 of 3.
        XCTAssertEqual(x.argmax(axis: 1), [1, 0, 0, 1])
        // Ties go to the first index, as torch.argmax; other axes index the remaining dims row-major.
        XCTAssertEqual(Tensor([2, 2, 1, 3, 3, 0], shape: [2, 3]).argmax(axis: 1), [0, 0])
        XCTAssertEqual(Tensor([2, 2, 1, 3, 3, 0], shape: [2, 3]).argmax(axis: 0), [1, 1, 0])
        XCTAssertEqual(SegmentationLoss().accuracy(x, labels: [1, 1, 255, 1], labelSize: (2, 2)), 200 / 3, accuracy: 1e-4)
    }
}
