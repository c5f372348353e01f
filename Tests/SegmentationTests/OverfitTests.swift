import Backbones
import Data
import Engine
import Evaluation
import Foundation
import Heads
import NN
import XCTest

/// A tiny UperNet (with its FCN auxiliary head) memorises four shapes images: the summed loss must fall at least
/// 5× in 100 AdamW steps, on two cores in release, well inside a minute.
final class OverfitTests: XCTestCase {
    func testTinyUperNetOverfitsShapes() throws {
        EngineRandom.seed(0)
        // Test-mode pipeline at the generated size: no resize or crop, background (0) is a real class.
        let pipeline = SegmentationPipeline(imgScale: (64, 64), ratioRange: nil, photometric: false,
                                            reduceZeroLabel: false, training: false)
        let dataset = ShapesSegmentationDataset(generator: ShapesGenerator(size: 64, seed: 3), count: 4, pipeline: pipeline)
        var rng = SplitMix64(seed: 0)
        let batch = Batch(indices: Array(0..<4), items: (0..<4).map { dataset.item(at: $0, rng: &rng) })
        XCTAssertEqual(batch.shape, [4, 3, 64, 64])
        let images = Tensor(batch.images, shape: batch.shape)
        let labels = batch.labels!
        XCTAssertTrue(Set(labels).count >= 3, "the images should show several classes")

        let model = EncoderDecoder.upernet(backbone: TinyBackbone(channels: [16, 32, 64, 64]), numClasses: 5,
                                           channels: 32, auxChannels: 16).train()
        let optimizer = AdamW(paramGroups(model, weightDecay: 0.01, noDecayOn1D: true, noDecayKeys: []), lr: 1e-2)
        var curve: [Float] = []
        let start = Date()
        for _ in 0..<100 {
            optimizer.zeroGrad()
            let out = model.forwardTrain(images: images, labels: labels)
            out.loss.backward()
            optimizer.step()
            curve.append(out.loss.item)
        }
        let seconds = Date().timeIntervalSince(start)
        let first = curve[0], last = curve.suffix(5).reduce(0, +) / 5
        print("overfit loss curve (every 10th step):", stride(from: 0, to: 100, by: 10).map { String(format: "%.3f", curve[$0]) }.joined(separator: " "),
              String(format: "last-5 mean %.4f, ratio %.1fx, %.1f s", last, first / last, seconds))
        XCTAssertGreaterThanOrEqual(first / last, 5, "loss \(first) → \(last)")
        XCTAssertLessThan(seconds, 60)

        // What it memorised holds in eval mode too (running statistics, no dropout), scored as seg-eval scores it.
        model.eval()
        let pred = model.predict(images)
        var metric = MIoUMetric(numClasses: 5)
        for (i, item) in batch.items.enumerated() {
            let n = item.label.width * item.label.height
            try metric.process(pred: LabelMap(width: 64, height: 64, labels: pred[(i * n)..<((i + 1) * n)].map { UInt8($0) }),
                               label: item.label)
        }
        let result = metric.compute()
        print(String(format: "overfit eval aAcc %.3f mIoU %.3f", result.aAcc, result.mIoU))
        // Background is ~84% of these pixels, so 0.95 means the shapes themselves are segmented.
        XCTAssertGreaterThan(result.aAcc, 0.95)
    }
}
