import Backbones
import Config
import Data
import Distributed
import Engine
import Evaluation
import Foundation
import Heads
import Training

/// seg-train / seg-eval configs: the trainer keys, `model` (any registered segmentor) and `data` (any registered
/// segmentation dataset).
public enum SegmentationConfig: TaskConfig {
    public static var modelSchema: ConfigSchema { Registries.segmentors.schema }
    public static var dataSchema: ConfigSchema { SegmentationDatasets.registry.schema }
    /// mmseg's `evaluation.metric`: "mIoU" (or ["mIoU"]).
    public static var metricSchema: ConfigSchema { .anyOf([.oneOf(["mIoU"]), .array(.oneOf(["mIoU"]), count: 1)]) }

    /// The dataset's folders must exist before any work starts.
    public static func check(_ c: Config) throws { try SegmentationDatasets.checkFiles(c.section("data")) }

    /// Builds the segmentor of a validated config and checks that its backbone accepts the training crop.
    public static func buildModel(_ c: Config) throws -> any Segmentor {
        let model = try Registries.segmentors.build(c.section("model"))
        let crop = c.has("data.crop_size") ? try c.ints("data.crop_size") : [512, 512]
        do { try model.validate(height: crop[0], width: crop[1]) } catch { throw c.fail("data.crop_size", "\(error)") }
        return model
    }
}

/// Semantic segmentation training on a registered dataset; evaluation runs the model on every validation image at
/// its own size and scores it with mmseg's mIoU.
public final class SegmentationTask: TrainingTask {
    public let segmentor: any Segmentor
    public var model: Module { segmentor }
    public let data: SegmentationData
    public let cursor: BatchCursor<AnyDataset<SegmentationInput>>
    /// One image per batch: each is inferred at its own size (this rank's part of the split in a data-parallel job).
    public private(set) var valLoader: DataLoader<AnyDataset<SegmentationInput>>
    /// The data-parallel job after `distribute`; nil in one process.
    public private(set) var group: ProcessGroup?

    /// The task of a validated config and its built segmentor.
    public init(config c: Config, segmentor: any Segmentor) throws {
        self.segmentor = segmentor
        data = try SegmentationDatasets.registry.build(c.section("data"), UInt64(try c.int("seed", default: 0)))
        cursor = try data.loader.trainCursor(data.train)
        valLoader = data.loader.valLoader(data.val, batchSize: 1)
        if let n = data.classNames?.count, n != segmentor.numClasses {
            throw c.fail("model.decode_head.num_classes", "\(segmentor.numClasses) but the dataset has \(n) classes")
        }
    }

    public var itersPerEpoch: Int { cursor.itersPerEpoch }
    public var plottedMetrics: [String] { ["mIoU", "mAcc", "aAcc"] }

    public func prepare(startIteration: Int) throws { cursor.position(at: startIteration) }

    /// This rank's part of every training batch and of the validation split; evaluation sums the areas over ranks.
    public func distribute(over group: ProcessGroup) throws {
        valLoader = try data.loader.shard(Shard(rank: group.rank, count: group.size), trainCount: data.train.count,
                                          cursor: cursor, valLoader: valLoader)
        self.group = group
    }

    public func losses(iteration: Int) throws -> [(String, Tensor)] {
        let batch = try cursor.batch(iteration)
        guard let labels = batch.labels, batch.labelShape == [batch.shape[0], batch.shape[2], batch.shape[3]] else {
            throw KitError.data("training batch \(iteration): labels \(batch.labelShape ?? []) do not match the images \(batch.shape)")
        }
        let out = segmentor.forwardTrain(images: Tensor(batch.images, shape: batch.shape), labels: labels.map { Int32($0) })
        return out.lossTerms.map { ($0.name, $0.loss) }   // logged by mmseg's names; the trainer sums them
    }

    public func evaluate(iteration: Int) throws -> [(String, Double)] {
        var r = try evaluateSegmentation(segmentor, loader: valLoader)
        if let group {
            r = MIoUResult(totals: try sumAreas(r.totals, group: group))
            guard group.isMain else { return [] }
        }
        return [("mIoU", r.mIoU), ("mAcc", r.mAcc), ("aAcc", r.aAcc)]
    }
}

/// mmseg's single-GPU test: `segmentor` in eval mode (inference as its `testMode`) over every image of `loader`,
/// one at a time at its own (unpadded) size, each prediction rescaled to its label's original resolution and
/// scored with mmseg's IoU metric. `visit` gets each prediction (dataset index, the input, the predicted label map)
/// as it is made.
public func evaluateSegmentation<V: LoaderDataset>(_ segmentor: any Segmentor, loader: DataLoader<V>,
                                                   visit: ((Int, SegmentationInput, LabelMap) throws -> Void)? = nil) throws -> MIoUResult
where V.Item == SegmentationInput {
    let wasTraining = segmentor.training
    segmentor.eval()
    defer { if wasTraining { segmentor.train() } }
    var metric = MIoUMetric(numClasses: segmentor.numClasses)
    let it = loader.epoch(0)
    while let batch = try it.next() {
        let images = Tensor(batch.images, shape: batch.shape)
        for (k, item) in batch.items.enumerated() {
            let (h, w) = (item.image.height, item.image.width)
            let one = images.slice(axis: 0, start: k, end: k + 1).slice(axis: 2, start: 0, end: h).slice(axis: 3, start: 0, end: w)
            let logits = segmentor.inference(one, mode: segmentor.testMode, outputSize: (item.label.height, item.label.width))
            let map = LabelMap(width: item.label.width, height: item.label.height, labels: logits.argmax(axis: 1).map { UInt8($0) })
            _ = try metric.process(pred: map, label: item.label, name: "validation image \(batch.indices[k])")
            try visit?(batch.indices[k], item, map)
        }
    }
    return metric.compute()
}

/// `evaluateSegmentation` through a `SegmentationPredictor` on each validation image as stored (its source image),
/// so test-time augmentation can run: `augment` is mmseg 1.x's ms+flip. Labels come from the dataset's test
/// pipeline as usual.
public func evaluateSegmentation(_ predictor: SegmentationPredictor, dataset: AnyDataset<SegmentationInput>, augment: Bool,
                                 visit: ((Int, SegmentationInput, LabelMap) throws -> Void)? = nil) throws -> MIoUResult {
    var metric = MIoUMetric(numClasses: predictor.segmentor.numClasses)
    for index in 0..<dataset.count {
        var rng = SplitMix64(seed: 0)   // the test pipeline draws nothing
        let item = try dataset.item(at: index, rng: &rng), image = try dataset.sourceImage(at: index)
        let size = predictor.pipeline.inputSize(width: image.width, height: image.height)
        try predictor.validate(height: size.height, width: size.width, augment: augment, original: (image.height, image.width))
        let pred = predictor(image, augment: augment)
        _ = try metric.process(pred: pred, label: item.label, name: "validation image \(index)")
        try visit?(index, item, pred)
    }
    return metric.compute()
}
