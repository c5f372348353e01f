import Config
import Data
import Foundation

/// What a segmentation dataset gives its task: the two splits through their pipelines and the class names.
public struct SegmentationData {
    public var train: AnyDataset<SegmentationInput>
    public var val: AnyDataset<SegmentationInput>
    /// Class names when the dataset knows them (nil: class ids).
    public var classNames: [String]?
    /// Whether class 0 is background (drawn black in the palette).
    public var background: Bool
    public var loader: LoaderSettings
}

/// The `data` section of segmentation configs, picked by `data.dataset`.
public enum SegmentationDatasets {
    /// Keys every segmentation dataset reads: loader settings and mmseg's train pipeline (Resize with a ratio
    /// range, RandomCrop with cat_max_ratio, RandomFlip, PhotoMetricDistortion) and test Resize.
    static let pipelineFields: [ConfigSchema.Field] = LoaderSettings.fields + [
        .init("img_scale", .array(.intRange(32...16384), count: 2)),
        .init("ratio_range", .array(.positiveNumber, count: 2), default: [0.5, 2.0]),
        .init("crop_size", .array(.intRange(32...16384), count: 2), default: [512, 512]),
        .init("cat_max_ratio", .numberRange(0...1), default: 0.75), .init("flip_ratio", .fraction, default: 0.5),
        .init("photometric", .bool, default: true), .init("reduce_zero_label", .bool, default: false),
    ]

    /// Train and test pipelines from a filled `data` section; `img_scale` defaults to the shapes' size, else mmseg's
    /// 2048×512.
    static func pipelines(_ c: Config) throws -> (train: SegmentationPipeline, test: SegmentationPipeline) {
        let scale = c.has("img_scale") ? try c.ints("img_scale")
            : try c.string("dataset") == "shapes" ? [Int](repeating: try c.int("shapes.size"), count: 2) : [2048, 512]
        let crop = try c.ints("crop_size"), ratio = try c.doubles("ratio_range"), reduce = try c.bool("reduce_zero_label")
        guard ratio[0] <= ratio[1] else { throw c.fail("ratio_range", "\(ratio): the first must not exceed the second") }
        let train = SegmentationPipeline(imgScale: (scale[0], scale[1]), ratioRange: (ratio[0], ratio[1]), cropSize: (crop[0], crop[1]),
                                         catMaxRatio: try c.double("cat_max_ratio"), flipProb: try c.double("flip_ratio"),
                                         photometric: try c.bool("photometric"), reduceZeroLabel: reduce, training: true)
        let test = SegmentationPipeline(imgScale: (scale[0], scale[1]), ratioRange: nil, cropSize: (crop[0], crop[1]), flipProb: 0,
                                        photometric: false, reduceZeroLabel: reduce, training: false)
        return (train, test)
    }

    /// The test pipeline and class names (nil: unknown) a `data` section describes (what `seg-infer` uses).
    public static func testPipeline(_ data: Config) throws -> (pipeline: SegmentationPipeline, classNames: [String]?, background: Bool) {
        let c = try registry.resolve(data).section
        let shapes = try c.string("dataset") == "shapes"
        return (try pipelines(c).test, shapes ? shapesClassNames : nil, shapes)
    }

    public static let registry: Registry<SegmentationData, UInt64> = {
        let r = Registry<SegmentationData, UInt64>(kind: "segmentation dataset", tag: "dataset")
        r.register("shapes", fields: pipelineFields + [.init("shapes", ShapesDatasetSettings.schema)], build: shapes)
        r.register("ade20k", fields: pipelineFields + [.init("ade20k", .object([.init("root", .string, required: true)]), required: true)],
                   build: ade20k)
        return r
    }()

    /// Folders a `data` section names must exist (checked before any work).
    public static func checkFiles(_ c: Config) throws {
        guard try c.string("dataset") == "ade20k" else { return }
        let root = try c.string("ade20k.root")
        for sub in ["images/training", "annotations/training", "images/validation", "annotations/validation"] {
            guard FileManager.default.fileExists(atPath: "\(root)/\(sub)") else { throw c.fail("ade20k.root", "missing folder \(root)/\(sub)") }
        }
    }

    /// The built-in shapes dataset with semantic labels (5 classes: background + 4 shapes), generated in memory.
    public static let shapesClassNames = ["background"] + ShapeKind.allCases.map(\.name)

    static func shapes(_ c: Config, seed: UInt64) throws -> SegmentationData {
        let s = try ShapesDatasetSettings(c.section("shapes"))
        let p = try pipelines(c)
        let gen = ShapesGenerator(size: s.size, seed: s.seed)
        return SegmentationData(train: AnyDataset(ShapesSegmentationDataset(generator: gen, split: 0, count: s.trainCount, pipeline: p.train)),
                                val: AnyDataset(ShapesSegmentationDataset(generator: gen, split: 1, count: s.valCount, pipeline: p.test)),
                                classNames: shapesClassNames, background: true, loader: try LoaderSettings(data: c, seed: seed))
    }

    /// ADE20K's layout (`images/{training,validation}`, `annotations/{training,validation}`).
    static func ade20k(_ c: Config, seed: UInt64) throws -> SegmentationData {
        try checkFiles(c)
        let root = try c.string("ade20k.root")
        let p = try pipelines(c)
        return SegmentationData(
            train: AnyDataset(try SegmentationFolderDataset(imageDir: "\(root)/images/training", labelDir: "\(root)/annotations/training", pipeline: p.train)),
            val: AnyDataset(try SegmentationFolderDataset(imageDir: "\(root)/images/validation", labelDir: "\(root)/annotations/validation", pipeline: p.test)),
            classNames: nil, background: false, loader: try LoaderSettings(data: c, seed: seed))
    }
}
