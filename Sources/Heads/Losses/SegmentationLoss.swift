import Engine
import NN

/// mmseg's `CrossEntropyLoss(use_sigmoid=False)` as a decode head's `loss_decode`, applied the way
/// BaseDecodeHead.losses applies it: logits are resized bilinearly (align_corners=False) to the label size, then
/// per-pixel cross-entropy skips `ignoreIndex` (255) and is scaled by `lossWeight`.
///
/// Reduction (mmseg 0.x, which the ACmix/Swin segmentation code uses): with `avgNonIgnore == false` (mmseg's default)
/// the per-pixel losses w[t]·nll are averaged over *all* N·H·W pixels, ignored ones counting as zero; with
/// `avgNonIgnore == true` over the non-ignored pixels only. Class weights scale each pixel's term but are not a
/// normaliser (mmseg's weight_reduce_loss), unlike torch's weighted mean.
public struct SegmentationLoss: Sendable {
    public var ignoreIndex: Int32 = 255
    public var classWeight: [Float]?
    public var lossWeight: Float = 1
    public var avgNonIgnore = false

    public init(ignoreIndex: Int32 = 255, classWeight: [Float]? = nil, lossWeight: Float = 1, avgNonIgnore: Bool = false) {
        self.ignoreIndex = ignoreIndex
        self.classWeight = classWeight
        self.lossWeight = lossWeight
        self.avgNonIgnore = avgNonIgnore
    }

    /// logits [N, C, h, w]; labels N·H·W class ids (row-major NHW, `ignoreIndex` = ignore) of size `labelSize`
    /// (H, W). Returns the scalar loss (already multiplied by `lossWeight`).
    public func callAsFunction(_ logits: Tensor, labels: [Int32], labelSize: (height: Int, width: Int)) -> Tensor {
        let (h, w) = labelSize, c = logits.shape[1]
        precondition(labels.count == logits.shape[0] * h * w, "seg loss: \(labels.count) labels for \(logits.shape[0])×\(h)×\(w)")
        precondition(classWeight == nil || classWeight!.count == c, "seg loss: \(classWeight!.count) class weights for \(c) classes")
        let resized = logits.resizeBilinear(h, w)
        // The engine's cross-entropy is torch's weighted mean Σ w_t·nll / Σ w_t over kept pixels; rescale it to
        // mmseg's Σ w_t·nll / avg_factor. Σ w_t depends only on the labels, so the factor is a constant.
        var weightSum = 0.0, kept = 0
        for t in labels where t != ignoreIndex {
            precondition(t >= 0 && Int(t) < c, "seg loss: label \(t) is neither a class of \(c) nor \(ignoreIndex)")
            weightSum += Double(classWeight?[Int(t)] ?? 1)
            kept += 1
        }
        guard kept > 0 else {
            // Every pixel ignored: mmseg's sum over nothing is 0 (the engine would give NaN); keep the graph connected.
            return resized.sum() * 0
        }
        let avgFactor = Double(avgNonIgnore ? kept : labels.count)
        let ce = crossEntropy(resized, labels, ignoreIndex: ignoreIndex, weight: classWeight)
        return ce * Float(Double(lossWeight) * weightSum / avgFactor)
    }

    /// Pixel accuracy in percent over non-ignored pixels (mmseg's `acc_seg`), from logits resized to the labels.
    public func accuracy(_ logits: Tensor, labels: [Int32], labelSize: (height: Int, width: Int)) -> Float {
        let pred = withNoGrad { logits.resizeBilinear(labelSize.height, labelSize.width).argmax(axis: 1) }
        var correct = 0, kept = 0
        for (p, t) in zip(pred, labels) where t != ignoreIndex {
            kept += 1
            if p == t { correct += 1 }
        }
        return kept == 0 ? 0 : 100 * Float(correct) / Float(kept)
    }
}
