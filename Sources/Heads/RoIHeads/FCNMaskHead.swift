import Config
import Engine
import Foundation
import NN

/// mmdet's `FCNMaskHead`: RoI features [K, C, 14, 14] → `convs.0..3` (3×3 conv + ReLU) → `upsample` (2×2 stride-2
/// deconvolution) → ReLU → `conv_logits` (1×1) → mask logits [K, classes, 28, 28], one map per class.
///
/// Init as mmdet: the convs as mmcv's ConvModule (Kaiming normal, fan_out), `upsample` and `conv_logits` Kaiming
/// normal (fan_out, ReLU), biases 0.
public final class FCNMaskHead: Module {
    public let convs: [ConvModule]
    public let upsample: ConvTranspose2d
    public let conv_logits: Conv2d
    public let numClasses: Int
    public var lossWeight: Float = 1
    /// `train_cfg.rcnn.mask_size`: the side of the mask targets.
    public var maskSize = 28
    /// The side of the RoI features it takes (mmdet's `roi_feat_size`); it predicts 2 × that.
    public var roiSize = 14

    public init(inChannels: Int = 256, convChannels: Int = 256, numConvs: Int = 4, kernelSize: Int = 3, numClasses: Int) {
        self.numClasses = numClasses
        convs = (0..<numConvs).map { i in
            ConvModule(i == 0 ? inChannels : convChannels, convChannels, kernelSize: kernelSize, padding: (kernelSize - 1) / 2, norm: .none)
        }
        let last = numConvs > 0 ? convChannels : inChannels
        upsample = ConvTranspose2d(last, convChannels, kernelSize: 2, stride: 2)
        conv_logits = Conv2d(convChannels, numClasses, kernelSize: 1)
        super.init()
        for (w, b) in [(upsample.weight, upsample.bias), (conv_logits.weight, conv_logits.bias)] {
            // torch's kaiming_normal_(mode='fan_out') takes fan_out from dim 0 · k² for either layout.
            w.assign(Init.kaimingNormalFanOut(w.shape))
            b?.fill(0)
        }
    }

    /// Mask logits [K, classes, 2·S, 2·S] of RoI features [K, C, S, S].
    public func callAsFunction(_ roiFeats: Tensor) -> Tensor {
        var x = roiFeats
        for conv in convs { x = conv(x) }
        return conv_logits(upsample(x).relu())
    }

    /// mmdet's `mask_target_single` for one image: each positive box, clipped to the mask canvas, crops its ground
    /// truth's mask with RoIAlign (`maskSize`², sampling ratio 0, aligned) and is binarised at 0.5 (mmdet's
    /// `BitmapMasks.crop_and_resize`). Returns P · maskSize² values in {0, 1}.
    public func maskTargets(boxes: [Float], gtIndices: [Int], masks: [BitmapMask]) -> [Float] {
        let p = gtIndices.count
        guard p > 0 else { return [] }
        let h = masks[0].height, w = masks[0].width
        // Only the masks some positive uses are turned into planes.
        let used = Array(Set(gtIndices)).sorted()
        var plane = [Int](repeating: 0, count: masks.count)
        for (i, g) in used.enumerated() { plane[g] = i }
        let planes = Tensor(zeros: [used.count, 1, h, w])
        for (i, g) in used.enumerated() {
            let dst = planes.data + i * h * w
            for (j, v) in masks[g].data.enumerated() { dst[j] = Float(v) }
        }
        var rois: [Float] = []
        rois.reserveCapacity(5 * p)
        for i in 0..<p {
            rois += [Float(plane[gtIndices[i]]), min(max(boxes[4 * i], 0), Float(w)), min(max(boxes[4 * i + 1], 0), Float(h)),
                     min(max(boxes[4 * i + 2], 0), Float(w)), min(max(boxes[4 * i + 3], 0), Float(h))]
        }
        let crops = withNoGrad { planes.roiAlign(rois: rois, outH: maskSize, outW: maskSize, spatialScale: 1, samplingRatio: 0, aligned: true) }
        return (0..<crops.count).map { crops.data[$0] >= 0.5 ? 1 : 0 }
    }

    /// mmdet's `FCNMaskHead.loss_and_target` with `CrossEntropyLoss(use_mask=True)`: binary cross-entropy of each
    /// positive's own-class logits [P, S, S] against its targets, averaged over every pixel.
    public func loss(_ logits: Tensor, labels: [Int], targets: [Float]) -> (String, Tensor) {
        let p = labels.count
        guard p > 0 else { return ("loss_mask", logits.sum() * 0) }
        let s = logits.shape[2] * logits.shape[3]
        let own = logits.reshape([p * numClasses, s]).indexSelect(axis: 0, (0..<p).map { $0 * numClasses + labels[$0] })
        return ("loss_mask", binaryCrossEntropyWithLogits(own, Tensor(targets, shape: [p, s])) * lossWeight)
    }

    /// The masks of a batch's detections (mmdet's `predict_by_feat`): `logits` has one row per detection, images in
    /// order; each image's boxes are divided by its scale factor first (to original pixels) and its masks pasted at
    /// its original size.
    public func predictMasks(_ logits: Tensor, into dets: inout [ImageDetections], scaleFactors: [[Float]],
                             oriShapes: [(height: Int, width: Int)], threshold: Float, activated: Bool = false) {
        var start = 0
        for b in dets.indices {
            let k = dets[b].count
            defer { start += k }
            for i in 0..<dets[b].boxes.count { dets[b].boxes[i] /= scaleFactors[b][i % 4] }
            dets[b].masks = k == 0 ? [] : predictMasks(logits.slice(axis: 0, start: start, end: start + k), boxes: dets[b].boxes,
                                                       labels: dets[b].labels, image: oriShapes[b], threshold: threshold,
                                                       activated: activated)
        }
    }

