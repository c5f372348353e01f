import Foundation

/// Greedy NMS as mmcv `nms`: boxes visited by descending score (stable for ties), a box is dropped when its IoU
/// with a kept box is > `iouThreshold`. Returns kept indices, highest score first.
public func nms(boxes: [Float], scores: [Float], iouThreshold: Float) -> [Int] {
    let n = scores.count
    precondition(boxes.count == 4 * n, "nms: \(boxes.count / 4) boxes for \(n) scores")
    let order = (0..<n).sorted { scores[$0] > scores[$1] || (scores[$0] == scores[$1] && $0 < $1) }
    var suppressed = [Bool](repeating: false, count: n)
    var keep: [Int] = []
    for (oi, i) in order.enumerated() where !suppressed[i] {
        keep.append(i)
        let x1 = boxes[4 * i], y1 = boxes[4 * i + 1], x2 = boxes[4 * i + 2], y2 = boxes[4 * i + 3]
        let area = (x2 - x1) * (y2 - y1)
        for j in order[(oi + 1)...] where !suppressed[j] {
            let iw = max(min(x2, boxes[4 * j + 2]) - max(x1, boxes[4 * j]), 0)
            let ih = max(min(y2, boxes[4 * j + 3]) - max(y1, boxes[4 * j + 1]), 0)
            let inter = iw * ih
            let areaJ = (boxes[4 * j + 2] - boxes[4 * j]) * (boxes[4 * j + 3] - boxes[4 * j + 1])
            if inter / (area + areaJ - inter) > iouThreshold { suppressed[j] = true }
        }
    }
    return keep
}

/// mmcv `batched_nms`, class-wise: each class's boxes are shifted by label · (max coordinate + 1) so boxes of
/// different classes never overlap (the IoUs, rounding included, are mmcv's). As no box can suppress one of another
/// class, NMS runs per class (mmcv's path above 10000 boxes; the same result below it, in a fraction of the pairs: an
/// RCNN head with score_thr 0 has 1000 × 80 candidates); the kept boxes are ordered by score, ties by index, as one
/// NMS over all would give them. Returns kept indices, highest score first.
public func batchedNMS(boxes: [Float], scores: [Float], labels: [Int], iouThreshold: Float) -> [Int] {
    guard !scores.isEmpty else { return [] }
    let maxCoordinate = boxes.max() ?? 0
    var groups: [Int: [Int]] = [:]
    for i in scores.indices { groups[labels[i], default: []].append(i) }
    var keep: [Int] = []
    for (label, members) in groups {
        let offset = Float(label) * (maxCoordinate + 1)
        let shifted = members.flatMap { i in (0..<4).map { boxes[4 * i + $0] + offset } }
        keep += nms(boxes: shifted, scores: members.map { scores[$0] }, iouThreshold: iouThreshold).map { members[$0] }
    }
    return keep.sorted { scores[$0] > scores[$1] || (scores[$0] == scores[$1] && $0 < $1) }
}

/// The tail of mmdet's `_bbox_post_process`: boxes with a side ≤ `minBBoxSize` dropped (when it is ≥ 0; mmdet's
/// −1 keeps all), NMS per label at `iouThreshold`, the best `maxPerImage`. Returns kept indices, best first.
public func postProcess(boxes: [Float], scores: [Float], labels: [Int], minBBoxSize: Float = -1, iouThreshold: Float,
                        maxPerImage: Int) -> [Int] {
    var candidates = Array(scores.indices)
    if minBBoxSize >= 0 {
        candidates = candidates.filter { (i: Int) -> Bool in
            let w: Float = boxes[4 * i + 2] - boxes[4 * i], h: Float = boxes[4 * i + 3] - boxes[4 * i + 1]
            return w > minBBoxSize && h > minBBoxSize
        }
    }
    var keep = batchedNMS(boxes: candidates.flatMap { boxes[(4 * $0)..<(4 * $0 + 4)] }, scores: candidates.map { scores[$0] },
                          labels: candidates.map { labels[$0] }, iouThreshold: iouThreshold).map { candidates[$0] }
    if keep.count > maxPerImage { keep.removeLast(keep.count - maxPerImage) }
    return keep
}
