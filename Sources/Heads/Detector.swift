import Backbones
import Engine
import Foundation
import NN
import Training

/// A dense detection head: losses from neck features, and final detections.
public protocol DenseHead: Module {
    func loss(_ feats: [Tensor], targets: [DetectionTarget]) -> [(String, Tensor)]
    func predict(_ feats: [Tensor], imgShapes: [(height: Int, width: Int)], scaleFactors: [[Float]]) -> [ImageDetections]
}

extension RetinaHead: DenseHead {}

/// A neck: backbone features in, pyramid out.
public protocol Neck: Module {
    var outChannels: Int { get }
    func callAsFunction(_ inputs: [Tensor]) -> [Tensor]
}

extension FPN: Neck {}

/// What training and evaluation need from any detector.
public protocol Detector: Module {
    /// Named loss terms for a batch [N, 3, H, W] (targets in input-pixel coordinates).
    func lossTerms(_ images: Tensor, targets: [DetectionTarget]) -> [(String, Tensor)]
    /// Detections per image in original-image coordinates (boxes divided by each image's scale factor).
    func predict(_ images: Tensor, imgShapes: [(height: Int, width: Int)], scaleFactors: [[Float]]) -> [ImageDetections]
}

/// mmdet `SingleStageDetector` (RetinaNet, ...): backbone → neck → dense head. Keys backbone.*, neck.*, bbox_head.*.
public final class SingleStageDetector: Module, Detector {
    public let backbone: any Backbone
    public let neck: any Neck
    public let bbox_head: any DenseHead

    public init(backbone: any Backbone, neck: any Neck, head: any DenseHead) {
        self.backbone = backbone; self.neck = neck; bbox_head = head
    }

    public override func children() -> [(String, Module)] { [("backbone", backbone), ("neck", neck), ("bbox_head", bbox_head)] }

    public func features(_ images: Tensor) -> [Tensor] { neck(backbone.features(images)) }

    public func lossTerms(_ images: Tensor, targets: [DetectionTarget]) -> [(String, Tensor)] {
        bbox_head.loss(features(images), targets: targets)
    }

    public func predict(_ images: Tensor, imgShapes: [(height: Int, width: Int)], scaleFactors: [[Float]]) -> [ImageDetections] {
        withNoGrad { bbox_head.predict(features(images), imgShapes: imgShapes, scaleFactors: scaleFactors) }
    }
}

// MARK: registries

/// Builds a neck from its config section (`key`, e.g. "model.neck") given the backbone's channels.
public struct NeckEntry {
    public var schema: ConfigSchema
    public var build: (_ config: Config, _ key: String, _ backboneChannels: [Int]) throws -> any Neck
}

/// Builds a dense head from its config section given the neck's channels.
public struct HeadEntry {
    public var schema: ConfigSchema
    public var build: (_ config: Config, _ key: String, _ inChannels: Int) throws -> any DenseHead
}

/// Detector types (model.type), necks (model.neck.type) and heads (model.bbox_head.type). Adding a head is one
/// file in Sources/Heads plus one line in `heads`.
public enum DetectorRegistry {
    nonisolated(unsafe) public static var necks: [String: NeckEntry] = ["FPN": FPN.registryEntry]
    nonisolated(unsafe) public static var heads: [String: HeadEntry] = ["RetinaHead": RetinaHead.registryEntry]
    /// model.type → the detector family (all single-stage for now).
    nonisolated(unsafe) public static var detectorTypes: Set<String> = ["RetinaNet", "SingleStageDetector"]

    static let backboneSchema = ConfigSchema.object([
        .init("arch", .string, required: true), .init("frozen_stages", .int), .init("norm_eval", .bool),
        .init("base_width", .int), .init("pretrained", .optional(.string)),
    ])

    /// The schema of the `model` section.
    public static var modelSchema: ConfigSchema {
        .object([
            .init("type", .oneOf(detectorTypes.sorted()), required: true),
            .init("backbone", backboneSchema, required: true),
            .init("neck", .tagged("type", necks.mapValues(\.schema)), required: true),
            .init("bbox_head", .tagged("type", heads.mapValues(\.schema)), required: true),
            .init("train_cfg", RetinaHead.trainCfgSchema),
            .init("test_cfg", RetinaHead.testCfgSchema),
        ])
    }

    /// Checks what the schema cannot: the backbone arch exists, base_width only for ResNets, class count > 0.
    public static func check(_ c: Config) throws {
        let arch = try c.string("model.backbone.arch")
        guard BackboneRegistry.allArchs.contains(arch) else {
            throw ConfigError("\(c.source(of: "model.backbone.arch")): model.backbone.arch: unknown backbone '\(arch)' "
                              + "(this build knows: \(BackboneRegistry.allArchs.joined(separator: ", ")))")
        }
        if c["model.backbone.base_width"] != nil && ResNet.depths[arch] == nil {
            throw ConfigError("\(c.source(of: "model.backbone.base_width")): model.backbone.base_width: only ResNet-family backbones have a base width")
        }
        if let w = c["model.backbone.base_width"]?.intValue, w < 4 || w % 4 != 0 {
            throw ConfigError("\(c.source(of: "model.backbone.base_width")): model.backbone.base_width: must be a positive multiple of 4, got \(w)")
        }
        if let p = c["model.backbone.pretrained"]?.stringValue, !FileManager.default.fileExists(atPath: p) {
            throw ConfigError("\(c.source(of: "model.backbone.pretrained")): model.backbone.pretrained: file not found: \(p)")
        }
    }

