import Data
import Foundation

/// Why a label/prediction pair cannot be evaluated; each names the image.
extension KitError {
    public static func sizeMismatch(name: String, label: (height: Int, width: Int), pred: (height: Int, width: Int)) -> KitError {
        .data("\(name): prediction is \(pred.height)x\(pred.width) (HxW) but the label is \(label.height)x\(label.width)")
    }
    public static func labelOutOfRange(name: String, value: Int, numClasses n: Int, ignoreIndex: Int) -> KitError {
        .data("\(name): label value \(value) is not a class id in 0..<\(n) nor the ignore index \(ignoreIndex)")
    }
    public static func predictionOutOfRange(name: String, value: Int, numClasses n: Int) -> KitError {
        .data("\(name): predicted value \(value) is not a class id in 0..<\(n)")
    }
}

/// Per-class pixel counts of one image or of a whole data set (mmseg's `intersect_and_union` outputs).
/// `union = predLabel + label - intersect`.
public struct SegmentationAreas: Equatable, Sendable {
    public var intersect: [Int64]
    public var union: [Int64]
    public var predLabel: [Int64]
    public var label: [Int64]

    public init(numClasses: Int) {
        intersect = [Int64](repeating: 0, count: numClasses)
        union = intersect
        predLabel = intersect
        label = intersect
    }

    public static func += (a: inout SegmentationAreas, b: SegmentationAreas) {
        for c in a.intersect.indices {
            a.intersect[c] += b.intersect[c]
            a.union[c] += b.union[c]
            a.predLabel[c] += b.predLabel[c]
            a.label[c] += b.label[c]
        }
    }
}

/// mmseg's `intersect_and_union` for one image: pixels whose (possibly reduced) label equals `ignoreIndex` are
/// dropped from both maps, then class histograms of the matches, the predictions and the labels are counted.
/// `pred` and `label` are `height * width` class ids; `label` is raw (before `reduce_zero_label`).
/// Unlike mmseg (whose `histc` silently drops out-of-range values) a value that is neither a class nor ignore throws,
/// because it always means the inputs are wrong.
public func intersectAndUnion(pred: LabelMap, label: LabelMap, numClasses: Int, ignoreIndex: Int = 255,
                              reduceZeroLabel: Bool = false, name: String = "<image>") throws -> SegmentationAreas {
    guard pred.width == label.width && pred.height == label.height else {
        throw KitError.sizeMismatch(name: name, label: (label.height, label.width), pred: (pred.height, pred.width))
    }
    precondition(numClasses > 0 && numClasses <= 256, "numClasses must be in 1...256")
    var intersect = [Int64](repeating: 0, count: numClasses)
    var predHist = intersect
    var labelHist = intersect
    try pred.labels.withUnsafeBufferPointer { p in
        try label.labels.withUnsafeBufferPointer { l in
            for i in 0..<p.count {
                var y = Int(l[i])
                if reduceZeroLabel { y = y == 0 || y == 255 ? 255 : y - 1 }
                if y == ignoreIndex { continue }
                guard y < numClasses else {
                    throw KitError.labelOutOfRange(name: name, value: y, numClasses: numClasses, ignoreIndex: ignoreIndex)
                }
                let x = Int(p[i])
                guard x < numClasses else {
                    throw KitError.predictionOutOfRange(name: name, value: x, numClasses: numClasses)
                }
                labelHist[y] += 1
                predHist[x] += 1
                if x == y { intersect[x] += 1 }
            }
        }
    }
    var areas = SegmentationAreas(numClasses: numClasses)
    areas.intersect = intersect
    areas.predLabel = predHist
    areas.label = labelHist
    for c in 0..<numClasses { areas.union[c] = predHist[c] + labelHist[c] - intersect[c] }
    return areas
}

/// mmseg's `total_area_to_metrics` for "mIoU": fractions, not percent; NaN where a ratio's denominator is 0.
public struct MIoUResult: Sendable {
    /// Overall pixel accuracy: Σ intersect / Σ label.
    public var aAcc: Double
    /// NaN-excluding means of `iou` and `acc` (NaN if every class is NaN).
    public var mIoU: Double
    public var mAcc: Double
    /// Per class: intersect / union and intersect / label.
    public var iou: [Double]
    public var acc: [Double]
    public var totals: SegmentationAreas

    public init(totals: SegmentationAreas) {
        self.totals = totals
        let n = totals.intersect.count
        iou = (0..<n).map { Double(totals.intersect[$0]) / Double(totals.union[$0]) }
        acc = (0..<n).map { Double(totals.intersect[$0]) / Double(totals.label[$0]) }
        aAcc = Double(totals.intersect.reduce(0, +)) / Double(totals.label.reduce(0, +))
        mIoU = MIoUResult.nanMean(iou)
        mAcc = MIoUResult.nanMean(acc)
    }

    /// numpy's `nanmean`: the mean of the non-NaN values.
    static func nanMean(_ values: [Double]) -> Double {
        let kept = values.filter { !$0.isNaN }
        return kept.isEmpty ? .nan : kept.reduce(0, +) / Double(kept.count)
    }
}

/// Accumulates areas image by image (mmseg's `IoUMetric.process`), then `compute()` sums them over the data set
/// (not a per-image average) as `IoUMetric.compute_metrics` does. A training loop feeds in-memory label maps.
public struct MIoUMetric: Sendable {
    public let numClasses: Int
    public let ignoreIndex: Int
    public let reduceZeroLabel: Bool
    public private(set) var totals: SegmentationAreas
    public private(set) var imageCount = 0

    public init(numClasses: Int, ignoreIndex: Int = 255, reduceZeroLabel: Bool = false) {
        self.numClasses = numClasses
        self.ignoreIndex = ignoreIndex
        self.reduceZeroLabel = reduceZeroLabel
        totals = SegmentationAreas(numClasses: numClasses)
    }

    /// Adds one image; `label` is raw (reduce_zero_label, if set, is applied here). Returns that image's areas.
    @discardableResult
    public mutating func process(pred: LabelMap, label: LabelMap, name: String = "<image>") throws -> SegmentationAreas {
        let areas = try intersectAndUnion(pred: pred, label: label, numClasses: numClasses, ignoreIndex: ignoreIndex,
                                          reduceZeroLabel: reduceZeroLabel, name: name)
        totals += areas
        imageCount += 1
        return areas
    }

    public func compute() -> MIoUResult { MIoUResult(totals: totals) }
}

/// mmseg's printed form of a fraction: numpy `round(x * 100, 2)` (half to even) with two decimals, "nan" for NaN.
public func formatPercent(_ fraction: Double) -> String {
    fraction.isNaN ? "nan" : String(format: "%.2f", (fraction * 100 * 100).rounded(.toNearestOrEven) / 100)
}
