import Config
import Data
import Engine
import Foundation

/// What a detection dataset gives its task: the two splits through their pipelines, the ground truth the
/// evaluator scores against, and the label ↔ category mapping.
public struct DetectionData {
    public var train: AnyDataset<DetectionInput>
    public var val: AnyDataset<DetectionInput>
    /// The validation instances file (COCO format); the built-in dataset writes it on first use.
    public var valAnnotations: () throws -> String
    /// Contiguous label → dataset category id.
    public var categoryIDs: [Int]
    public var loader: LoaderSettings
    /// The largest padded input (height, width) the pipelines make, for checking that the backbone accepts it.
    public var largestInput: (height: Int, width: Int)
}

/// What a detection dataset's builder gets besides its section: the run's seed, and whether the model needs the
/// ground truth's instance masks (Mask R-CNN).
public struct DetectionDataContext {
    public var seed: UInt64
    public var withMask: Bool
    public init(seed: UInt64, withMask: Bool = false) { self.seed = seed; self.withMask = withMask }
}

/// The `data` section of detection configs, picked by `data.dataset`.
public enum DetectionDatasets {
    /// Keys every detection dataset reads: loader settings and mmdet's Resize / RandomFlip / Pad.
    static let pipelineFields: [ConfigSchema.Field] = LoaderSettings.fields + [
        .init("img_scale", .array(.intRange(32...16384), count: 2)), .init("keep_ratio", .bool, default: true),
        .init("flip_ratio", .fraction, default: 0.5), .init("size_divisor", .intRange(1...1024), default: 32),
        // mmdet's RandomChoiceResize(scales, keep_ratio) in the train pipeline: one of these [long, short] per image.
        .init("train_scales", .array(.array(.intRange(32...16384), count: 2))),
    ]

    /// Train and test pipelines from a filled `data` section; `img_scale` defaults to the shapes' size, else mmdet's
    /// 1333×800.
    static func pipelines(_ c: Config, withMask: Bool = false) throws -> (train: DetectionPipeline, test: DetectionPipeline) {
        let scale = c.has("img_scale") ? try c.ints("img_scale")
            : try c.string("dataset") == "shapes" ? [Int](repeating: try c.int("shapes.size"), count: 2) : [1333, 800]
        let keep = try c.bool("keep_ratio"), div = try c.int("size_divisor"), flip = try c.double("flip_ratio")
        var train = DetectionPipeline(imgScale: (scale[0], scale[1]), keepRatio: keep, flipRatio: flip, sizeDivisor: div, training: true,
                                      withMask: withMask)
        if c.has("train_scales") {
            let scales = try (0..<(c["train_scales"]?.arrayValue?.count ?? 0)).map { try c.ints("train_scales.\($0)") }
            guard !scales.isEmpty else { throw c.fail("train_scales", "is empty (leave it out to train at img_scale)") }
            train.trainScales = scales.map { ($0[0], $0[1]) }
        }
        return (train,
                DetectionPipeline(imgScale: (scale[0], scale[1]), keepRatio: keep, flipRatio: 0, sizeDivisor: div, training: false,
                                  withMask: false))
    }

    /// The test pipeline a `data` section describes (what `det-infer` runs users' images through).
    public static func testPipeline(_ data: Config) throws -> DetectionPipeline {
        try pipelines(registry.resolve(data).section).test
    }

    /// Class names and category ids of a `data` section's dataset, when they can be known without the images
    /// (the shapes classes; a COCO validation file that exists).
    public static func classes(_ data: Config) throws -> (names: [String], categoryIDs: [Int])? {
        let c = try registry.resolve(data).section
        switch try c.string("dataset") {
        case "shapes": return (ShapeKind.allCases.map(\.name), ShapeKind.allCases.map(\.rawValue))
        case "coco":
            let path = try c.string("coco.val_ann")
            guard FileManager.default.fileExists(atPath: path) else { return nil }
            let gt = try COCODataset.load(path)
            return (gt.categoryIds.map { gt.category(id: $0)?.name ?? String($0) }, gt.categoryIds)
        default: return nil
        }
    }

