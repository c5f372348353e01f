import Data
import Engine
import Evaluation
import Foundation
import Heads
import NN

/// Detections as COCO results: boxes as [x, y, w, h], labels mapped to category ids, and masks (when the detector
/// predicts them) as RLE `segmentation` (mmdet's `results2json`; one record carries both, so the same list scores
/// as bbox and as segm).
public func cocoResults(_ imageIDs: [Int], _ detections: [ImageDetections], categoryIDs: [Int]) -> [COCOResult] {
    var results: [COCOResult] = []
    for (id, d) in zip(imageIDs, detections) {
        for k in 0..<d.count {
            let b = d.boxes[(4 * k)..<(4 * k + 4)].map(Double.init)
            results.append(COCOResult(imageId: id, categoryId: categoryIDs[d.labels[k]], score: Double(d.scores[k]),
                                      bbox: BBox(x: b[0], y: b[1], w: b[2] - b[0], h: b[3] - b[1]),
                                      segmentation: d.masks.map { .rle(RLE(runs: $0[k])) } ?? .none))
        }
    }
    return results
}

extension RLE {
    /// A predicted mask as pycocotools' RLE (the same runs).
    public init(runs m: MaskRuns) { self.init(h: m.height, w: m.width, counts: m.counts) }
}

/// A COCO result's `segmentation` as pycocotools writes an RLE: {"size": [h, w], "counts": compressed string}.
public func segmentationJSON(_ r: RLE) -> JSON {
    .object([("size", .array([.int(r.h), .int(r.w)])), ("counts", .string(r.toString()))])
}

/// A COCO results JSON file: [{"image_id", "bbox": [x, y, w, h], "score", "category_id", "segmentation"}] (the mask
/// when there is one, as a compressed RLE), written atomically.
public func writeCOCOResults(_ results: [COCOResult], to path: String) throws {
    let items: [JSON] = results.map { r in
        var kv: [(String, JSON)] = [("image_id", .int(r.imageId))]
        if let b = r.bbox { kv.append(("bbox", .array([b.x, b.y, b.w, b.h].map { JSON.double($0) }))) }
        kv += [("score", .double(r.score)), ("category_id", .int(r.categoryId))]
        if case .rle(let m) = r.segmentation { kv.append(("segmentation", segmentationJSON(m))) }
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

/// COCOeval of detections against a COCO instances file (read once, on first use), for each IoU type in turn
/// (mmdet's `metric=['bbox', 'segm']`); metric names are mmdet's (`bbox_mAP`, `bbox_mAP_50`, ..., `segm_mAP`, ...).
public final class COCODetectionEvaluator: DetectionEvaluator {
    public let annotations: () throws -> String
    public let categoryIDs: [Int]
    public var iouTypes: [Params.IouType]
    private var groundTruth: COCODataset?

    public init(annotations: @escaping () throws -> String, categoryIDs: [Int], iouTypes: [Params.IouType] = [.bbox]) {
        self.annotations = annotations; self.categoryIDs = categoryIDs; self.iouTypes = iouTypes
    }

    /// The first six COCO stats of each IoU type by mmdet's names (AP, AP50, AP75, APs, APm, APl).
    public var metricNames: [String] { iouTypes.flatMap(Self.metricNames) }

    public static func metricNames(_ type: Params.IouType) -> [String] {
        let t = type.rawValue
        return ["\(t)_mAP", "\(t)_mAP_50", "\(t)_mAP_75", "\(t)_mAP_s", "\(t)_mAP_m", "\(t)_mAP_l"]
    }

    public func loadGroundTruth() throws -> COCODataset {
        if let groundTruth { return groundTruth }
        let gt = try COCODataset.load(try annotations())
        groundTruth = gt
        return gt
    }

    /// One COCOeval per IoU type, evaluated and accumulated, on the results loaded once; empty when there are no
    /// detections at all (pycocotools refuses an empty result list; such an evaluation scores 0 everywhere).
    public func cocoEval(_ imageIDs: [Int], _ detections: [ImageDetections]) throws -> [COCOeval] {
        let gt = try loadGroundTruth()
        let results = cocoResults(imageIDs, detections, categoryIDs: categoryIDs)
        guard !results.isEmpty else { return [] }
        if iouTypes.contains(.segm), detections.contains(where: { $0.count > 0 && $0.masks == nil }) {
            throw KitError.usage("segm evaluation needs masks, and the detector predicts boxes only")
        }
        let dt = try gt.loadRes(results)
        return iouTypes.map { type in
            let e = COCOeval(cocoGt: gt, cocoDt: dt, iouType: type)
            e.evaluate()
            e.accumulate()
            return e
        }
    }

    /// The named stats; with `printSummary`, pycocotools' 12-line summary of each IoU type on stderr.
    public func evaluate(_ imageIDs: [Int], _ detections: [ImageDetections], printSummary: Bool) throws -> [(String, Double)] {
        let evals = try cocoEval(imageIDs, detections)
        guard !evals.isEmpty else { return metricNames.map { ($0, 0) } }
        return evals.flatMap { e -> [(String, Double)] in
            let summary = e.summarize()
            if printSummary { writeStderr("\(e.params.iouType.rawValue):\n" + summary.joined(separator: "\n") + "\n") }
            return Array(zip(Self.metricNames(e.params.iouType), e.stats))
        }
    }
}
