import Data
import Dispatch
import Foundation

/// pycocotools' `COCOeval` for bbox and segm: `evaluate()` → `accumulate()` → `summarize()`, with the
/// same names, orderings and double arithmetic, so every number matches pycocotools. Images (evaluate)
/// and categories (accumulate) run in parallel; each writes only its own slots.
public final class COCOeval {
    public let cocoGt: COCODataset
    public let cocoDt: COCODataset
    public var params: Params
    /// evaluateImg results per category and image (`k * I + i`), all area ranges in one object; nil
    /// where the image has neither gt nor dt of the category.
    var pairs: [PairEval?] = []

    /// pycocotools' `evalImgs` list, per category, area range and image (`k * A * I + a * I + i`);
    /// built on access (a val2017 run holds ~10^6 of them).
    public var evalImgs: [EvalImg?] {
        guard let p = paramsEval else { return [] }
        let I = p.imgIds.count, A = p.areaRng.count, K = p.useCats ? p.catIds.count : 1
        var out = [EvalImg?](repeating: nil, count: K * A * I)
        for k in 0..<K { for i in 0..<I { if let e = pairs[k * I + i] {
            for a in 0..<A { out[k * A * I + a * I + i] = e.evalImg(areaIndex: a, aRng: p.areaRng[a]) }
        } } }
        return out
    }

    /// One entry of `evalImgs` without building the others.
    public func evalImg(categoryIndex k: Int, areaIndex a: Int, imageIndex i: Int) -> EvalImg? {
        guard let p = paramsEval else { return nil }
        return pairs[k * p.imgIds.count + i]?.evalImg(areaIndex: a, aRng: p.areaRng[a])
    }

    /// The accumulated `eval` dict.
    public private(set) var eval: Accumulation?
    /// The 12 summary numbers of `summarize()`.
    public private(set) var stats: [Double] = []
    /// The parameters `evaluate()` ran with (pycocotools' `_paramsEval`).
    public private(set) var paramsEval: Params?

    public struct Accumulation: Sendable {
        /// [T, R, K, A, M]
        public var counts: [Int]
        /// T x R x K x A x M, row-major; -1 where the setting has no non-ignored gt.
        public var precision: [Double]
        /// T x K x A x M
        public var recall: [Double]
        /// T x R x K x A x M: the score at which each precision point is reached.
        public var scores: [Double]

        public func precision(_ t: Int, _ r: Int, _ k: Int, _ a: Int, _ m: Int) -> Double {
            precision[(((t * counts[1] + r) * counts[2] + k) * counts[3] + a) * counts[4] + m]
        }

        public func recall(_ t: Int, _ k: Int, _ a: Int, _ m: Int) -> Double {
            recall[((t * counts[2] + k) * counts[3] + a) * counts[4] + m]
        }
    }

    public init(cocoGt: COCODataset, cocoDt: COCODataset, iouType: Params.IouType = .segm) {
        self.cocoGt = cocoGt
        self.cocoDt = cocoDt
        params = Params(iouType: iouType)
        params.imgIds = cocoGt.images.map(\.id).sorted()
        params.catIds = cocoGt.categories.map(\.id).sorted()
    }

    // MARK: evaluate

    /// Runs computeIoU and evaluateImg for every image and category (pycocotools' `evaluate`).
    public func evaluate() {
        var p = params
        p.imgIds = Array(Set(p.imgIds)).sorted()
        if p.useCats { p.catIds = Array(Set(p.catIds)).sorted() }
        p.maxDets.sort()
        params = p
        let catIds = p.useCats ? p.catIds : [-1]
        let I = p.imgIds.count, K = catIds.count
        let gts = Self.prepare(cocoGt, p), dts = Self.prepare(cocoDt, p)
        let kinds = p.useCats ? p.catIds.count : 1
        var pairs = [PairEval?](repeating: nil, count: K * I)
        let maxDet = p.maxDets.last ?? 0
        pairs.withUnsafeMutableBufferPointer { out in
            let chunks = Swift.min(I, 64)
            DispatchQueue.concurrentPerform(iterations: chunks) { c in
                for i in stride(from: c, to: I, by: chunks) {
                    for k in 0..<kinds {
                        let g = p.useCats ? gts.list(i, k) : gts.all(i)
                        let d = p.useCats ? dts.list(i, k) : dts.all(i)
                        if g.isEmpty && d.isEmpty { continue }
                        out[k * I + i] = evaluatePair(imgId: p.imgIds[i], catId: catIds[k], gt: g, dt: d, maxDet: maxDet, params: p)
                        if !p.useCats { break }
                    }
                }
            }
        }
        self.pairs = pairs
        paramsEval = p
    }

