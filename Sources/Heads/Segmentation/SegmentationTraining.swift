import Backbones
import Data
import Engine
import Evaluation
import Foundation
import NN
import Training

extension FPN: SegmentationNeck {}

/// The segmentation config (mmseg's layout): `model` (EncoderDecoder: backbone, optional FPN neck, UPerHead or
/// FPNHead, optional FCNHead auxiliary head, test mode), `data` (shapes or ADE20K) and the trainer keys.
public enum SegmentationConfig {
    static let norm = ConfigSchema.oneOf(["BN", "GN", "none"])

    /// mmseg's `init_cfg=dict(type='Normal', std=0.01, override=dict(name='conv_seg'))`: the classifier's init.
    static let initCfg = ConfigSchema.object([.init("type", .oneOf(["Normal"]), required: true), .init("std", .number, required: true)])

    public static var modelSchema: ConfigSchema {
        .object([
            .init("type", .oneOf(["EncoderDecoder"]), required: true),
            .init("backbone", DetectorRegistry.backboneSchema, required: true),
            .init("neck", .optional(.object([.init("type", .oneOf(["FPN"]), required: true), .init("out_channels", .int),
                                             .init("num_outs", .int)]))),
            .init("decode_head", .object([.init("type", .oneOf(["UPerHead", "FPNHead"]), required: true),
                                          .init("channels", .int), .init("num_classes", .int, required: true),
                                          .init("norm", norm), .init("dropout_ratio", .number),
                                          .init("init_cfg", initCfg)]), required: true),
            .init("auxiliary_head", .optional(.object([.init("type", .oneOf(["FCNHead"]), required: true), .init("channels", .int),
                                                       .init("dropout_ratio", .number), .init("loss_weight", .number),
                                                       .init("init_cfg", initCfg)]))),
            .init("test_cfg", .object([.init("mode", .oneOf(["whole", "slide"]), required: true),
                                       .init("crop_size", .array(.int, count: 2)), .init("stride", .array(.int, count: 2))])),
        ])
    }

    public static var dataSchema: ConfigSchema {
        .object([
            .init("dataset", .oneOf(["shapes", "ade20k"]), required: true),
            .init("samples_per_gpu", .int), .init("workers_per_gpu", .int),
            .init("img_scale", .array(.int, count: 2)), .init("ratio_range", .array(.number, count: 2)),
            .init("crop_size", .array(.int, count: 2)), .init("cat_max_ratio", .number), .init("flip_ratio", .number),
            .init("photometric", .bool), .init("reduce_zero_label", .bool),
            .init("shapes", .object([.init("size", .int), .init("seed", .int), .init("train_count", .int), .init("val_count", .int)])),
            .init("ade20k", .object([.init("root", .string, required: true)])),
        ])
    }

    public static var schema: ConfigSchema {
        .object(TrainerSettings.schemaFields + [.init("model", modelSchema, required: true), .init("data", dataSchema, required: true)])
    }

    public static func load(path: String, overrides: [String] = []) throws -> Config {
        let c = try Config.load(path: path, overrides: overrides)
        try c.validate(schema)
        try DetectorRegistry.check(c)
        _ = try TrainerSettings(config: c)
        if try c.string("data.dataset") == "ade20k" {
            let root = try c.string("data.ade20k.root")
            for sub in ["images/training", "annotations/training", "images/validation", "annotations/validation"] {
                guard FileManager.default.fileExists(atPath: "\(root)/\(sub)") else {
                    throw ConfigError("\(c.source(of: "data.ade20k.root")): data.ade20k.root: missing folder \(root)/\(sub)")
                }
            }
        }
        if try c.string("model.decode_head.type") == "FPNHead" && c["model.neck"] == nil {
            throw ConfigError("\(c.source(of: "model.decode_head.type")): model.decode_head.type: FPNHead (Semantic FPN) needs model.neck")
        }
        return c
    }

    static func convNorm(_ c: Config, _ key: String) throws -> ConvNorm {
        switch try c.string(key, default: "BN") { case "GN": return .gn32; case "none": return .none; default: return .bn }
    }

