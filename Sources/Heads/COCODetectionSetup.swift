import Data
import Foundation
import Training

/// A COCO instances file and its image folder as a detection dataset (mmdet's CocoDataset): labels are the
/// categories in id order, crowd boxes become ignore regions, and training skips images without usable boxes
/// (filter_empty_gt) while validation keeps every image.
public struct COCODetectionDataset: SourceImageDataset {
    public let coco: COCODataset
    public let imagePrefix: String
    public let pipeline: DetectionPipeline
    /// Positions in `coco.images` of the images this split uses.
    public let positions: [Int]

    public init(coco: COCODataset, imagePrefix: String, pipeline: DetectionPipeline, skipEmpty: Bool) {
        self.coco = coco; self.imagePrefix = imagePrefix; self.pipeline = pipeline
        positions = coco.images.indices.filter { i in
            !skipEmpty || coco.annotationIndices(imageId: coco.images[i].id).contains { !coco.annotations[Int($0)].iscrowd }
        }
    }

    public var count: Int { positions.count }

    public func imageID(_ index: Int) -> Int { coco.images[positions[index]].id }

    public func sourceImage(at index: Int) throws -> Image {
        try readImage((imagePrefix as NSString).appendingPathComponent(coco.images[positions[index]].fileName))
    }

    public func item(at index: Int, rng: inout SplitMix64) throws -> DetectionInput {
        let info = coco.images[positions[index]]
        let path = (imagePrefix as NSString).appendingPathComponent(info.fileName)
        let image = try readImage(path)
        guard image.width == info.width && image.height == info.height else {
            throw ConfigError("\(path): image is \(image.width)x\(image.height), the annotations say \(info.width)x\(info.height)")
        }
        let annotations = coco.annotationIndices(imageId: info.id).map { k -> InstanceAnnotation in
            let a = coco.annotations[Int(k)]
            return InstanceAnnotation(bbox: [a.bbox.x, a.bbox.y, a.bbox.w, a.bbox.h], label: coco.labelOfCategory[a.categoryId]!,
                                      isCrowd: a.iscrowd, area: a.area)
        }
        return pipeline(DetectionSample(filename: info.fileName, image: image, annotations: annotations), rng: &rng)
    }
}

/// `data.dataset = "coco"`: the train and val splits from `data.coco.{train,val}_{ann,img_prefix}`.
public struct COCODetectionSetup {
    public var train: COCODetectionDataset
    public var val: COCODetectionDataset
    public let valAnnotationPath: String

    public init(config c: Config) throws {
        let scale = try c.ints("data.img_scale", default: [1333, 800])
        let keep = try c.bool("data.keep_ratio", default: true), div = try c.int("data.size_divisor", default: 32)
        let flip = try c.double("data.flip_ratio", default: 0.5)
        func load(_ key: String) throws -> COCODataset {
            let path = try c.string(key)
            guard FileManager.default.fileExists(atPath: path) else { throw ConfigError("\(c.source(of: key)): \(key): file not found: \(path)") }
            return try COCODataset.load(path)
        }
        train = COCODetectionDataset(coco: try load("data.coco.train_ann"), imagePrefix: try c.string("data.coco.train_img_prefix"),
                                     pipeline: DetectionPipeline(imgScale: (scale[0], scale[1]), keepRatio: keep, flipRatio: flip,
                                                                 sizeDivisor: div, training: true), skipEmpty: true)
        val = COCODetectionDataset(coco: try load("data.coco.val_ann"), imagePrefix: try c.string("data.coco.val_img_prefix"),
                                   pipeline: DetectionPipeline(imgScale: (scale[0], scale[1]), keepRatio: keep, flipRatio: 0,
                                                               sizeDivisor: div, training: false), skipEmpty: false)
        valAnnotationPath = try c.string("data.coco.val_ann")
    }

    public func task(config c: Config, detector: any Detector) throws -> DetectionTask<COCODetectionDataset, COCODetectionDataset> {
        let seed = UInt64(try c.int("seed", default: 0))
        let bs = try c.int("data.samples_per_gpu", default: 2), workers = try c.int("data.workers_per_gpu", default: 1)
        let loader = DataLoader(dataset: train, batchSize: bs, shuffle: true, seed: seed, dropLast: true, workers: workers)
        let valLoader = DataLoader(dataset: val, batchSize: bs, shuffle: false, seed: seed, workers: workers)
        let task = DetectionTask(detector: detector, loader: loader, valLoader: valLoader, categoryIDs: train.coco.categoryIds)
        let val = self.val
        task.imageID = { val.imageID($0) }
        return task
    }
}
