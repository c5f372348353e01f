import Backbones
import Config
import Data
import Distributed
import Engine
import Evaluation
import Foundation
import Heads
import Training

/// det-train / det-eval configs: the trainer keys, `model` (any registered detector) and `data` (any registered
/// detection dataset).
public enum DetectionConfig: TaskConfig {
    public static var modelSchema: ConfigSchema { Registries.detectors.schema }
    public static var dataSchema: ConfigSchema { DetectionDatasets.registry.schema }
    /// mmdet's `evaluation.metric`: "bbox", "segm" or a list of them (segm needs a detector that predicts masks).
    public static var metricSchema: ConfigSchema { .anyOf([.oneOf(["bbox", "segm"]), .array(.oneOf(["bbox", "segm"]))]) }

    /// The IoU types `evaluation.metric` asks for, in order; by default bbox, and segm too for a detector that
    /// predicts masks (mmdet's CocoMetric defaults of its configs).
    static func iouTypes(_ c: Config, predictsMasks: Bool) throws -> [Params.IouType] {
        guard let v = c["evaluation.metric"] else { return predictsMasks ? [.bbox, .segm] : [.bbox] }
        let names = v.stringValue.map { [$0] } ?? (v.arrayValue ?? []).compactMap(\.stringValue)
        guard !names.isEmpty, Set(names).count == names.count else {
            throw c.fail("evaluation.metric", "expected bbox, segm or a list of them without repeats")
        }
        if names.contains("segm") && !predictsMasks {
            throw c.fail("evaluation.metric", "segm needs a detector that predicts masks (a roi_head.mask_head)")
        }
        return names.compactMap(Params.IouType.init(rawValue:))
    }

    /// The dataset's files must exist before any work starts.
    public static func check(_ c: Config) throws { try DetectionDatasets.checkFiles(c.section("data")) }

    /// Builds the detector of a validated config.
    public static func buildModel(_ c: Config) throws -> any Detector { try Registries.detectors.build(c.section("model")) }
}

/// Detection training and evaluation: batches are a pure function of (seed, iteration) (the DataLoader's per-epoch
/// shuffle and per-sample generators), prefetched in the background; evaluation runs the detector over the
/// validation split and scores it with the task's evaluator.
public final class DetectionTask: TrainingTask {
    public let detector: any Detector
    public var model: Module { detector }
    public let data: DetectionData
    public let cursor: BatchCursor<AnyDataset<DetectionInput>>
    /// The validation split (this rank's part of it in a data-parallel job).
    public private(set) var valLoader: DataLoader<AnyDataset<DetectionInput>>
    /// The data-parallel job after `distribute`; nil in one process.
    public private(set) var group: ProcessGroup?
    /// COCOeval (bbox) against the dataset's validation annotations; replaceable.
    public var evaluator: DetectionEvaluator
    /// The same evaluator as the COCO one it starts as (det-eval reads its ground truth).
    public let cocoEvaluator: COCODetectionEvaluator
    /// Where evaluation writes COCO-format results (`{work}/results_val.json`); nil writes none.
    public var resultsPath: String?
    /// Called with the detections of each evaluation (tests and measurement scripts).
    public var onDetections: ((_ imageIDs: [Int], _ detections: [ImageDetections]) -> Void)?

    /// The task of a validated config and its built detector.
    public init(config c: Config, detector: any Detector) throws {
        self.detector = detector
        let seed = UInt64(try c.int("seed", default: 0))
        data = try DetectionDatasets.registry.build(c.section("data"), DetectionDataContext(seed: seed, withMask: detector.predictsMasks))
        // The largest padded input the pipeline makes must suit the backbone (ACmix needs maps > its window).
        do { try detector.backbone.validate(height: data.largestInput.height, width: data.largestInput.width) } catch {
            throw c.fail("data.img_scale", "\(error)")
        }
        cursor = try data.loader.trainCursor(data.train)
        valLoader = data.loader.valLoader(data.val)
        cocoEvaluator = COCODetectionEvaluator(annotations: data.valAnnotations, categoryIDs: data.categoryIDs,
                                               iouTypes: try DetectionConfig.iouTypes(c, predictsMasks: detector.predictsMasks))
        evaluator = cocoEvaluator
    }