    /// The model of a validated config.
    public static func build(_ c: Config) throws -> EncoderDecoder {
        let backbone = try DetectorRegistry.buildBackbone(c)
        let classes = try c.int("model.decode_head.num_classes"), norm = try convNorm(c, "model.decode_head.norm")
        let dropout = Float(try c.double("model.decode_head.dropout_ratio", default: 0.1))
        let model: EncoderDecoder
        if try c.string("model.decode_head.type") == "FPNHead" {
            let out = try c.int("model.neck.out_channels", default: 256)
            let neck = FPN(inChannels: backbone.featureChannels, outChannels: out, numOuts: try c.int("model.neck.num_outs", default: 4))
            model = .semanticFPN(backbone: backbone, neck: neck, numClasses: classes, neckChannels: out,
                                 channels: try c.int("model.decode_head.channels", default: 128), norm: norm, dropoutRatio: dropout)
        } else {
            model = .upernet(backbone: backbone, numClasses: classes, channels: try c.int("model.decode_head.channels", default: 512),
                             auxChannels: try c.int("model.auxiliary_head.channels", default: 256), norm: norm,
                             auxiliary: c["model.auxiliary_head"] != nil && c["model.auxiliary_head"] != .null, dropoutRatio: dropout,
                             auxDropoutRatio: Float(try c.double("model.auxiliary_head.dropout_ratio", default: 0.1)),
                             auxLossWeight: Float(try c.double("model.auxiliary_head.loss_weight", default: 0.4)))
        }
        if c["model.decode_head.init_cfg"] != nil {
            initConvSeg(model.decode_head.conv_seg, std: Float(try c.double("model.decode_head.init_cfg.std")))
        }
        if let aux = model.auxiliary_head, c["model.auxiliary_head.init_cfg"] != nil {
            initConvSeg(aux.conv_seg, std: Float(try c.double("model.auxiliary_head.init_cfg.std")))
        }
        return model
    }

    /// Inference mode from `model.test_cfg` (mmseg's whole or slide).
    public static func inferenceMode(_ c: Config) throws -> SegmentationInferenceMode {
        guard try c.string("model.test_cfg.mode", default: "whole") == "slide" else { return .whole }
        let crop = try c.ints("model.test_cfg.crop_size"), stride = try c.ints("model.test_cfg.stride")
        return .slide(crop: (crop[0], crop[1]), stride: (stride[0], stride[1]))
    }
}

/// Semantic segmentation training on any `LoaderDataset` of `SegmentationInput`s; evaluation runs the model on every
/// validation image at its own size and scores it with mmseg's mIoU.
public final class SegmentationTask<Train: LoaderDataset, Val: LoaderDataset>: TrainingTask
where Train.Item == SegmentationInput, Val.Item == SegmentationInput {
    public let segmentor: EncoderDecoder
    public var model: Module { segmentor }
    public let loader: DataLoader<Train>
    public let valLoader: DataLoader<Val>?
    public let numClasses: Int
    public var mode: SegmentationInferenceMode = .whole
    private var iterator: DataLoader<Train>.EpochIterator?
    private var expected = -1

    public init(segmentor: EncoderDecoder, loader: DataLoader<Train>, valLoader: DataLoader<Val>?, numClasses: Int) {
        self.segmentor = segmentor; self.loader = loader; self.valLoader = valLoader; self.numClasses = numClasses
    }

    public var itersPerEpoch: Int { loader.batchesPerEpoch }

    public func prepare(startIteration: Int) throws { position(at: startIteration) }

    private func position(at it: Int) {
        iterator = loader.epoch(it / itersPerEpoch, startingAt: it % itersPerEpoch)
        expected = it
    }

    public func losses(iteration: Int) throws -> [(String, Tensor)] {
        if iteration != expected || iterator == nil { position(at: iteration) }
        guard let batch = try iterator!.next() else { preconditionFailure("loader ran out inside an epoch") }
        expected = iteration + 1
        if expected % itersPerEpoch == 0 { iterator = nil }
        let out = segmentor.forwardTrain(images: Tensor(batch.images, shape: batch.shape), labels: batch.labels!)
        return out.lossTerms.map { ($0.name, $0.loss) }   // logged by mmseg's names; the trainer sums them
    }

    public func evaluate(iteration: Int) throws -> [(String, Double)] {
        guard let valLoader else { return [] }
        let r = try evaluateSegmentation(segmentor, loader: valLoader, mode: mode, numClasses: numClasses)
        return [("mIoU", r.mIoU), ("mAcc", r.mAcc), ("aAcc", r.aAcc)]
    }
}

