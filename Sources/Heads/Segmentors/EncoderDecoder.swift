import Backbones
import Config
import Engine
import NN

/// What training and evaluation need from any segmentor.
public protocol Segmentor: Module {
    var numClasses: Int { get }
    /// The backbone (for feature extraction and input-size checks).
    var backbone: any Backbone { get }
    /// How `inference` runs by default (the config's `test_cfg`).
    var testMode: SegmentationInferenceMode { get }
    /// Throws when the model cannot take an input (or a slide crop) of this size.
    func validate(height: Int, width: Int) throws
    /// Losses of one training step against labels N·H·W at the image size (255 ignored).
    func forwardTrain(images: Tensor, labels: [Int32]) -> SegmentationTrainOutput
    /// Logits [N, numClasses, H', W'] without gradients, at `outputSize` or the input size.
    func inference(_ images: Tensor, mode: SegmentationInferenceMode, outputSize: (height: Int, width: Int)?) -> Tensor
}

/// mmseg's test_cfg `mode`: one pass over the whole image, or overlapping crops averaged with a count matrix.
public enum SegmentationInferenceMode: Sendable {
    case whole
    /// `crop_size` and `stride` as (height, width), e.g. ((512, 512), (341, 341)) for ADE20K.
    case slide(crop: (height: Int, width: Int), stride: (height: Int, width: Int))
}

/// The losses of one training step: `loss` (the sum of every `*.loss_seg` term, what to back-propagate) and every
/// logged term by mmseg's name (`decode.loss_seg`, `decode.acc_seg`, `aux.loss_seg`, `aux.acc_seg`).
public struct SegmentationTrainOutput {
    public var loss: Tensor
    public var terms: [(name: String, value: Float)]
    /// The loss tensors `loss` sums, by name (`decode.loss_seg`, `aux.loss_seg`).
    public var lossTerms: [(name: String, loss: Tensor)]

    public func term(_ name: String) -> Float? { terms.first { $0.name == name }?.value }
}

/// mmseg's EncoderDecoder: backbone → optional neck → decode head, plus an optional auxiliary head used for its loss
/// in training only. State-dict keys: `backbone.*`, `neck.*`, `decode_head.*`, `auxiliary_head.*`, as mmseg saves them.
///
/// Images are [N, 3, H, W] normalised; labels N·H·W class ids at the image size (255 = ignore).
public final class EncoderDecoder: Module, Segmentor {
    public let backbone: any Backbone
    public let neck: (any Neck)?
    public let decode_head: any SegmentationDecodeHead
    public let auxiliary_head: (any SegmentationDecodeHead)?
    public var testMode: SegmentationInferenceMode = .whole

    public var numClasses: Int { decode_head.numClasses }

    /// Each head carries its own loss (`lossDecode`; the UPerNet configs weigh the auxiliary one 0.4).
    public init(backbone: any Backbone, neck: (any Neck)? = nil, decodeHead: any SegmentationDecodeHead,
                auxiliaryHead: (any SegmentationDecodeHead)? = nil) {
        if let auxiliaryHead {
            precondition(auxiliaryHead.numClasses == decodeHead.numClasses, "auxiliary head classes differ from the decode head's")
        }
        self.backbone = backbone
        self.neck = neck
        decode_head = decodeHead
        auxiliary_head = auxiliaryHead
    }

    /// mmengine's `init_weights` for what the config's `init_cfg`s ask: each head's classifier, decode head first.
    public func initWeights() {
        for head in [decode_head] + (auxiliary_head.map { [$0] } ?? []) {
            if let std = head.convSegInitStd { initConvSeg(head.conv_seg, std: std) }
        }
    }

    /// Explicit, because the parts are existentials: the keys are mmseg's attribute names.
    public override func children() -> [(String, Module)] {
        var out: [(String, Module)] = [("backbone", backbone)]
        if let neck { out.append(("neck", neck)) }
        out.append(("decode_head", decode_head))
        if let auxiliary_head { out.append(("auxiliary_head", auxiliary_head)) }
        return out
    }

    /// Throws when the backbone cannot take an input (or a slide crop) of this size.
    public func validate(height: Int, width: Int) throws { try backbone.validate(height: height, width: width) }

    /// `extract_feat`: backbone levels, through the neck when there is one.
    public func extractFeatures(_ images: Tensor) -> [Tensor] {
        let feats = backbone.features(images)
        return neck.map { $0(feats) } ?? feats
    }

    /// `encode_decode`: decode-head logits resized bilinearly to the input size, [N, numClasses, H, W].
    public func encodeDecode(_ images: Tensor) -> Tensor {
        decode_head(extractFeatures(images)).resizeBilinear(images.shape[2], images.shape[3])
    }

