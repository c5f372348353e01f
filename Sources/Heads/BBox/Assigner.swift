import Config
import Engine
import Foundation

/// mmdet `bbox_overlaps` (v2: no +1, eps 1e-6): IoU, or IoF (intersection over the area of `a`'s box), as a
/// row-major [a.count/4, b.count/4] matrix.
public func bboxOverlaps(_ a: [Float], _ b: [Float], iof: Bool = false) -> [Float] {
    let n = a.count / 4, m = b.count / 4
    var out = [Float](repeating: 0, count: n * m)
    guard n > 0 && m > 0 else { return out }
    a.withUnsafeBufferPointer { pa in
        b.withUnsafeBufferPointer { pb in
            out.withUnsafeMutableBufferPointer { po in
                let (pa, pb, po) = (pa.baseAddress!, pb.baseAddress!, po.baseAddress!)
                parallelFor(n, cost: m * 8) { i in
                    let ax1 = pa[4 * i], ay1 = pa[4 * i + 1], ax2 = pa[4 * i + 2], ay2 = pa[4 * i + 3]
                    let areaA = (ax2 - ax1) * (ay2 - ay1)
                    for j in 0..<m {
                        let bx1 = pb[4 * j], by1 = pb[4 * j + 1], bx2 = pb[4 * j + 2], by2 = pb[4 * j + 3]
                        let iw = max(min(ax2, bx2) - max(ax1, bx1), 0), ih = max(min(ay2, by2) - max(ay1, by1), 0)
                        let inter = iw * ih
                        let denom = iof ? areaA : areaA + (bx2 - bx1) * (by2 - by1) - inter
                        po[i * m + j] = inter / max(denom, 1e-6)
                    }
                }
            }
        }
    }
    return out
}

/// mmdet `MaxIoUAssigner` (RetinaNet: pos_iou_thr 0.5, neg_iou_thr 0.4, min_pos_iou 0, gt_max_assign_all,
/// match_low_quality, ignore_iof_thr 0.5 when ignore boxes are given).
///
/// Result per anchor: −1 ignored, 0 negative (background), k + 1 positive for gt k.
public struct MaxIoUAssigner: Equatable {
    public var posIoUThr: Float = 0.5
    public var negIoUThr: Float = 0.4
    public var minPosIoU: Float = 0
    public var gtMaxAssignAll = true
    public var matchLowQuality = true
    /// Anchors whose IoF with any ignore (crowd) box exceeds this are ignored; ≤ 0 disables.
    public var ignoreIoFThr: Float = 0.5

    public init(posIoUThr: Float = 0.5, negIoUThr: Float = 0.4, minPosIoU: Float = 0, gtMaxAssignAll: Bool = true,
                matchLowQuality: Bool = true, ignoreIoFThr: Float = 0.5) {
        self.posIoUThr = posIoUThr; self.negIoUThr = negIoUThr; self.minPosIoU = minPosIoU
        self.gtMaxAssignAll = gtMaxAssignAll; self.matchLowQuality = matchLowQuality; self.ignoreIoFThr = ignoreIoFThr
    }

    public func assign(anchors: [Float], gts: [Float], ignore: [Float] = []) -> [Int] {
        let na = anchors.count / 4, ng = gts.count / 4
        var assigned = [Int](repeating: -1, count: na)
        if ng == 0 { return [Int](repeating: 0, count: na) }   // every anchor is background
        // overlaps[g][a]
        var ov = bboxOverlaps(gts, anchors)
        if ignoreIoFThr > 0 && !ignore.isEmpty {
            let iof = bboxOverlaps(anchors, ignore, iof: true), ni = ignore.count / 4
            for a in 0..<na {
                var m: Float = -1
                for j in 0..<ni { m = max(m, iof[a * ni + j]) }
                if m > ignoreIoFThr { for g in 0..<ng { ov[g * na + a] = -1 } }
            }
        }
        // Per anchor: best gt (first on ties, as torch.max).
        for a in 0..<na {
            var best: Float = -.infinity, arg = 0
            for g in 0..<ng where ov[g * na + a] > best { best = ov[g * na + a]; arg = g }
            if best >= 0 && best < negIoUThr { assigned[a] = 0 }
            if best >= posIoUThr { assigned[a] = arg + 1 }
        }
        if matchLowQuality {
            for g in 0..<ng {
                var gmax: Float = -.infinity, garg = 0
                for a in 0..<na where ov[g * na + a] > gmax { gmax = ov[g * na + a]; garg = a }
                guard gmax >= minPosIoU else { continue }
                if gtMaxAssignAll {
                    for a in 0..<na where ov[g * na + a] == gmax { assigned[a] = g + 1 }
                } else {
                    assigned[garg] = g + 1
                }
            }
        }
        return assigned
    }
}

