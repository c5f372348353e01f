import Data
import Engine

/// mmdetection's detection confusion matrix (tools/analysis_tools/confusion_matrix.py, 3.3): rows are ground-truth
/// classes, columns predicted classes, the last row and column "background".
///
/// Per image, every detection scoring at least `scoreThreshold` adds one to [gt class, its class] for each ground
/// truth box of any class it overlaps with IoU ≥ `iouThreshold` (no one-to-one matching: a detection may fill several
/// cells, a box be counted by several detections), or one to [background, its class] when it overlaps none; then
/// every ground-truth box no same-class detection reached adds one to [its class, background]. Ground truth as
/// mmdet's CocoDataset loads it: boxes [x, y, x + w, y + h] unclipped; dropped when they do not overlap the image, have
/// area ≤ 0 or a side < 1, or an unknown category; crowd boxes kept. IoUs, scores and thresholds in float32, as mmdet's
/// `bbox_overlaps` (no +1, union at least 1e-6) and its float32 detector outputs compare them.
public struct ConfusionMatrix: Equatable, Sendable {
    /// Class names, by label.
    public let classes: [String]
    /// Category id of each label.
    public let categoryIDs: [Int]
    /// (classes + 1)², row-major by [ground truth][prediction]; index `classes.count` is background.
    public private(set) var counts: [[Int]]

    public init(classes: [String], categoryIDs: [Int]) {
        precondition(classes.count == categoryIDs.count)
        self.classes = classes; self.categoryIDs = categoryIDs
        counts = Array(repeating: Array(repeating: 0, count: classes.count + 1), count: classes.count + 1)
    }

    /// The matrix of `results` (a validated results set: `gt.loadRes`) against `gt`, with labels `categoryIDs`
    /// (nil: the order of the ground truth's `categories` list, as mmdet's CocoDataset numbers them).
    public static func compute(gt: COCODataset, results: COCODataset, categoryIDs: [Int]? = nil,
                               scoreThreshold: Double, iouThreshold: Double) -> ConfusionMatrix {
        let ids = categoryIDs ?? gt.categories.map(\.id)
        var m = ConfusionMatrix(classes: ids.map { gt.category(id: $0)?.name ?? "category \($0)" }, categoryIDs: ids)
        let label = Dictionary(ids.enumerated().map { ($1, $0) }) { a, _ in a }
        var detsByImage: [Int: [COCOAnnotation]] = [:]
        for d in results.annotations where label[d.categoryId] != nil { detsByImage[d.imageId, default: []].append(d) }
        let scoreThr = Float(scoreThreshold), iouThr = Float(iouThreshold)
        for image in gt.images {
            let gts: [(box: [Float], label: Int)] = gt.annotationIndices(imageId: image.id).compactMap { i in
                let a = gt.annotations[Int(i)], b = a.bbox
                guard let l = label[a.categoryId] else { return nil }
                let iw = max(0, min(b.x + b.w, Double(image.width)) - max(b.x, 0))
                let ih = max(0, min(b.y + b.h, Double(image.height)) - max(b.y, 0))
                guard iw * ih > 0, a.area > 0, b.w >= 1, b.h >= 1 else { return nil }
                // mmdet keeps the box as Python floats and bbox_overlaps casts it to float32.
                let box: [Float] = [Float(b.x), Float(b.y), Float(b.x + b.w), Float(b.y + b.h)]
                return (box, l)
            }
            var hit = [Bool](repeating: false, count: gts.count)
            for d in detsByImage[image.id] ?? [] where Float(d.score) >= scoreThr {
                let bb = d.bbox
                let b: [Float] = [Float(bb.x), Float(bb.y), Float(bb.x + bb.w), Float(bb.y + bb.h)]
                let dl = label[d.categoryId]!
                var matched = 0
                for (j, g) in gts.enumerated() where iou(b, g.box) >= iouThr {
                    matched += 1
                    if g.label == dl { hit[j] = true }
                    m.counts[g.label][dl] += 1
                }
                if matched == 0 { m.counts[ids.count][dl] += 1 }
            }
            for (j, g) in gts.enumerated() where !hit[j] { m.counts[g.label][ids.count] += 1 }
        }
        return m
    }

    /// mmdet's `bbox_overlaps` (mode iou, no +1) in float32.
    static func iou(_ a: [Float], _ b: [Float]) -> Float {
        let areaA = (a[2] - a[0]) * (a[3] - a[1]), areaB = (b[2] - b[0]) * (b[3] - b[1])
        let w = max(min(a[2], b[2]) - max(a[0], b[0]), 0), h = max(min(a[3], b[3]) - max(a[1], b[1]), 0)
        let overlap = w * h
        return overlap / max(areaA + areaB - overlap, 1e-6)
    }

    /// Each row as percentages of its sum (mmdet's plot), nil for a row with no entries (its NaN).
    public var percent: [[Double?]] {
        counts.map { row in
            let sum = Double(Float(row.reduce(0, +)))
            return row.map { sum == 0 ? nil : Double(Float($0)) / sum * 100 }
        }
    }

    /// The matrix as an image: mmdet's plot (row-normalised percentages in cells, truncated to integers as
    /// mmdet prints them, "-1%" for an empty row; the plasma colour map; ground truth down, predictions across).
    public func render(title: String = "Normalized Confusion Matrix") -> Image {
        HeatmapPlot(title: title, rowTitle: "Ground Truth Label", columnTitle: "Prediction Label",
                    labels: classes + ["background"]).render(percent.map { $0.map { $0 ?? .nan } }, range: 0...100) {
            Self.cellText($0.isNaN ? nil : $0)
        }
    }

    /// A cell's caption as mmdet writes it: the percentage truncated to an integer, "-1%" for an empty row.
    public static func cellText(_ percent: Double?) -> String { percent.map { "\(Int($0))%" } ?? "-1%" }
}
