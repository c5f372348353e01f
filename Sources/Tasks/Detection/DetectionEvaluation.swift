import Data
import Engine
import Evaluation
import Foundation
import Heads
import NN

/// Detections as COCO results: boxes as [x, y, w, h], labels mapped to category ids (mmdet's `results2json`).
public func cocoResults(_ imageIDs: [Int], _ detections: [ImageDetections], categoryIDs: [Int]) -> [COCOResult] {
    var results: [COCOResult] = []
    for (id, d) in zip(imageIDs, detections) {
        for k in 0..<d.count {
            let b = d.boxes[(4 * k)..<(4 * k + 4)].map(Double.init)
            results.append(COCOResult(imageId: id, categoryId: categoryIDs[d.labels[k]], score: Double(d.scores[k]),
                                      bbox: BBox(x: b[0], y: b[1], w: b[2] - b[0], h: b[3] - b[1])))
        }
    }
    return results
}

/// A COCO results JSON file: [{"image_id", "bbox": [x, y, w, h], "score", "category_id"}], written atomically.
public func writeCOCOResults(_ results: [COCOResult], to path: String) throws {
    let items: [JSON] = results.map { r in
        var kv: [(String, JSON)] = [("image_id", .int(r.imageId))]
        if let b = r.bbox { kv.append(("bbox", .array([b.x, b.y, b.w, b.h].map { JSON.double($0) }))) }
        kv += [("score", .double(r.score)), ("category_id", .int(r.categoryId))]
        return .object(kv)
    }
    try writeAtomically(JSON.array(items).serialized(), to: path)
}

/// Scores a whole validation split's detections: what `DetectionTask.evaluate` reports, by metric name.
public protocol DetectionEvaluator: AnyObject {
    /// The names `evaluate` returns, in order.
    var metricNames: [String] { get }
    /// `imageIDs[i]`'s detections are `detections[i]` (boxes in original-image pixels, contiguous labels).
    func evaluate(_ imageIDs: [Int], _ detections: [ImageDetections], printSummary: Bool) throws -> [(String, Double)]
}

/// COCOeval of detections against a COCO instances file (read once, on first use), by IoU type; metric names are
/// mmdet's (`bbox_mAP`, `bbox_mAP_50`, ...).
public final class COCODetectionEvaluator: DetectionEvaluator {
    public let annotations: () throws -> String
    public let categoryIDs: [Int]
    public let iouType: Params.IouType
    private var groundTruth: COCODataset?

    public init(annotations: @escaping () throws -> String, categoryIDs: [Int], iouType: Params.IouType = .bbox) {
        self.annotations = annotations; self.categoryIDs = categoryIDs; self.iouType = iouType
    }

    /// The first six COCO stats by mmdet's names (AP, AP50, AP75, APs, APm, APl).
    public var metricNames: [String] {
        let t = iouType.rawValue
        return ["\(t)_mAP", "\(t)_mAP_50", "\(t)_mAP_75", "\(t)_mAP_s", "\(t)_mAP_m", "\(t)_mAP_l"]
    }

    public func loadGroundTruth() throws -> COCODataset {
        if let groundTruth { return groundTruth }
        let gt = try COCODataset.load(try annotations())
        groundTruth = gt
        return gt
    }

    /// COCOeval, evaluated and accumulated; nil when there are no detections at all (pycocotools refuses an empty
    /// result list; such an evaluation scores 0 everywhere).
    public func cocoEval(_ imageIDs: [Int], _ detections: [ImageDetections]) throws -> COCOeval? {
        let gt = try loadGroundTruth()
        let results = cocoResults(imageIDs, detections, categoryIDs: categoryIDs)
        guard !results.isEmpty else { return nil }
        let e = COCOeval(cocoGt: gt, cocoDt: try gt.loadRes(results), iouType: iouType)
        e.evaluate()
        e.accumulate()
        return e
    }

    /// The named stats; with `printSummary`, pycocotools' 12-line summary on stderr.
    public func evaluate(_ imageIDs: [Int], _ detections: [ImageDetections], printSummary: Bool) throws -> [(String, Double)] {
        guard let e = try cocoEval(imageIDs, detections) else { return metricNames.map { ($0, 0) } }
        let summary = e.summarize()
        if printSummary { writeStderr((summary.joined(separator: "\n") + "\n")) }
        return Array(zip(metricNames, e.stats))
    }
}