    /// `forward_train`: decode (and auxiliary) head losses against `labels` (N·H·W at the image size, 255 ignored).
    /// Runs in whatever mode the model is in; call `train()` first for batch statistics and dropout.
    public func forwardTrain(images: Tensor, labels: [Int32]) -> SegmentationTrainOutput {
        let size = (height: images.shape[2], width: images.shape[3])
        let feats = extractFeatures(images)
        // Resized to the labels once here, so the loss's and the accuracy's own resizes are no-ops.
        let logits = decode_head(feats).resizeBilinear(size.height, size.width)
        let decodeLoss = decode_head.lossDecode
        let decode = decodeLoss(logits, labels: labels, labelSize: size)
        var loss = decode, lossTerms = [(name: "decode.loss_seg", loss: decode)]
        var terms: [(name: String, value: Float)] = [("decode.loss_seg", decode.item),
                                                      ("decode.acc_seg", decodeLoss.accuracy(logits, labels: labels, labelSize: size))]
        if let auxiliary_head {
            let auxiliaryLoss = auxiliary_head.lossDecode
            let auxLogits = auxiliary_head(feats).resizeBilinear(size.height, size.width)
            let auxLoss = auxiliaryLoss(auxLogits, labels: labels, labelSize: size)
            terms += [("aux.loss_seg", auxLoss.item),
                      ("aux.acc_seg", auxiliaryLoss.accuracy(auxLogits, labels: labels, labelSize: size))]
            lossTerms.append((name: "aux.loss_seg", loss: auxLoss))
            loss = loss + auxLoss
        }
        return SegmentationTrainOutput(loss: loss, terms: terms, lossTerms: lossTerms)
    }

    /// `forwardTrain` with the loader's UInt8 label maps (`Batch.labels`, padded with 255).
    public func forwardTrain(images: Tensor, labels: [UInt8]) -> SegmentationTrainOutput {
        forwardTrain(images: images, labels: labels.map { Int32($0) })
    }

    /// Logits [N, numClasses, H', W'] without recording gradients, where (H', W') is `outputSize` (mmseg's rescale
    /// to `ori_shape`) or the input size. Uses the model's current mode: call `eval()` first for test behaviour.
    public func inference(_ images: Tensor, mode: SegmentationInferenceMode = .whole,
                          outputSize: (height: Int, width: Int)? = nil) -> Tensor {
        withNoGrad {
            let logits: Tensor
            switch mode {
            case .whole: logits = encodeDecode(images)
            case let .slide(crop, stride): logits = slideInference(images, crop: crop, stride: stride)
            }
            guard let outputSize else { return logits }
            return logits.resizeBilinear(outputSize.height, outputSize.width)
        }
    }

    /// Label maps N·H'·W' (argmax of the logits; mmseg's softmax before it does not change the argmax).
    public func predict(_ images: Tensor, mode: SegmentationInferenceMode = .whole,
                        outputSize: (height: Int, width: Int)? = nil) -> [Int32] {
        inference(images, mode: mode, outputSize: outputSize).argmax(axis: 1)
    }

    /// mmseg's slide_inference: a grid of crops at `stride` (the last row/column shifted back to end at the border,
    /// crops never larger than the image), each crop's `encodeDecode` logits summed into place and divided by how
    /// many crops covered each pixel.
    func slideInference(_ images: Tensor, crop: (height: Int, width: Int), stride: (height: Int, width: Int)) -> Tensor {
        precondition(crop.height > 0 && crop.width > 0 && stride.height > 0 && stride.width > 0,
                     "slide inference: crop \(crop) and stride \(stride) must be positive")
        let (n, hImg, wImg) = (images.shape[0], images.shape[2], images.shape[3])
        let hGrids = max(hImg - crop.height + stride.height - 1, 0) / stride.height + 1
        let wGrids = max(wImg - crop.width + stride.width - 1, 0) / stride.width + 1
        let c = numClasses
        let preds = Tensor(zeros: [n, c, hImg, wImg])
        var count = [Float](repeating: 0, count: hImg * wImg)
        for hi in 0..<hGrids {
            for wi in 0..<wGrids {
                let y2 = min(hi * stride.height + crop.height, hImg), x2 = min(wi * stride.width + crop.width, wImg)
                let y1 = max(y2 - crop.height, 0), x1 = max(x2 - crop.width, 0)
                let window = images.slice(axis: 2, start: y1, end: y2).slice(axis: 3, start: x1, end: x2)
                let logits = encodeDecode(window)
                let (ch, cw) = (y2 - y1, x2 - x1)
                let src = logits.data, dst = preds.data
                for p in 0..<(n * c) {
                    for y in 0..<ch {
                        let s = src + (p * ch + y) * cw, d = dst + (p * hImg + y1 + y) * wImg + x1
                        for x in 0..<cw { d[x] += s[x] }
                    }
                }
                for y in y1..<y2 { for x in x1..<x2 { count[y * wImg + x] += 1 } }
            }
        }
        precondition(!count.contains(0), "slide inference left pixels uncovered")
        let d = preds.data
        for p in 0..<(n * c) { for i in 0..<(hImg * wImg) { d[p * hImg * wImg + i] /= count[i] } }
        return preds
    }
}

