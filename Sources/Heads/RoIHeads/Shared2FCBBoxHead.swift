import Config
import Engine
import Foundation
import NN

/// mmdet's `Shared2FCBBoxHead`: RoI features [K, C, 7, 7] flattened → `shared_fcs.0` → ReLU → `shared_fcs.1` → ReLU
/// → `fc_cls` (classes + background logits, background last) and `fc_reg` (deltas: 4 per class, or 4 with
/// `reg_class_agnostic`, as Cascade R-CNN's stages).
///
/// Init as mmdet: Xavier-uniform shared fcs, fc_cls N(0, 0.01), fc_reg N(0, 0.001), biases 0. Deltas are coded with
/// target stds (0.1, 0.1, 0.2, 0.2).
public final class Shared2FCBBoxHead: Module {
    public let shared_fcs: [Linear]
    public let fc_cls: Linear
    public let fc_reg: Linear
    public let numClasses: Int
    /// One set of deltas for every class instead of one per class.
    public let regClassAgnostic: Bool
    /// The side of the RoI features it takes (mmdet's `roi_feat_size`).
    public let roiSize: Int
    public var coder = DeltaXYWHBBoxCoder(means: [0, 0, 0, 0], stds: [0.1, 0.1, 0.2, 0.2])
    public var clsLossWeight: Float = 1, bboxLossWeight: Float = 1
    /// mmdet's `loss_bbox`: L1, or smooth L1 with this β.
    public var smoothL1Beta: Float? = nil

    public init(inChannels: Int = 256, roiSize: Int = 7, fcChannels: Int = 1024, numClasses: Int, regClassAgnostic: Bool = false) {
        self.numClasses = numClasses; self.regClassAgnostic = regClassAgnostic; self.roiSize = roiSize
        shared_fcs = [Linear(inChannels * roiSize * roiSize, fcChannels), Linear(fcChannels, fcChannels)]
        fc_cls = Linear(fcChannels, numClasses + 1)
        fc_reg = Linear(fcChannels, regClassAgnostic ? 4 : 4 * numClasses)
        super.init()
        for fc in shared_fcs {
            let s = fc.weight.shape, bound = (6 / Float(s[0] + s[1])).squareRoot()
            fc.weight.assign(Init.uniform(s, bound: bound))
            fc.bias?.fill(0)
        }
        fc_cls.weight.assign(Init.normal(fc_cls.weight.shape, std: 0.01)); fc_cls.bias?.fill(0)
        fc_reg.weight.assign(Init.normal(fc_reg.weight.shape, std: 0.001)); fc_reg.bias?.fill(0)
    }

    /// Class logits [K, classes + 1] and deltas [K, 4·classes] (or [K, 4], class-agnostic).
    public func callAsFunction(_ roiFeats: Tensor) -> (cls: Tensor, reg: Tensor) {
        var x = roiFeats.reshape([roiFeats.shape[0], -1])
        for fc in shared_fcs { x = fc(x).relu() }
        return (fc_cls(x), fc_reg(x))
    }

    /// mmdet `BBoxHead.loss`: softmax cross-entropy over the sampled RoIs (labels 0..<classes, `numClasses` for
    /// background) and L1 (or smooth L1) on the positives' deltas of their own class (or the class-agnostic ones),
    /// both divided by the number of RoIs.
    /// `targets` are the encoded deltas of the positives (4 per positive, in the order of `labels`' positives).
    public func loss(cls: Tensor, reg: Tensor, labels: [Int], targets: [Float]) -> [(String, Tensor)] {
        let k = labels.count
        let lossCls = crossEntropy(cls, labels.map { Int32($0) }) * clsLossWeight
        let pos = (0..<k).filter { labels[$0] < numClasses }
        let lossBbox: Tensor
        if pos.isEmpty {
            lossBbox = reg.sum() * 0
        } else {
            // Row r's own-class deltas: columns 4·label ..< 4·label + 4 of the flattened [K·classes, 4] view.
            let perRow = regClassAgnostic ? 1 : numClasses
            let rows = pos.map { $0 * perRow + (regClassAgnostic ? 0 : labels[$0]) }
            let predicted = reg.reshape([k * perRow, 4]).indexSelect(axis: 0, rows), target = Tensor(targets, shape: [pos.count, 4])
            let summed = smoothL1Beta.map { smoothL1Loss(predicted, target, beta: $0, reduction: .sum) } ?? l1Loss(predicted, target, reduction: .sum)
            lossBbox = summed * (bboxLossWeight / Float(max(k, 1)))
        }
        return [("loss_cls", lossCls), ("loss_bbox", lossBbox)]
    }

    /// mmdet's `regress_by_class` for one image: `rois` (flat x1y1x2y2, K boxes) moved by rows `firstRow..<firstRow+K`
    /// of `reg` (each row's deltas for its class in `labels`, or the class-agnostic ones) and clipped to `imgShape`.
    public func regressByClass(rois: [Float], labels: [Int], reg: Tensor, firstRow: Int, imgShape: (height: Int, width: Int)) -> [Float] {
        let k = rois.count / 4, r = reg.data
        var deltas = [Float](repeating: 0, count: 4 * k)
        for i in 0..<k {
            let row = regClassAgnostic ? firstRow + i : (firstRow + i) * numClasses + labels[i]
            for t in 0..<4 { deltas[4 * i + t] = r[row * 4 + t] }
        }
        return coder.decode(anchors: rois, deltas: deltas, maxShape: imgShape)
    }