/// mmdet `RandomSampler`: at most `num · posFraction` positives drawn at random from the assigned positives, then
/// negatives to fill `num` (no `neg_pos_ub`). Draws come from `rng`, so a seeded run samples the same anchors; when
/// there are no more candidates than wanted, all are kept in index order (no draw).
public struct RandomSampler: Equatable {
    public var num: Int
    public var posFraction: Float
    /// Whether a RoI head adds the ground truth to the proposals before assigning (dense heads never do).
    public var addGTAsProposals: Bool

    public init(num: Int = 256, posFraction: Float = 0.5, addGTAsProposals: Bool = true) {
        self.num = num; self.posFraction = posFraction; self.addGTAsProposals = addGTAsProposals
    }

    /// Indices of the sampled positive and negative entries of `assigned` (−1 ignored, 0 negative, k + 1 positive).
    public func sample(_ assigned: [Int], rng: inout SplitMix64) -> (pos: [Int], neg: [Int]) {
        func choose(_ from: [Int], _ k: Int) -> [Int] {
            guard from.count > k else { return from }
            var pool = from   // partial Fisher–Yates: the first k of a random permutation
            for i in 0..<k { pool.swapAt(i, i + Int(rng.next() % UInt64(pool.count - i))) }
            return Array(pool[..<k])
        }
        let pos = choose(assigned.indices.filter { assigned[$0] > 0 }, Int(Float(num) * posFraction))
        let neg = choose(assigned.indices.filter { assigned[$0] == 0 }, num - pos.count)
        return (pos, neg)
    }
}

extension MaxIoUAssigner {
    /// mmdet's MaxIoUAssigner keys; `pos`, `neg`, `minPos`, `lowQuality` and `ignoreIoF` are the defaults of the
    /// context that holds one (a parent's `train_cfg` schema), `nil` where mmdet requires the key.
    static func fields(pos: Double? = nil, neg: Double? = nil, minPos: Double = 0, lowQuality: Bool = true,
                       ignoreIoF: Double = -1, allowIgnore: Bool = true) -> [ConfigSchema.Field] {
        [.init("type", .oneOf(["MaxIoUAssigner"]), default: "MaxIoUAssigner"),
         .init("pos_iou_thr", .fraction, required: pos == nil, default: pos.map { .double($0) }),
         .init("neg_iou_thr", .fraction, required: neg == nil, default: neg.map { .double($0) }),
         .init("min_pos_iou", .fraction, default: .double(minPos)), .init("gt_max_assign_all", .bool, default: true),
         .init("match_low_quality", .bool, default: .bool(lowQuality)),
         .init("ignore_iof_thr", allowIgnore ? .numberRange(-1...1) : .exactly(-1), default: .double(ignoreIoF))]
    }

    static func register(in r: Registry<MaxIoUAssigner, Void>) {
        r.register("MaxIoUAssigner", fields: Array(fields().dropFirst())) { c, _ in
            MaxIoUAssigner(posIoUThr: Float(try c.double("pos_iou_thr")), negIoUThr: Float(try c.double("neg_iou_thr")),
                           minPosIoU: Float(try c.double("min_pos_iou")), gtMaxAssignAll: try c.bool("gt_max_assign_all"),
                           matchLowQuality: try c.bool("match_low_quality"), ignoreIoFThr: Float(try c.double("ignore_iof_thr")))
        }
    }
}

extension RandomSampler {
    /// mmdet's RandomSampler keys with a context's defaults; `neg_pos_ub` is accepted at the one value implemented.
    /// `addGT` nil: either value (a RoI head honours it); else the one value the context implements.
    static func fields(num: Int? = nil, fraction: Double? = nil, addGT: Bool? = nil) -> [ConfigSchema.Field] {
        [.init("type", .oneOf(["RandomSampler"]), default: "RandomSampler"),
         .init("num", .positiveInt, required: num == nil, default: num.map { .int($0) }),
         .init("pos_fraction", .fraction, required: fraction == nil, default: fraction.map { .double($0) }),
         .init("neg_pos_ub", .exactly(-1), default: -1), .init("add_gt_as_proposals", addGT.map { .exactly(.bool($0)) } ?? .bool, default: .bool(addGT ?? true))]
    }

    static func register(in r: Registry<RandomSampler, Void>) {
        r.register("RandomSampler", fields: Array(fields().dropFirst())) { c, _ in
            RandomSampler(num: try c.int("num"), posFraction: Float(try c.double("pos_fraction")),
                          addGTAsProposals: try c.bool("add_gt_as_proposals"))
        }
    }
}