    /// The backbone of a validated config's `model.backbone` (dense mode for Swin, so any input size works), with
    /// `pretrained` weights loaded; detectors and segmentors build theirs here.
    public static func buildBackbone(_ c: Config) throws -> any Backbone {
        let arch = try c.string("model.backbone.arch")
        let frozen = try c.int("model.backbone.frozen_stages", default: -1)
        let normEval = try c.bool("model.backbone.norm_eval", default: false)
        let backbone: any Backbone
        if let w = c["model.backbone.base_width"]?.intValue {
            backbone = try ResNet(arch: arch, numClasses: nil, frozenStages: frozen, normEval: normEval, baseWidth: w)
        } else {
            backbone = try BackboneRegistry.make(arch: arch, numClasses: nil, dense: true, frozenStages: frozen, normEval: normEval)
        }
        if let p = try c.optionalString("model.backbone.pretrained") {
            let sd = try SafeTensors.read(path: p).tensors.filter { !$0.key.hasPrefix("fc.") && !$0.key.hasPrefix("head.") }
            let report = try backbone.load(stateDict: sd, strict: false, stripPrefix: "backbone.", source: p)
            if report.loaded.isEmpty { throw ConfigError("\(p): no tensor of this file matches backbone '\(arch)'") }
        }
        return backbone
    }

    /// Builds the detector of a validated config (random init; `model.backbone.pretrained` loaded into the backbone).
    public static func build(_ c: Config) throws -> any Detector {
        try check(c)
        let backbone = try buildBackbone(c)
        let neckType = try c.string("model.neck.type"), headType = try c.string("model.bbox_head.type")
        guard let neckEntry = necks[neckType] else { throw ConfigError("\(c.source(of: "model.neck.type")): model.neck.type: unknown neck '\(neckType)'") }
        guard let headEntry = heads[headType] else { throw ConfigError("\(c.source(of: "model.bbox_head.type")): model.bbox_head.type: unknown head '\(headType)'") }
        let neck = try neckEntry.build(c, "model.neck", backbone.featureChannels)
        let head = try headEntry.build(c, "model.bbox_head", neck.outChannels)
        return SingleStageDetector(backbone: backbone, neck: neck, head: head)
    }
}

extension FPN {
    static let registryEntry = NeckEntry(
        schema: .object([
            .init("type", .string, required: true), .init("in_channels", .array(.int)), .init("out_channels", .int, required: true),
            .init("num_outs", .int, required: true), .init("start_level", .int), .init("end_level", .int),
            .init("add_extra_convs", .anyOf([.bool, .oneOf(["on_input", "on_lateral", "on_output"])])),
            .init("relu_before_extra_convs", .bool),
        ]),
        build: { c, key, channels in
            if let given = c["\(key).in_channels"], given != .null {
                let ints = try c.ints("\(key).in_channels")
                guard ints == channels else {
                    throw ConfigError("\(c.source(of: "\(key).in_channels")): \(key).in_channels: \(ints) but the backbone gives \(channels)")
                }
            }
            var extra = ExtraConvs.none
            switch c["\(key).add_extra_convs"] {
            case .bool(true)?: extra = .onInput
            case let .string(s)?: extra = ExtraConvs(rawValue: s) ?? .none
            default: break
            }
            let start = try c.int("\(key).start_level", default: 0), numOuts = try c.int("\(key).num_outs")
            let end = try c.int("\(key).end_level", default: -1)
            let used = (end == -1 ? channels.count : end + 1) - start
            guard start >= 0 && used >= 1 && numOuts >= used else {
                throw ConfigError("\(c.source(of: key)): \(key): start_level \(start), end_level \(end), num_outs \(numOuts) do not fit \(channels.count) inputs")
            }
            return FPN(inChannels: channels, outChannels: try c.int("\(key).out_channels"), numOuts: numOuts,
                       startLevel: start, endLevel: end, addExtraConvs: extra,
                       reluBeforeExtraConvs: try c.bool("\(key).relu_before_extra_convs", default: false))
        })
}

extension RetinaHead {
    static let trainCfgSchema = ConfigSchema.object([
        .init("assigner", .object([
            .init("type", .oneOf(["MaxIoUAssigner"])), .init("pos_iou_thr", .number), .init("neg_iou_thr", .number),
            .init("min_pos_iou", .number), .init("ignore_iof_thr", .number), .init("gt_max_assign_all", .bool),
        ])),
        .init("allowed_border", .int), .init("pos_weight", .int), .init("debug", .bool),
    ])
    static let testCfgSchema = ConfigSchema.object([
        .init("nms_pre", .int), .init("min_bbox_size", .number), .init("score_thr", .number),
        .init("nms", .object([.init("type", .oneOf(["nms"])), .init("iou_threshold", .number)])), .init("max_per_img", .int),
    ])