    /// Per row of `cls` [K, classes + 1], the best foreground class (background left out).
    public func foregroundArgmax(_ cls: Tensor) -> [Int] {
        withNoGrad { cls.slice(axis: 1, start: 0, end: numClasses).argmax(axis: 1).map { Int($0) } }
    }

    /// mmdet's RCNN `test_cfg`: scores above `scoreThr`, class-wise NMS at `iouThreshold`, at most `maxPerImage`.
    public struct TestConfig: Equatable {
        public var scoreThr: Float = 0.05
        public var iouThreshold: Float = 0.5
        public var maxPerImage = 100
        public init(scoreThr: Float = 0.05, iouThreshold: Float = 0.5, maxPerImage: Int = 100) {
            self.scoreThr = scoreThr; self.iouThreshold = iouThreshold; self.maxPerImage = maxPerImage
        }
    }

    /// `predict` for a batch: `rois` per image (flat x1y1x2y2), `cls` / `reg` the rows of every image's RoIs in order;
    /// `scaleFactors` nil keeps the boxes at input scale (a mask head rescales them after).
    public func predict(rois perImage: [[Float]], cls: Tensor, reg: Tensor, imgShapes: [(height: Int, width: Int)],
                        scaleFactors: [[Float]]?, config cfg: TestConfig) -> [ImageDetections] {
        var start = 0
        return perImage.enumerated().map { b, p -> ImageDetections in
            let k = p.count / 4
            defer { start += k }
            guard k > 0 else { return ImageDetections() }
            return predict(rois: p, cls: cls.slice(axis: 0, start: start, end: start + k), reg: reg.slice(axis: 0, start: start, end: start + k),
                           imgShape: imgShapes[b], scaleFactor: scaleFactors?[b] ?? [1, 1, 1, 1], config: cfg)
        }
    }

    /// mmdet `BBoxHead._predict_by_feat_single` + `multiclass_nms` for one image: softmax scores, per-class boxes
    /// decoded from `rois` (flat x1y1x2y2) and clipped to `imgShape`, divided by `scaleFactor`, then every
    /// (box, class) above `scoreThr`, NMS per class, best `maxPerImage`.
    public func predict(rois: [Float], cls: Tensor, reg: Tensor, imgShape: (height: Int, width: Int), scaleFactor: [Float],
                        config cfg: TestConfig) -> ImageDetections {
        let k = rois.count / 4, c = numClasses
        guard k > 0 else { return ImageDetections() }
        let probs = withNoGrad { cls.softmax(axis: 1) }
        let p = probs.data, r = reg.data
        var anchors: [Float] = [], deltas: [Float] = [], scores: [Float] = [], labels: [Int] = []
        for i in 0..<k {
            for j in 0..<c where p[i * (c + 1) + j] > cfg.scoreThr {
                anchors += rois[(4 * i)..<(4 * i + 4)]
                for t in 0..<4 { deltas.append(r[(regClassAgnostic ? i : i * c + j) * 4 + t]) }
                scores.append(p[i * (c + 1) + j])
                labels.append(j)
            }
        }
        var boxes = coder.decode(anchors: anchors, deltas: deltas, maxShape: imgShape)
        for i in 0..<boxes.count { boxes[i] /= scaleFactor[i % 4] }
        let keep = postProcess(boxes: boxes, scores: scores, labels: labels, iouThreshold: cfg.iouThreshold, maxPerImage: cfg.maxPerImage)
        return ImageDetections(boxes: keep.flatMap { boxes[(4 * $0)..<(4 * $0 + 4)] }, scores: keep.map { scores[$0] },
                               labels: keep.map { labels[$0] })
    }
}

extension Shared2FCBBoxHead {
    /// mmdet's Shared2FCBBoxHead keys; `stds` are the coder's default target stds.
    static func fields(stds: [Double] = [0.1, 0.1, 0.2, 0.2]) -> [ConfigSchema.Field] {
        [.init("in_channels", .positiveInt), .init("fc_out_channels", .positiveInt, default: 1024),
         .init("roi_feat_size", .positiveInt, default: 7), .init("num_classes", .positiveInt, required: true),
         .init("bbox_coder", .object(DeltaXYWHBBoxCoder.fields(stds: stds, zeroMeans: true))),
         .init("reg_class_agnostic", .bool, default: false),
         .init("loss_cls", .object([.init("type", .oneOf(["CrossEntropyLoss"]), default: "CrossEntropyLoss"),
                                    .init("use_sigmoid", .exactly(false), default: false), .init("loss_weight", .nonNegativeNumber, default: 1)])),
         .init("loss_bbox", .object([.init("type", .oneOf(["L1Loss", "SmoothL1Loss"]), default: "L1Loss"),
                                     .init("beta", .positiveNumber), .init("loss_weight", .nonNegativeNumber, default: 1)]))]
    }

    /// Context: the neck's channels, which `in_channels` must equal when given.
    static func register(in r: Registry<Shared2FCBBoxHead, Int>) {
        r.register("Shared2FCBBoxHead", fields: fields()) { c, channels in
            try c.checkChannels("in_channels", channels)
            let head = Shared2FCBBoxHead(inChannels: channels, roiSize: try c.int("roi_feat_size"), fcChannels: try c.int("fc_out_channels"),
                                         numClasses: try c.int("num_classes"), regClassAgnostic: try c.bool("reg_class_agnostic"))
            head.coder = try Registries.bboxCoders.build(c.section("bbox_coder"))
            head.clsLossWeight = Float(try c.double("loss_cls.loss_weight"))
            head.bboxLossWeight = Float(try c.double("loss_bbox.loss_weight"))
            head.smoothL1Beta = try smoothL1BetaSetting(c.section("loss_bbox"))
            return head
        }
    }
}