/// mmseg's single-GPU test: `segmentor` in eval mode over every image of `loader`, one at a time at its own
/// (unpadded) size, each prediction rescaled to its label's original resolution and scored with mmseg's IoU metric.
/// `visit` gets each prediction (dataset index, the input, the predicted label map) as it is made.
public func evaluateSegmentation<V: LoaderDataset>(_ segmentor: EncoderDecoder, loader: DataLoader<V>, mode: SegmentationInferenceMode,
                                                   numClasses: Int,
                                                   visit: ((Int, SegmentationInput, LabelMap) throws -> Void)? = nil) throws -> MIoUResult
where V.Item == SegmentationInput {
    let wasTraining = segmentor.training
    segmentor.eval()
    defer { if wasTraining { segmentor.train() } }
    var metric = MIoUMetric(numClasses: numClasses)
    let it = loader.epoch(0)
    while let batch = try it.next() {
        let images = Tensor(batch.images, shape: batch.shape)
        for (k, item) in batch.items.enumerated() {
            let (h, w) = (item.image.height, item.image.width)
            let one = images.slice(axis: 0, start: k, end: k + 1).slice(axis: 2, start: 0, end: h).slice(axis: 3, start: 0, end: w)
            let pred = segmentor.predict(one, mode: mode, outputSize: (item.label.height, item.label.width))
            let map = LabelMap(width: item.label.width, height: item.label.height, labels: pred.map { UInt8($0) })
            _ = try metric.process(pred: map, label: item.label, name: "validation image \(batch.indices[k])")
            try visit?(batch.indices[k], item, map)
        }
    }
    return metric.compute()
}

/// The built-in shapes dataset with semantic labels (5 classes: background + 4 shapes), generated in memory.
public struct ShapesSegmentationSetup {
    public var train: ShapesSegmentationDataset
    public var val: ShapesSegmentationDataset
    public static let classNames = ["background"] + ShapeKind.allCases.map(\.name)

    public init(config c: Config) throws {
        let size = try c.int("data.shapes.size", default: 192), seed = UInt64(try c.int("data.shapes.seed", default: 0))
        let gen = ShapesGenerator(size: size, seed: seed)
        let pipelines = try segmentationPipelines(c, defaultScale: [size, size])
        train = ShapesSegmentationDataset(generator: gen, split: 0, count: try c.int("data.shapes.train_count", default: 300), pipeline: pipelines.0)
        val = ShapesSegmentationDataset(generator: gen, split: 1, count: try c.int("data.shapes.val_count", default: 60), pipeline: pipelines.1)
    }
}

/// ADE20K's layout (`images/{training,validation}`, `annotations/{training,validation}`).
public struct ADE20KSetup {
    public var train: SegmentationFolderDataset
    public var val: SegmentationFolderDataset

    public init(config c: Config) throws {
        let root = try c.string("data.ade20k.root")
        let pipelines = try segmentationPipelines(c, defaultScale: [2048, 512])
        train = try SegmentationFolderDataset(imageDir: "\(root)/images/training", labelDir: "\(root)/annotations/training", pipeline: pipelines.0)
        val = try SegmentationFolderDataset(imageDir: "\(root)/images/validation", labelDir: "\(root)/annotations/validation", pipeline: pipelines.1)
    }
}

/// Train and test pipelines from `data.*` (mmseg defaults).
func segmentationPipelines(_ c: Config, defaultScale: [Int]) throws -> (SegmentationPipeline, SegmentationPipeline) {
    let scale = try c.ints("data.img_scale", default: defaultScale), crop = try c.ints("data.crop_size", default: [512, 512])
    let ratio = try c.doubles("data.ratio_range", default: [0.5, 2.0])
    let reduce = try c.bool("data.reduce_zero_label", default: false)
    let train = SegmentationPipeline(imgScale: (scale[0], scale[1]), ratioRange: (ratio[0], ratio[1]), cropSize: (crop[0], crop[1]),
                                     catMaxRatio: try c.double("data.cat_max_ratio", default: 0.75),
                                     flipProb: try c.double("data.flip_ratio", default: 0.5),
                                     photometric: try c.bool("data.photometric", default: true), reduceZeroLabel: reduce, training: true)
    let test = SegmentationPipeline(imgScale: (scale[0], scale[1]), ratioRange: nil, cropSize: (crop[0], crop[1]), flipProb: 0,
                                    photometric: false, reduceZeroLabel: reduce, training: false)
    return (train, test)
}