    static let registryEntry = HeadEntry(
        schema: .object([
            .init("type", .string, required: true), .init("num_classes", .int, required: true), .init("in_channels", .int),
            .init("stacked_convs", .int), .init("feat_channels", .int),
            .init("anchor_generator", .object([
                .init("type", .oneOf(["AnchorGenerator"])), .init("octave_base_scale", .number), .init("scales_per_octave", .int),
                .init("ratios", .array(.number)), .init("strides", .array(.int)), .init("center_offset", .number),
            ])),
            .init("bbox_coder", .object([.init("type", .oneOf(["DeltaXYWHBBoxCoder"])), .init("target_means", .array(.number, count: 4)),
                                         .init("target_stds", .array(.number, count: 4))])),
            .init("loss_cls", .object([.init("type", .oneOf(["FocalLoss"])), .init("use_sigmoid", .bool), .init("gamma", .number),
                                       .init("alpha", .number), .init("loss_weight", .number)])),
            .init("loss_bbox", .object([.init("type", .oneOf(["L1Loss"])), .init("loss_weight", .number)])),
            .init("norm_cfg", .optional(.object([.init("type", .oneOf(["GN"]), required: true), .init("num_groups", .int, required: true),
                                                 .init("requires_grad", .bool)]))),
        ]),
        build: { c, key, inChannels in
            if let given = c["\(key).in_channels"]?.intValue, given != inChannels {
                throw ConfigError("\(c.source(of: "\(key).in_channels")): \(key).in_channels: \(given) but the neck gives \(inChannels)")
            }
            let featChannels = try c.int("\(key).feat_channels", default: 256)
            if let g = c["\(key).norm_cfg.num_groups"]?.intValue, g < 1 || featChannels % g != 0 {
                throw ConfigError("\(c.source(of: "\(key).norm_cfg.num_groups")): \(key).norm_cfg.num_groups: must divide feat_channels")
            }
            let numClasses = try c.int("\(key).num_classes")
            guard numClasses >= 1 else { throw ConfigError("\(c.source(of: "\(key).num_classes")): \(key).num_classes: must be at least 1") }
            let ag = "\(key).anchor_generator"
            let anchors = AnchorGenerator(strides: try c.ints("\(ag).strides", default: [8, 16, 32, 64, 128]),
                                          ratios: try c.doubles("\(ag).ratios", default: [0.5, 1, 2]).map(Float.init),
                                          octaveBaseScale: Float(try c.double("\(ag).octave_base_scale", default: 4)),
                                          scalesPerOctave: try c.int("\(ag).scales_per_octave", default: 3),
                                          centerOffset: Float(try c.double("\(ag).center_offset", default: 0)))
            let head = RetinaHead(numClasses: numClasses, inChannels: inChannels,
                                  featChannels: try c.int("\(key).feat_channels", default: 256),
                                  stackedConvs: try c.int("\(key).stacked_convs", default: 4), anchorGenerator: anchors,
                                  groupNormGroups: c["\(key).norm_cfg"] == nil ? nil : try c.int("\(key).norm_cfg.num_groups"))
            head.coder = DeltaXYWHBBoxCoder(means: try c.doubles("\(key).bbox_coder.target_means", default: [0, 0, 0, 0]).map(Float.init),
                                            stds: try c.doubles("\(key).bbox_coder.target_stds", default: [1, 1, 1, 1]).map(Float.init))
            head.focalGamma = Float(try c.double("\(key).loss_cls.gamma", default: 2))
            head.focalAlpha = Float(try c.double("\(key).loss_cls.alpha", default: 0.25))
            head.clsLossWeight = Float(try c.double("\(key).loss_cls.loss_weight", default: 1))
            head.bboxLossWeight = Float(try c.double("\(key).loss_bbox.loss_weight", default: 1))
            let a = "model.train_cfg.assigner"
            head.assigner = MaxIoUAssigner(posIoUThr: Float(try c.double("\(a).pos_iou_thr", default: 0.5)),
                                           negIoUThr: Float(try c.double("\(a).neg_iou_thr", default: 0.4)),
                                           minPosIoU: Float(try c.double("\(a).min_pos_iou", default: 0)),
                                           gtMaxAssignAll: try c.bool("\(a).gt_max_assign_all", default: true),
                                           ignoreIoFThr: Float(try c.double("\(a).ignore_iof_thr", default: 0.5)))
            let t = "model.test_cfg"
            head.testConfig = RetinaTestConfig(nmsPre: try c.int("\(t).nms_pre", default: 1000),
                                               scoreThr: Float(try c.double("\(t).score_thr", default: 0.05)),
                                               iouThreshold: Float(try c.double("\(t).nms.iou_threshold", default: 0.5)),
                                               maxPerImage: try c.int("\(t).max_per_img", default: 100))
            return head
        })
}