    /// Annotation positions of the evaluated images and categories, bucketed by (image, category)
    /// in file order — the order of pycocotools' `_gts` / `_dts` lists.
    struct Buckets {
        var start: [Int32]
        var items: [Int32]
        var K: Int

        func list(_ i: Int, _ k: Int) -> [Int32] {
            Array(items[Int(start[i * K + k])..<Int(start[i * K + k + 1])])
        }

        /// useCats = 0: the image's lists concatenated in category order.
        func all(_ i: Int) -> [Int32] {
            Array(items[Int(start[i * K])..<Int(start[i * K + K])])
        }
    }

    static func prepare(_ coco: COCODataset, _ p: Params) -> Buckets {
        var imgPos = [Int: Int](minimumCapacity: p.imgIds.count)
        for (i, id) in p.imgIds.enumerated() { imgPos[id] = i }
        var catPos = [Int: Int](minimumCapacity: p.catIds.count)
        for (k, id) in p.catIds.enumerated() { catPos[id] = k }
        let K = p.catIds.count
        let anns = coco.annotations
        var key = [Int32](repeating: -1, count: anns.count)
        var start = [Int32](repeating: 0, count: p.imgIds.count * K + 1)
        for (j, a) in anns.enumerated() {
            guard let i = imgPos[a.imageId], let k = catPos[a.categoryId] else { continue }
            key[j] = Int32(i * K + k)
            start[i * K + k + 1] += 1
        }
        for b in 0..<(p.imgIds.count * K) { start[b + 1] += start[b] }
        var fill = start
        var items = [Int32](repeating: 0, count: Int(start[p.imgIds.count * K]))
        for j in 0..<anns.count where key[j] >= 0 {
            items[Int(fill[Int(key[j])])] = Int32(j)
            fill[Int(key[j])] += 1
        }
        return Buckets(start: start, items: items, K: K)
    }

    /// computeIoU plus evaluateImg for every area range of one image/category pair.
    func evaluatePair(imgId: Int, catId: Int, gt gtAll: [Int32], dt dtAll: [Int32], maxDet: Int,
                      params p: Params) -> PairEval {
        let gtAnns = cocoGt.annotations, dtAnns = cocoDt.annotations
        // Detections by descending score, ties in list order (np.argsort(-scores, kind='mergesort')); the
        // list is category-major when useCats = 0, so ties go by list position, not file position.
        let scores = dtAll.map { dtAnns[Int($0)].score }
        var dt = (0..<dtAll.count).sorted { a, b in
            scores[a] > scores[b] || (scores[a] == scores[b] && a < b)
        }.map { dtAll[$0] }
        if dt.count > maxDet { dt.removeSubrange(maxDet...) }
        let ious = computeIoU(gt: gtAll, dt: dt, iouType: p.iouType)
        let G = gtAll.count, D = dt.count, T = p.iouThrs.count
        let dtIds = dt.map { dtAnns[Int($0)].id }
        let dtScores = dt.map { dtAnns[Int($0)].score }
        let iscrowdAll = gtAll.map { gtAnns[Int($0)].iscrowd }
        let A = p.areaRng.count
        var allGtIds: [Int] = [], allGtIg: [Bool] = []
        allGtIds.reserveCapacity(A * G); allGtIg.reserveCapacity(A * G)
        var gtm = [Int](repeating: 0, count: A * T * G)
        var dtm = [Int](repeating: 0, count: A * T * D)
        var dtIg = [Bool](repeating: false, count: A * T * D)
        for (ai, aRng) in p.areaRng.enumerated() {
            let gOff = ai * T * G, dOff = ai * T * D
            let lo = aRng[0], hi = aRng[1]
            let ignoreAll = gtAll.map { j -> Bool in
                let g = gtAnns[Int(j)]
                return g.iscrowd || g.area < lo || g.area > hi
            }
            // gt with _ignore last, stable.
            var gtind: [Int] = []
            gtind.reserveCapacity(G)
            for g in 0..<G where !ignoreAll[g] { gtind.append(g) }
            for g in 0..<G where ignoreAll[g] { gtind.append(g) }
            let gtIds = gtind.map { gtAnns[Int(gtAll[$0])].id }
            let gtIg = gtind.map { ignoreAll[$0] }
            let iscrowd = gtind.map { iscrowdAll[$0] }
            if !ious.isEmpty {
                for (tind, t) in p.iouThrs.enumerated() {
                    for dind in 0..<D {
                        // Best match so far (m = -1: unmatched).
                        var iou = Swift.min(t, 1 - 1e-10)
                        var m = -1
                        for gind in 0..<G {
                            // Already matched, and not a crowd: taken.
                            if gtm[gOff + tind * G + gind] > 0 && !iscrowd[gind] { continue }
                            // Matched a regular gt and reached the ignored ones: stop.
                            if m > -1 && !gtIg[m] && gtIg[gind] { break }
                            let v = ious[dind * G + gtind[gind]]
                            if v < iou { continue }
                            iou = v
                            m = gind
                        }
                        if m == -1 { continue }
                        dtIg[dOff + tind * D + dind] = gtIg[m]
                        dtm[dOff + tind * D + dind] = gtIds[m]
                        gtm[gOff + tind * G + m] = dtIds[dind]
                    }
                }
            }
            // Unmatched detections outside the area range are ignored.
            for dind in 0..<D {
                let area = dtAnns[Int(dt[dind])].area
                if area < lo || area > hi {
                    for tind in 0..<T where dtm[dOff + tind * D + dind] == 0 { dtIg[dOff + tind * D + dind] = true }
                }
            }
            allGtIds += gtIds
            allGtIg += gtIg
        }
        return PairEval(imageId: imgId, categoryId: catId, maxDet: maxDet, A: A, T: T, G: G, dtIds: dtIds,
                        dtScores: dtScores, gtIds: allGtIds, gtIgnore: allGtIg, gtMatches: gtm, dtMatches: dtm,
                        dtIgnore: dtIg)
    }