    /// mmdet's `_predict_by_feat_single` on CPU: each detection's own-class probabilities pasted into an
    /// `image`-sized canvas at its box (original-image pixels) as `_do_paste_mask` does, thresholded at
    /// `threshold`. `logits` [K, classes, S, S] (probabilities already, with `activated`: mmdet's `activate_map`).
    public func predictMasks(_ logits: Tensor, boxes: [Float], labels: [Int], image: (height: Int, width: Int),
                             threshold: Float, activated: Bool = false) -> [MaskRuns] {
        let s = logits.shape[2], side = logits.shape[3]
        return labels.indices.map { k in
            let probs = logits.data + (k * numClasses + labels[k]) * s * side
            return pasteMask(probs, maskHeight: s, maskWidth: side, box: Array(boxes[(4 * k)..<(4 * k + 4)]), image: image,
                             threshold: threshold, activated: activated)
        }
    }
}

/// mmdet's `_do_paste_mask` (skip_empty, one box) of sigmoid(`logits`) (or `logits` as they are, `activated`)
/// [maskHeight, maskWidth] into an image at `box`,
/// thresholded: the canvas window from ⌊x0⌋ − 1 to ⌈x1⌉ + 1 (clipped) samples the mask with `grid_sample` (bilinear,
/// zero padding, align_corners False) at pixel centres mapped into the box; everything outside the window is 0.
public func pasteMask(_ logits: UnsafePointer<Float>, maskHeight mh: Int, maskWidth mw: Int, box: [Float],
                      image: (height: Int, width: Int), threshold: Float, activated: Bool = false) -> MaskRuns {
    let (x0, y0, x1, y1) = (box[0], box[1], box[2], box[3])
    func bounded(_ v: Float, _ hi: Int) -> Int { v.isNaN ? 0 : Int(min(max(v, 0), Float(hi))) }
    let xa = bounded(x0.rounded(.down) - 1, image.width), ya = bounded(y0.rounded(.down) - 1, image.height)
    let xb = bounded(x1.rounded(.up) + 1, image.width), yb = bounded(y1.rounded(.up) + 1, image.height)
    let rw = max(xb - xa, 0), rh = max(yb - ya, 0)
    // Grid coordinates in [-1, 1] as torch computes them in float32; ±inf (a flat box) becomes 0.
    func grid(_ i: Int, _ lo: Float, _ hi: Float) -> Float {
        let g = (Float(i) + 0.5 - lo) / (hi - lo) * 2 - 1
        return g.isInfinite ? 0 : g
    }
    let probs = (0..<(mh * mw)).map { activated ? logits[$0] : 1 / (1 + Foundation.exp(-logits[$0])) }
    func value(_ iy: Int, _ ix: Int) -> Float { iy >= 0 && iy < mh && ix >= 0 && ix < mw ? probs[iy * mw + ix] : 0 }
    let xs = (xa..<(xa + rw)).map { ((grid($0, x0, x1) + 1) * Float(mw) - 1) / 2 }
    var region = [UInt8](repeating: 0, count: rw * rh)
    for r in 0..<rh {
        let y = ((grid(ya + r, y0, y1) + 1) * Float(mh) - 1) / 2
        guard !y.isNaN else { continue }
        let yn = y.rounded(.down), n = y - yn, sN = 1 - n, iy = Int(max(min(yn, 1e6), -1e6))
        for c in 0..<rw {
            let x = xs[c]
            guard !x.isNaN else { continue }
            let xw = x.rounded(.down), w = x - xw, e = 1 - w, ix = Int(max(min(xw, 1e6), -1e6))
            let v = value(iy, ix) * (sN * e) + value(iy, ix + 1) * (sN * w) + value(iy + 1, ix) * (n * e) + value(iy + 1, ix + 1) * (n * w)
            if v >= threshold { region[r * rw + c] = 1 }
        }
    }
    return MaskRuns(width: image.width, height: image.height, region: region, x: xa, y: ya, regionWidth: rw, regionHeight: rh)
}

extension FCNMaskHead {
    /// mmdet's FCNMaskHead keys with its defaults (4 convs of 256, 14×14 RoIs, loss weight 1).
    static let fields: [ConfigSchema.Field] = [
        .init("num_convs", .intRange(0...16), default: 4), .init("in_channels", .positiveInt),
        .init("conv_out_channels", .positiveInt, default: 256), .init("conv_kernel_size", .exactly(3), default: 3),
        .init("roi_feat_size", .positiveInt, default: 14), .init("num_classes", .positiveInt, required: true),
        .init("class_agnostic", .exactly(false), default: false),
        .init("upsample_cfg", .object([.init("type", .oneOf(["deconv"]), default: "deconv"), .init("scale_factor", .exactly(2), default: 2)])),
        .init("loss_mask", .object([.init("type", .oneOf(["CrossEntropyLoss"]), default: "CrossEntropyLoss"),
                                    .init("use_mask", .exactly(true), default: true), .init("loss_weight", .nonNegativeNumber, default: 1)])),
    ]

    /// Context: the neck's channels, which `in_channels` must equal when given.
    static func register(in r: Registry<FCNMaskHead, Int>) {
        r.register("FCNMaskHead", fields: fields) { c, channels in
            try c.checkChannels("in_channels", channels)
            let head = FCNMaskHead(inChannels: channels, convChannels: try c.int("conv_out_channels"), numConvs: try c.int("num_convs"),
                                   numClasses: try c.int("num_classes"))
            head.lossWeight = Float(try c.double("loss_mask.loss_weight"))
            head.roiSize = try c.int("roi_feat_size")
            return head
        }
    }
}
