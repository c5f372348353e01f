import Data
import Engine
import Foundation
import NN
import Training

/// The hook det-train calls to score its detections: given every validation image's id and its detections
/// (boxes x1y1x2y2 in original-image pixels, scores, contiguous 0-based labels), return the 12 COCO bbox stats in
/// pycocotools' order (AP, AP50, AP75, APs, APm, APl, AR1, AR10, AR100, ARs, ARm, ARl) as fractions.
///
/// The evaluator owns the ground truth and the label → category-id map. det-train ships without one (COCOeval lives
/// on another branch); wire it with `DetectionTask.evaluator = { ids, dets in ... }` (see det-train's
/// `makeEvaluator`). Without an evaluator, evaluation still runs inference and writes the COCO-format results file.
public typealias DetectionEvaluator = (_ imageIDs: [Int], _ detections: [ImageDetections]) throws -> [Double]

/// The names det-train logs for the first six COCO stats (mmdet's keys).
public let cocoBboxMetricNames = ["bbox_mAP", "bbox_mAP_50", "bbox_mAP_75", "bbox_mAP_s", "bbox_mAP_m", "bbox_mAP_l"]

/// The detection config: model (DetectorRegistry), data, and the trainer keys.
public enum DetectionConfig {
    public static var dataSchema: ConfigSchema {
        .object([
            .init("dataset", .oneOf(["shapes", "coco"]), required: true),
            .init("samples_per_gpu", .int), .init("workers_per_gpu", .int),
            .init("img_scale", .array(.int, count: 2)), .init("keep_ratio", .bool), .init("flip_ratio", .number),
            .init("size_divisor", .int),
            .init("shapes", .object([.init("size", .int), .init("seed", .int), .init("train_count", .int),
                                     .init("val_count", .int), .init("root", .string)])),
            .init("coco", .object([.init("train_ann", .string), .init("train_img_prefix", .string),
                                   .init("val_ann", .string), .init("val_img_prefix", .string)])),
        ])
    }

    public static var schema: ConfigSchema {
        .object(TrainerSettings.schemaFields + [
            .init("model", DetectorRegistry.modelSchema, required: true),
            .init("data", dataSchema, required: true),
        ])
    }

    /// Loads, merges, overrides and validates; every problem is reported naming its file and key.
    public static func load(path: String, overrides: [String] = []) throws -> Config {
        let c = try Config.load(path: path, overrides: overrides)
        try validate(c)
        return c
    }

    public static func validate(_ c: Config) throws {
        try c.validate(schema)
        try DetectorRegistry.check(c)
        _ = try TrainerSettings(config: c)
        if try c.string("data.dataset") == "coco" {
            // The files must exist before any work starts.
            for key in ["data.coco.train_ann", "data.coco.val_ann", "data.coco.train_img_prefix", "data.coco.val_img_prefix"] {
                let path = try c.string(key)
                guard FileManager.default.fileExists(atPath: path) else {
                    throw ConfigError("\(c.source(of: key)): \(key): file not found: \(path)")
                }
            }
        }
        let scale = try c.ints("data.img_scale", default: [1333, 800])
        if scale.contains(where: { $0 < 32 }) { throw ConfigError("\(c.source(of: "data.img_scale")): data.img_scale: sides must be at least 32") }
    }
}