    /// computeIoU: D x G row-major (`ious[d * G + g]`), dt in the given (score-sorted) order, gt in list
    /// order; empty when either side is empty, as `maskUtils.iou` returns `[]`.
    func computeIoU(gt: [Int32], dt: [Int32], iouType: Params.IouType) -> [Double] {
        if gt.isEmpty || dt.isEmpty { return [] }
        let gtAnns = cocoGt.annotations, dtAnns = cocoDt.annotations
        let iscrowd = gt.map { gtAnns[Int($0)].iscrowd }
        switch iouType {
        case .bbox:
            return MaskAPI.bbIou(dt.map { dtAnns[Int($0)].bbox }, gt.map { gtAnns[Int($0)].bbox }, iscrowd: iscrowd)
        case .segm:
            let g = gt.map { cocoGt.annToRLE(gtAnns[Int($0)]) }
            let d = dt.map { cocoDt.annToRLE(dtAnns[Int($0)]) }
            return MaskAPI.rleIou(d, g, iscrowd: iscrowd)
        }
    }

    // MARK: accumulate

    /// Precision/recall per IoU threshold, recall threshold, category, area range and maxDets
    /// (pycocotools' `accumulate`), from the evaluateImg results.
    public func accumulate() {
        guard let pe = paramsEval else { return }
        let p = params
        let T = p.iouThrs.count, R = p.recThrs.count, A = p.areaRng.count, M = p.maxDets.count
        let K = p.useCats ? p.catIds.count : 1
        let I = pe.imgIds.count
        var precision = [Double](repeating: -1, count: T * R * K * A * M)
        var recall = [Double](repeating: -1, count: T * K * A * M)
        var scores = [Double](repeating: -1, count: T * R * K * A * M)
        let pairs = self.pairs
        let recThrs = p.recThrs
        let maxDets = p.maxDets
        precision.withUnsafeMutableBufferPointer { prec in
            recall.withUnsafeMutableBufferPointer { rec in
                scores.withUnsafeMutableBufferPointer { sco in
                    let prec = prec, rec = rec, sco = sco
                    DispatchQueue.concurrentPerform(iterations: K) { k in
                        // The images with an evaluation for this category (the same for every area range).
                        var imgs: [Int] = []
                        for i in 0..<I where pairs[k * I + i] != nil { imgs.append(i) }
                        if imgs.isEmpty { return }
                        // All kept detections of the category, concatenated in image order, then stably
                        // sorted by descending score. The lists for smaller maxDets are subsequences of it.
                        var entDet: [Int32] = [], entScore: [Double] = []
                        for i in imgs {
                            let e = pairs[k * I + i]!
                            for (j, s) in e.dtScores.enumerated() {
                                entDet.append(Int32(j)); entScore.append(s)
                            }
                        }
                        let order = (0..<entScore.count).sorted { a, b in
                            entScore[a] > entScore[b] || (entScore[a] == entScore[b] && a < b)
                        }
                        let n = order.count
                        // rank[s]: the detection's position in its image's list, for the maxDets cuts.
                        var inv = [Int32](repeating: 0, count: n)
                        for (s, o) in order.enumerated() { inv[o] = Int32(s) }
                        let sel: [[Int32]] = maxDets.map { maxDet in
                            var v: [Int32] = []
                            v.reserveCapacity(n)
                            for (s, o) in order.enumerated() where Int(entDet[o]) < maxDet { v.append(Int32(s)) }
                            return v
                        }
                        let sortedScores = order.map { entScore[$0] }
                        // Per threshold (t-major) and sorted detection: 1 = true positive, 2 = false
                        // positive, 0 = ignored.
                        var kind = [UInt8](repeating: 0, count: T * n)
                        var rc = [Double](repeating: 0, count: n), pr = [Double](repeating: 0, count: n)
                        for a in 0..<A {
                            var npig = 0
                            var base = 0
                            for i in imgs {
                                let e = pairs[k * I + i]!
                                let D = e.D, G = e.G
                                for g in 0..<G where !e.gtIgnore[a * G + g] { npig += 1 }
                                e.dtMatches.withUnsafeBufferPointer { dtm in
                                    e.dtIgnore.withUnsafeBufferPointer { dtIg in
                                        let off = a * T * D
                                        for j in 0..<D {
                                            let s = Int(inv[base + j])
                                            for t in 0..<T {
                                                kind[t * n + s] = dtIg[off + t * D + j] ? 0 : (dtm[off + t * D + j] != 0 ? 1 : 2)
                                            }
                                        }
                                    }
                                }
                                base += D
                            }
                            if npig == 0 { continue }
                            // tp / npig for every tp count; tp exceeds npig only when a detection id is 0
                            // (pycocotools then lets a gt match twice), which the loop handles apart.
                            let rcOf = (0...npig).map { Double($0) / Double(npig) }
                            for (m, list) in sel.enumerated() {
                                for t in 0..<T {
                                    var tp = 0.0, fp = 0.0
                                    let nd = list.count
                                    var ntp = 0
                                    for (q, s32) in list.enumerated() {
                                        let kd = kind[t * n + Int(s32)]
                                        if kd == 1 { tp += 1; ntp += 1 } else if kd == 2 { fp += 1 }
                                        rc[q] = ntp <= npig ? rcOf[ntp] : tp / Double(npig)
                                        pr[q] = tp / (fp + tp + 2.220446049250313e-16)
                                    }
                                    rec[((t * K + k) * A + a) * M + m] = nd > 0 ? rc[nd - 1] : 0
                                    if nd > 1 {
                                        for i in stride(from: nd - 1, to: 0, by: -1) where pr[i] > pr[i - 1] {
                                            pr[i - 1] = pr[i]
                                        }
                                    }
                                    // np.searchsorted(rc, recThrs, side='left'); thresholds past the last
                                    // recall keep precision 0.
                                    var pi = 0
                                    for (ri, r) in recThrs.enumerated() {
                                        while pi < nd && rc[pi] < r { pi += 1 }
                                        let idx = (((t * R + ri) * K + k) * A + a) * M + m
                                        if pi < nd {
                                            prec[idx] = pr[pi]
                                            sco[idx] = sortedScores[Int(list[pi])]
                                        } else {
                                            for rj in ri..<R {
                                                let jdx = (((t * R + rj) * K + k) * A + a) * M + m
                                                prec[jdx] = 0
                                                sco[jdx] = 0
                                            }
                                            break
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        eval = Accumulation(counts: [T, R, K, A, M], precision: precision, recall: recall, scores: scores)
    }

    // MARK: summarize

    /// The 12 COCO numbers (AP, AP50, AP75, APs/m/l, AR1/10/100, ARs/m/l) and pycocotools' printed lines.
    @discardableResult
    public func summarize() -> [String] {
        guard eval != nil else { return [] }
        // As pycocotools: the first stat uses maxDets=100 literally, the others maxDets[0], [1], [2].
        let m = params.maxDets
        let m0 = m[0], m1 = m[Swift.min(1, m.count - 1)], m2 = m[Swift.min(2, m.count - 1)]
        let specs: [(ap: Bool, iouThr: Double?, area: String, maxDets: Int)] = [
            (true, nil, "all", 100), (true, 0.5, "all", m2), (true, 0.75, "all", m2),
            (true, nil, "small", m2), (true, nil, "medium", m2), (true, nil, "large", m2),
            (false, nil, "all", m0), (false, nil, "all", m1), (false, nil, "all", m2),
            (false, nil, "small", m2), (false, nil, "medium", m2), (false, nil, "large", m2),
        ]
        var lines: [String] = []
        stats = specs.map { s in
            let (v, line) = summarizeOne(ap: s.ap, iouThr: s.iouThr, areaRng: s.area, maxDets: s.maxDets)
            lines.append(line)
            return v
        }
        return lines
    }

    /// pycocotools' `_summarize`: mean over the selected entries > -1 (numpy's mean), -1 when none.
    func summarizeOne(ap: Bool, iouThr: Double?, areaRng: String, maxDets: Int) -> (Double, String) {
        let p = params, e = eval!
        let T = e.counts[0], R = e.counts[1], K = e.counts[2]
        let aind = p.areaRngLbl.indices.filter { p.areaRngLbl[$0] == areaRng }
        let mind = p.maxDets.indices.filter { p.maxDets[$0] == maxDets }
        let tind = iouThr.map { thr in p.iouThrs.indices.filter { p.iouThrs[$0] == thr } } ?? Array(0..<T)
        var s: [Double] = []
        if ap {
            for t in tind { for r in 0..<R { for k in 0..<K { for a in aind { for m in mind {
                let v = e.precision(t, r, k, a, m)
                if v > -1 { s.append(v) }
            } } } } }
        } else {
            for t in tind { for k in 0..<K { for a in aind { for m in mind {
                let v = e.recall(t, k, a, m)
                if v > -1 { s.append(v) }
            } } } }
        }
        let mean = s.isEmpty ? -1 : numpyMean(s)
        let title = ap ? "Average Precision" : "Average Recall"
        let type = ap ? "(AP)" : "(AR)"
        let iouStr = iouThr.map { fmt2($0) } ?? "\(fmt2(p.iouThrs[0])):\(fmt2(p.iouThrs[p.iouThrs.count - 1]))"
        let line = " \(pad(title, 18)) \(type) @[ IoU=\(pad(iouStr, 9)) | area=\(lpad(areaRng, 6)) | maxDets=\(lpad(String(maxDets), 3)) ] = \(fmt3(mean))"
        return (mean, line)
    }

    /// Per-category AP as detectron2/mmdet take it from `precision[:, :, k, 0, -1]` (IoU .50:.95, area
    /// all, the largest maxDets): mean of the entries > -1, NaN when the category has no non-ignored gt.
    public func perCategoryAP() -> [Int: Double] {
        guard let e = eval else { return [:] }
        let T = e.counts[0], R = e.counts[1], K = e.counts[2], M = e.counts[4]
        let catIds = params.useCats ? params.catIds : [-1]
        var out: [Int: Double] = [:]
        for k in 0..<K {
            var s: [Double] = []
            for t in 0..<T { for r in 0..<R {
                let v = e.precision(t, r, k, 0, M - 1)
                if v > -1 { s.append(v) }
            } }
            out[catIds[k]] = s.isEmpty ? .nan : numpyMean(s)
        }
        return out
    }
}

private func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s : s + String(repeating: " ", count: n - s.count) }
private func lpad(_ s: String, _ n: Int) -> String { s.count >= n ? s : String(repeating: " ", count: n - s.count) + s }
private func fmt2(_ v: Double) -> String { String(format: "%.2f", v) }
private func fmt3(_ v: Double) -> String { String(format: "%.3f", v) }