    /// Class names and the category ids results use, for a model of `numClasses` classes, the same whether or not
    /// the dataset's files are on disk: the dataset's own (shapes; COCO when its annotation file exists), else the
    /// checkpoint's class names (`checkpointClasses`, mmdet's dataset_meta as scripts/convert_pth.py records it),
    /// else COCO's 80 classes for an 80-class COCO model (mmdet's CocoDataset). COCO's 80 classes get COCO's sparse
    /// ids (1...90); other names get label + 1; a model with no names at all gets "class N" and label + 1.
    public static func categories(_ data: Config, numClasses: Int, checkpointClasses: [String]?) throws
        -> (names: [String], categoryIDs: [Int]) {
        if let c = try classes(data), c.names.count == numClasses { return c }
        let isCOCO = (try? registry.resolve(data).section.string("dataset")) == "coco"
        if let names = checkpointClasses, names.count == numClasses {
            return (names, names == COCOClasses.names ? COCOClasses.ids : names.indices.map { $0 + 1 })
        }
        if isCOCO && numClasses == COCOClasses.names.count { return (COCOClasses.names, COCOClasses.ids) }
        return ((0..<numClasses).map { "class \($0)" }, (0..<numClasses).map { $0 + 1 })
    }

    /// The largest padded input (height, width) `pipeline` makes.
    static func largestInput(_ p: DetectionPipeline) -> (height: Int, width: Int) {
        let side = { (x: Int) in (x + p.sizeDivisor - 1) / p.sizeDivisor * p.sizeDivisor }
        return (side(min(p.imgScale.0, p.imgScale.1)), side(max(p.imgScale.0, p.imgScale.1)))
    }

    public static let registry: Registry<DetectionData, DetectionDataContext> = {
        let r = Registry<DetectionData, DetectionDataContext>(kind: "detection dataset", tag: "dataset")
        r.register("shapes", fields: pipelineFields + [.init("shapes", ShapesDatasetSettings.schema)], build: shapes)
        r.register("coco", fields: pipelineFields + [.init("coco", .object([
            .init("train_ann", .string, required: true), .init("train_img_prefix", .string, required: true),
            .init("val_ann", .string, required: true), .init("val_img_prefix", .string, required: true),
        ]), required: true)], build: coco)
        return r
    }()

    /// The built-in shapes dataset, generated in memory (train split 0, val split 1: the same images and ids as
    /// `ShapesDatasetWriter` writes, so its instances_val.json is the matching ground truth).
    static func shapes(_ c: Config, context: DetectionDataContext) throws -> DetectionData {
        let s = try ShapesDatasetSettings(c.section("shapes"))
        try s.checkExistingFiles()
        let p = try pipelines(c, withMask: context.withMask)
        let gen = ShapesGenerator(size: s.size, seed: s.seed)
        let train = ShapesDetectionDataset(generator: gen, split: 0, count: s.trainCount, pipeline: p.train)
        let val = ShapesDetectionDataset(generator: gen, split: 1, count: s.valCount, pipeline: p.test)
        return DetectionData(train: AnyDataset(train), val: AnyDataset(val),
                             valAnnotations: { try s.prepareFiles().annotations },
                             categoryIDs: [1, 2, 3, 4], loader: try LoaderSettings(data: c, seed: context.seed),
                             largestInput: largestInput(p.train))
    }

    /// Files a `data` section names must exist (checked before any work).
    public static func checkFiles(_ c: Config) throws {
        guard try c.string("dataset") == "coco" else { return }
        for key in ["coco.train_ann", "coco.val_ann", "coco.train_img_prefix", "coco.val_img_prefix"] {
            let path = try c.string(key)
            guard FileManager.default.fileExists(atPath: path) else { throw c.fail(key, "file not found: \(path)") }
        }
    }