/// Detection training on any `LoaderDataset` of `DetectionInput`s: batches are a pure function of (seed, iteration)
/// (the DataLoader's per-epoch shuffle and per-sample generators), prefetched in the background.
public final class DetectionTask<Train: LoaderDataset, Val: LoaderDataset>: TrainingTask
where Train.Item == DetectionInput, Val.Item == DetectionInput {
    public let detector: any Detector
    public var model: Module { detector }
    public let loader: DataLoader<Train>
    public let valLoader: DataLoader<Val>?
    /// Validation index → image id (COCO ids for COCO; index + 1 for the shapes writer's files).
    public var imageID: (Int) -> Int = { $0 + 1 }
    /// Contiguous label → dataset category id, for the results file.
    public var categoryIDs: [Int]
    public var evaluator: DetectionEvaluator?
    /// Where evaluation writes COCO-format results (`{work}/results_val.json`); nil writes none.
    public var resultsPath: String?
    /// Called with the detections of each evaluation (tests and measurement scripts).
    public var onDetections: ((_ imageIDs: [Int], _ detections: [ImageDetections]) -> Void)?
    private var iterator: DataLoader<Train>.EpochIterator?
    private var expected = -1
    private var warnedNoEvaluator = false

    public init(detector: any Detector, loader: DataLoader<Train>, valLoader: DataLoader<Val>?, categoryIDs: [Int]) {
        self.detector = detector; self.loader = loader; self.valLoader = valLoader; self.categoryIDs = categoryIDs
    }

    public var itersPerEpoch: Int { loader.batchesPerEpoch }

    public func prepare(startIteration: Int) throws { position(at: startIteration) }

    private func position(at it: Int) {
        let per = itersPerEpoch
        iterator = loader.epoch(it / per, startingAt: it % per)
        expected = it
    }

    public static func tensors(_ batch: Batch<DetectionInput>) -> (Tensor, [DetectionTarget]) {
        let images = Tensor(batch.images, shape: batch.shape)
        let targets = batch.items.map { DetectionTarget(boxes: $0.gtBboxes, labels: $0.gtLabels, ignore: $0.gtBboxesIgnore,
                                                        imgShape: $0.meta.imgShape) }
        return (images, targets)
    }

    public func losses(iteration: Int) throws -> [(String, Tensor)] {
        if iteration != expected || iterator == nil { position(at: iteration) }
        guard let batch = try iterator!.next() else { preconditionFailure("loader ran out inside an epoch") }
        expected = iteration + 1
        if expected % itersPerEpoch == 0 { iterator = nil }   // the next epoch starts a fresh iterator
        let (images, targets) = Self.tensors(batch)
        return detector.lossTerms(images, targets: targets)
    }

    /// Runs inference over the validation set: image ids and detections in dataset order.
    /// `progress` is called with the number of images done so far.
    public func detectAll(progress: ((Int) -> Void)? = nil) throws -> ([Int], [ImageDetections]) {
        guard let valLoader else { return ([], []) }
        var ids: [Int] = [], dets: [ImageDetections] = []
        let it = valLoader.epoch(0)
        while let batch = try it.next() {
            defer { progress?(ids.count) }
            let images = Tensor(batch.images, shape: batch.shape)
            let out = detector.predict(images, imgShapes: batch.items.map { $0.meta.imgShape },
                                       scaleFactors: batch.items.map { $0.meta.scaleFactor })
            ids += batch.indices.map(imageID)
            dets += out
        }
        return (ids, dets)
    }

    public func evaluate(iteration: Int) throws -> [(String, Double)] {
        guard valLoader != nil else { return [] }
        detector.eval()
        defer { detector.train() }
        let (ids, dets) = try detectAll()
        onDetections?(ids, dets)
        if let resultsPath { try writeCOCOResults(ids, dets, categoryIDs: categoryIDs, to: resultsPath) }
        guard let evaluator else {
            if !warnedNoEvaluator {
                warnedNoEvaluator = true
                FileHandle.standardError.write(Data(("evaluation: no DetectionEvaluator is wired, so no mAP is computed; "
                    + "detections are written to \(resultsPath ?? "(nowhere)")\n").utf8))
            }
            return []
        }
        let stats = try evaluator(ids, dets)
        guard stats.count >= 6 else { throw ConfigError("the detection evaluator returned \(stats.count) stats, expected 12") }
        return zip(cocoBboxMetricNames, stats).map { ($0, $1) }
    }
}