extension EncoderDecoder {
    /// UperNet as mmseg's `upernet_r50.py` / the Swin and ACmix UperNet configs build it on `backbone`: UPerHead over all
    /// four levels (channels 512, pool scales 1, 2, 3, 6, dropout 0.1) and an FCNHead auxiliary head on the third
    /// level (256 channels, one conv, no concat, dropout 0.1, loss weight 0.4).
    public static func upernet(backbone: any Backbone, numClasses: Int, channels: Int = 512, auxChannels: Int = 256,
                               norm: ConvNorm = .bn, auxiliary: Bool = true, dropoutRatio: Float = 0.1,
                               auxDropoutRatio: Float = 0.1, auxLossWeight: Float = 0.4) -> EncoderDecoder {
        let c = backbone.featureChannels
        let decode = UPerHead(inChannels: c, channels: channels, numClasses: numClasses, norm: norm, dropoutRatio: dropoutRatio)
        let aux = auxiliary ? FCNHead(inChannels: c[2], channels: auxChannels, numClasses: numClasses, inIndex: 2, norm: norm,
                                      dropoutRatio: auxDropoutRatio) : nil
        aux?.lossDecode.lossWeight = auxLossWeight
        return EncoderDecoder(backbone: backbone, decodeHead: decode, auxiliaryHead: aux)
    }

    /// UperNet on a backbone named by arch (any `BackboneRegistry` name), built without a classification head.
    public static func upernet(arch: String, numClasses: Int, channels: Int = 512, auxChannels: Int = 256,
                               norm: ConvNorm = .bn, auxiliary: Bool = true) throws -> EncoderDecoder {
        let backbone = try BackboneRegistry.make(arch: arch, numClasses: nil, dense: true)   // any input size
        return upernet(backbone: backbone, numClasses: numClasses, channels: channels, auxChannels: auxChannels,
                       norm: norm, auxiliary: auxiliary)
    }

    /// Semantic FPN (mmseg `fpn_r50.py`): `neck` (an FPN with 4 outputs of `neckChannels`) and an FPNHead of
    /// 128 channels over strides 4–32.
    public static func semanticFPN(backbone: any Backbone, neck: any Neck, numClasses: Int,
                                   neckChannels: Int = 256, channels: Int = 128, norm: ConvNorm = .bn,
                                   dropoutRatio: Float = 0.1) -> EncoderDecoder {
        let head = SemanticFPNHead(inChannels: [Int](repeating: neckChannels, count: 4), featureStrides: [4, 8, 16, 32],
                                   channels: channels, numClasses: numClasses, norm: norm, dropoutRatio: dropoutRatio)
        return EncoderDecoder(backbone: backbone, neck: neck, decodeHead: head)
    }
}

extension EncoderDecoder {
    /// `model` of type EncoderDecoder: backbone, optional neck, decode head and optional auxiliary head from their
    /// registries (each head fed the neck's levels, or the backbone's), and `test_cfg` (mmseg's whole or slide).
    static func register(in r: Registry<any Segmentor, Void>) {
        r.register("EncoderDecoder", fields: [
            .init("backbone", Registries.backbones.schema, required: true),
            .init("neck", .optional(Registries.necks.schema)),
            .init("decode_head", Registries.decodeHeads.schema, required: true),
            .init("auxiliary_head", .optional(Registries.decodeHeads.schema)),
            .init("test_cfg", .object([.init("mode", .oneOf(["whole", "slide"]), default: "whole"),
                                       .init("crop_size", .array(.positiveInt, count: 2)),
                                       .init("stride", .array(.positiveInt, count: 2))])),
        ]) { c, _ in
            let backbone = try Registries.backbones.build(c.section("backbone"))
            var levels = backbone.featureChannels
            var neck: (any Neck)?
            if c.has("neck") {
                neck = try Registries.necks.build(c.section("neck"), NeckContext(inChannels: levels))
                levels = [Int](repeating: neck!.outChannels, count: try c.int("neck.num_outs"))
            }
            let decode = try Registries.decodeHeads.build(c.section("decode_head"), DecodeHeadContext(inChannels: levels))
            let aux = c.has("auxiliary_head")
                ? try Registries.decodeHeads.build(c.section("auxiliary_head"), DecodeHeadContext(inChannels: levels)) : nil
            if let aux, aux.numClasses != decode.numClasses {
                throw c.fail("auxiliary_head.num_classes", "\(aux.numClasses) but decode_head.num_classes is \(decode.numClasses)")
            }
            let model = EncoderDecoder(backbone: backbone, neck: neck, decodeHead: decode, auxiliaryHead: aux)
            model.initWeights()
            if try c.string("test_cfg.mode") == "slide" {
                guard c.has("test_cfg.crop_size") && c.has("test_cfg.stride") else {
                    throw c.fail("test_cfg", "slide inference needs crop_size and stride")
                }
                let crop = try c.ints("test_cfg.crop_size"), stride = try c.ints("test_cfg.stride")
                model.testMode = .slide(crop: (crop[0], crop[1]), stride: (stride[0], stride[1]))
                do { try model.validate(height: crop[0], width: crop[1]) } catch { throw c.fail("test_cfg.crop_size", "\(error)") }
            }
            return model
        }
    }
}
