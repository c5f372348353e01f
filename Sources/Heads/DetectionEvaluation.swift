import Data
import Evaluation
import Foundation

/// Detections as COCO results with the ground truth's category ids (labels are contiguous, in category-id order).
public func cocoResults(_ imageIDs: [Int], _ detections: [ImageDetections], groundTruth gt: COCODataset) -> [COCOResult] {
    var results: [COCOResult] = []
    for (id, d) in zip(imageIDs, detections) {
        for k in 0..<d.count {
            let b = d.boxes[(4 * k)..<(4 * k + 4)].map(Double.init)
            results.append(COCOResult(imageId: id, categoryId: gt.categoryId(forLabel: d.labels[k]), score: Double(d.scores[k]),
                                      bbox: BBox(x: b[0], y: b[1], w: b[2] - b[0], h: b[3] - b[1])))
        }
    }
    return results
}

/// COCOeval (bbox) of the detections, evaluated and accumulated; nil when there are no detections at all
/// (pycocotools refuses an empty result list; such an evaluation scores 0 everywhere).
public func cocoBboxEval(_ imageIDs: [Int], _ detections: [ImageDetections], groundTruth gt: COCODataset) throws -> COCOeval? {
    let results = cocoResults(imageIDs, detections, groundTruth: gt)
    guard !results.isEmpty else { return nil }
    let e = COCOeval(cocoGt: gt, cocoDt: try gt.loadRes(results), iouType: .bbox)
    e.evaluate()
    e.accumulate()
    return e
}

/// The training-time evaluator: COCOeval (bbox) against the validation instances file (read once, on first use),
/// printing pycocotools' 12-line summary on stderr.
public func cocoBboxEvaluator(annotations path: String) -> DetectionEvaluator {
    var groundTruth: COCODataset?
    return { imageIDs, detections in
        let gt = try groundTruth ?? COCODataset.load(path)
        groundTruth = gt
        guard let e = try cocoBboxEval(imageIDs, detections, groundTruth: gt) else { return [Double](repeating: 0, count: 12) }
        FileHandle.standardError.write(Data((e.summarize().joined(separator: "\n") + "\n").utf8))
        return e.stats
    }
}