    public var itersPerEpoch: Int { cursor.itersPerEpoch }
    /// AP and AP50 of each IoU type (and AP75 when there is one type).
    public var plottedMetrics: [String] {
        let names = evaluator.metricNames
        return names.count > 6 ? stride(from: 0, to: names.count, by: 6).flatMap { names[$0..<($0 + 2)] } : Array(names.prefix(3))
    }

    public func prepare(startIteration: Int) throws { cursor.position(at: startIteration) }

    /// This rank's part of every training batch and of the validation split; evaluation gathers on rank 0.
    public func distribute(over group: ProcessGroup) throws {
        valLoader = try data.loader.shard(Shard(rank: group.rank, count: group.size), trainCount: data.train.count,
                                          cursor: cursor, valLoader: valLoader)
        self.group = group
    }

    /// Images [N, 3, H, W] and targets (with masks when the dataset has them) of a collated batch.
    public static func tensors(_ batch: Batch<DetectionInput>) -> (Tensor, [DetectionTarget]) {
        let images = Tensor(batch.images, shape: batch.shape)
        let targets = batch.items.map { item -> DetectionTarget in
            let masks = item.gtMasks.map { m in
                (0..<m.count).map { BitmapMask(width: m.width, height: m.height,
                                               data: Array(m.masks[(($0) * m.width * m.height)..<(($0 + 1) * m.width * m.height)])) }
            }
            return DetectionTarget(boxes: item.gtBboxes, labels: item.gtLabels, ignore: item.gtBboxesIgnore,
                                   imgShape: item.meta.imgShape, masks: masks)
        }
        return (images, targets)
    }

    public func losses(iteration: Int) throws -> [(String, Tensor)] {
        let (images, targets) = Self.tensors(try cursor.batch(iteration))
        return detector.lossTerms(images, targets: targets)
    }

    /// Runs inference over the validation set: image ids and detections in dataset order. `progress` is called
    /// with the number of images done so far.
    public func detectAll(progress: ((Int) -> Void)? = nil) throws -> ([Int], [ImageDetections]) {
        let (indices, dets) = try detectIndexed(progress: progress)
        return (indices.map(data.val.imageID), dets)
    }

    /// `detectAll` with dataset indices instead of image ids.
    func detectIndexed(progress: ((Int) -> Void)? = nil) throws -> ([Int], [ImageDetections]) {
        var indices: [Int] = [], dets: [ImageDetections] = []
        let it = valLoader.epoch(0)
        while let batch = try it.next() {
            defer { progress?(indices.count) }
            let images = Tensor(batch.images, shape: batch.shape)
            dets += detector.predict(images, imgShapes: batch.items.map { $0.meta.imgShape },
                                     scaleFactors: batch.items.map { $0.meta.scaleFactor }, oriShapes: batch.items.map { $0.meta.oriShape })
            indices += batch.indices
        }
        return (indices, dets)
    }

    /// Detects the validation split (each rank its part, gathered on rank 0 in dataset order) and scores it; the
    /// metrics on rank 0, nothing on the other ranks.
    public func evaluate(iteration: Int) throws -> [(String, Double)] {
        detector.eval()
        defer { detector.train() }
        var (indices, dets) = try detectIndexed()
        if let group {
            guard let all = try gatherDetections(indices, dets, group: group) else { return [] }
            (indices, dets) = all
        }
        let ids = indices.map(data.val.imageID)
        onDetections?(ids, dets)
        if let resultsPath { try writeCOCOResults(cocoResults(ids, dets, categoryIDs: data.categoryIDs), to: resultsPath) }
        return try evaluator.evaluate(ids, dets, printSummary: true)
    }
}