/// COCO results JSON: [{"image_id", "category_id", "bbox": [x, y, w, h], "score"}], as mmdet's `results2json`.
public func writeCOCOResults(_ ids: [Int], _ dets: [ImageDetections], categoryIDs: [Int], to path: String) throws {
    var items: [JSON] = []
    for (id, d) in zip(ids, dets) {
        for i in 0..<d.count {
            let b = d.boxes[(4 * i)..<(4 * i + 4)].map(Double.init)
            items.append(.object([("image_id", .int(id)), ("bbox", .array([b[0], b[1], b[2] - b[0], b[3] - b[1]].map { JSON.double($0) })),
                                  ("score", .double(Double(d.scores[i]))), ("category_id", .int(categoryIDs[d.labels[i]]))]))
        }
    }
    try JSON.array(items).serialized().write(toFile: path, atomically: true, encoding: .utf8)
}

/// The built-in shapes dataset, generated in memory: train split 0, val split 1 (the same images and ids as
/// `ShapesDatasetWriter` writes, so its instances_val.json is the matching ground truth).
public struct ShapesDetectionSetup {
    public var train: ShapesDetectionDataset
    public var val: ShapesDetectionDataset
    public var categoryIDs: [Int] { [1, 2, 3, 4] }

    public init(config c: Config) throws {
        let size = try c.int("data.shapes.size", default: 192), seed = UInt64(try c.int("data.shapes.seed", default: 0))
        let scale = try c.ints("data.img_scale", default: [size, size])
        let keep = try c.bool("data.keep_ratio", default: true), div = try c.int("data.size_divisor", default: 32)
        let flip = try c.double("data.flip_ratio", default: 0.5)
        let gen = ShapesGenerator(size: size, seed: seed)
        train = ShapesDetectionDataset(generator: gen, split: 0, count: try c.int("data.shapes.train_count", default: 300),
                                       pipeline: DetectionPipeline(imgScale: (scale[0], scale[1]), keepRatio: keep,
                                                                   flipRatio: flip, sizeDivisor: div, training: true))
        val = ShapesDetectionDataset(generator: gen, split: 1, count: try c.int("data.shapes.val_count", default: 60),
                                     pipeline: DetectionPipeline(imgScale: (scale[0], scale[1]), keepRatio: keep,
                                                                 flipRatio: 0, sizeDivisor: div, training: false))
    }

    /// Ground truth of the validation split in memory, for wiring an evaluator without reading files: per image its
    /// id (index + 1), size and COCO-style annotations (label = category id − 1). The same content as the
    /// `instances_val.json` that `ShapesDatasetWriter` writes.
    public func valGroundTruth() -> [(imageID: Int, width: Int, height: Int, annotations: [InstanceAnnotation])] {
        (0..<val.count).map { i in
            let ex = val.generator.example(split: val.split, index: i)
            return (i + 1, ex.image.width, ex.image.height, ex.annotations)
        }
    }

    /// The validation instances file under `data.shapes.root`, written with the whole dataset the first time (the
    /// evaluator reads ground truth from a file, as it does for COCO).
    public func valAnnotationPath(config c: Config) throws -> String {
        let root = try c.string("data.shapes.root", default: "data/shapes"), path = "\(root)/annotations/instances_val.json"
        if !FileManager.default.fileExists(atPath: path) {
            FileHandle.standardError.write(Data("writing the shapes dataset to \(root)\n".utf8))
            try ShapesDatasetWriter(generator: train.generator, trainCount: train.count, valCount: val.count).write(to: root)
        }
        return path
    }

    /// The task for a validated config and a built detector.
    public func task(config c: Config, detector: any Detector) throws -> DetectionTask<ShapesDetectionDataset, ShapesDetectionDataset> {
        let seed = UInt64(try c.int("seed", default: 0))
        let bs = try c.int("data.samples_per_gpu", default: 2), workers = try c.int("data.workers_per_gpu", default: 1)
        let loader = DataLoader(dataset: train, batchSize: bs, shuffle: true, seed: seed, dropLast: true, workers: workers)
        let valLoader = DataLoader(dataset: val, batchSize: bs, shuffle: false, seed: seed, workers: workers)
        return DetectionTask(detector: detector, loader: loader, valLoader: valLoader, categoryIDs: categoryIDs)
    }
}