    /// `data.dataset = "coco"`: mmdet's CocoDataset on `data.coco.{train,val}_{ann,img_prefix}`.
    static func coco(_ c: Config, context: DetectionDataContext) throws -> DetectionData {
        try checkFiles(c)
        let p = try pipelines(c, withMask: context.withMask)
        /// The file of `key`: every image must name its file, since the images are read.
        func load(_ key: String) throws -> COCODataset {
            let path = try c.string(key), d = try COCODataset.load(path)
            if let i = d.images.firstIndex(where: { $0.fileName.isEmpty }) {
                throw KitError.coco(file: path, record: "images[\(i)] (id \(d.images[i].id))", problem: "missing \"file_name\" (the image to read)")
            }
            return d
        }
        let train = COCODetectionDataset(coco: try load("coco.train_ann"), imagePrefix: try c.string("coco.train_img_prefix"),
                                         pipeline: p.train, skipEmpty: true)
        let val = COCODetectionDataset(coco: try load("coco.val_ann"), imagePrefix: try c.string("coco.val_img_prefix"),
                                       pipeline: p.test, skipEmpty: false)
        guard val.count > 0 else { throw c.fail("coco.val_ann", "\(try c.string("coco.val_ann")) has no images to evaluate on") }
        let annotations = try c.string("coco.val_ann")
        return DetectionData(train: AnyDataset(train, imageID: { train.imageID($0) }), val: AnyDataset(val, imageID: { val.imageID($0) }),
                             valAnnotations: { annotations }, categoryIDs: train.coco.categoryIds,
                             loader: try LoaderSettings(data: c, seed: context.seed), largestInput: largestInput(p.train))
    }
}

/// `data.shapes`: the generator's parameters and where its files go.
struct ShapesDatasetSettings {
    static let schema = ConfigSchema.object([
        .init("size", .intRange(32...4096), default: 192), .init("seed", .nonNegativeInt, default: 0),
        .init("train_count", .positiveInt, default: 300), .init("val_count", .positiveInt, default: 60),
        .init("root", .string, default: "data/shapes"),
    ])
    var size: Int, seed: UInt64, trainCount: Int, valCount: Int, root: String

    init(_ c: Config) throws {
        size = try c.int("size"); seed = UInt64(try c.int("seed"))
        trainCount = try c.int("train_count"); valCount = try c.int("val_count"); root = try c.string("root")
    }

    /// The dataset's files under `root` (COCO json + images + label maps), written the first time; a folder that
    /// holds another seed's, size's or count's validation split is refused (its ground truth would not match).
    func prepareFiles() throws -> (annotations: String, root: String) {
        if !FileManager.default.fileExists(atPath: annotations) {
            writeStderr("writing the shapes dataset to \(root)\n")
            try writer.write(to: root)
        } else {
            try checkExistingFiles()
        }
        return (annotations, root)
    }

    var annotations: String { "\(root)/annotations/instances_val.json" }
    var writer: ShapesDatasetWriter {
        ShapesDatasetWriter(generator: ShapesGenerator(size: size, seed: seed), trainCount: trainCount, valCount: valCount)
    }

    /// Refuses a folder at `root` that holds another seed's, size's or count's validation split.
    func checkExistingFiles() throws {
        guard FileManager.default.fileExists(atPath: annotations), !writer.matchesValidationSplit(at: root) else { return }
        throw KitError.data("\(annotations): the shapes dataset in \(root) was written with other parameters than data.shapes asks for "
                            + "(seed \(seed), size \(size), \(valCount) validation images); remove the folder or set data.shapes.root")
    }
}

/// COCO 2017's 80 detection classes in mmdet's CocoDataset order, with their category ids in instances_*.json.
public enum COCOClasses {
    public static let names = [
        "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
        "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
        "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
        "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
        "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
        "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
        "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
        "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors", "teddy bear",
        "hair drier", "toothbrush",
    ]
    public static let ids = Array(1...11) + Array(13...25) + [27, 28] + Array(31...44) + Array(46...65) + [67, 70]
        + Array(72...82) + Array(84...90)
}
