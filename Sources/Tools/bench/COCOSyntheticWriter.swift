import Foundation

/// Writes benchmark inputs of the same shape as gen_coco_eval.py's bench-load / bench-eval workloads
/// (same counts, field layout and number formats; its own random stream), for machines without the
/// reference generator's Python packages.
enum COCOSyntheticWriter {
    static let categories: [(Int, String, String)] = [
        (1, "person", "person"), (2, "bicycle", "vehicle"), (3, "car", "vehicle"), (4, "motorcycle", "vehicle"),
        (5, "airplane", "vehicle"), (6, "bus", "vehicle"), (7, "train", "vehicle"), (8, "truck", "vehicle"),
        (9, "boat", "vehicle"), (10, "traffic light", "outdoor"), (11, "fire hydrant", "outdoor"),
        (13, "stop sign", "outdoor"), (14, "parking meter", "outdoor"), (15, "bench", "outdoor"), (16, "bird", "animal"),
        (17, "cat", "animal"), (18, "dog", "animal"), (19, "horse", "animal"), (20, "sheep", "animal"),
        (21, "cow", "animal"), (22, "elephant", "animal"), (23, "bear", "animal"), (24, "zebra", "animal"),
        (25, "giraffe", "animal"), (27, "backpack", "accessory"), (28, "umbrella", "accessory"),
        (31, "handbag", "accessory"), (32, "tie", "accessory"), (33, "suitcase", "accessory"), (34, "frisbee", "sports"),
        (35, "skis", "sports"), (36, "snowboard", "sports"), (37, "sports ball", "sports"), (38, "kite", "sports"),
        (39, "baseball bat", "sports"), (40, "baseball glove", "sports"), (41, "skateboard", "sports"),
        (42, "surfboard", "sports"), (43, "tennis racket", "sports"), (44, "bottle", "kitchen"),
        (46, "wine glass", "kitchen"), (47, "cup", "kitchen"), (48, "fork", "kitchen"), (49, "knife", "kitchen"),
        (50, "spoon", "kitchen"), (51, "bowl", "kitchen"), (52, "banana", "food"), (53, "apple", "food"),
        (54, "sandwich", "food"), (55, "orange", "food"), (56, "broccoli", "food"), (57, "carrot", "food"),
        (58, "hot dog", "food"), (59, "pizza", "food"), (60, "donut", "food"), (61, "cake", "food"),
        (62, "chair", "furniture"), (63, "couch", "furniture"), (64, "potted plant", "furniture"),
        (65, "bed", "furniture"), (67, "dining table", "furniture"), (70, "toilet", "furniture"),
        (72, "tv", "electronic"), (73, "laptop", "electronic"), (74, "mouse", "electronic"),
        (75, "remote", "electronic"), (76, "keyboard", "electronic"), (77, "cell phone", "electronic"),
        (78, "microwave", "appliance"), (79, "oven", "appliance"), (80, "toaster", "appliance"),
        (81, "sink", "appliance"), (82, "refrigerator", "appliance"), (84, "book", "indoor"), (85, "clock", "indoor"),
        (86, "vase", "indoor"), (87, "scissors", "indoor"), (88, "teddy bear", "indoor"), (89, "hair drier", "indoor"),
        (90, "toothbrush", "indoor"),
    ]
    static let sizes = [(640, 480), (480, 640), (640, 427), (427, 640), (500, 375), (612, 612), (640, 360), (640, 512)]

    /// train2017-like: compact JSON, star polygons of 4-8 vertices, ~0.9% crowd RLE with counts lists.
    static func trainInstances(path: String, images n: Int, annotations nAnn: Int, seed: UInt64) throws {
        var rng = COCOBenchRNG(seed: seed)
        var ids = Set<Int>()
        while ids.count < n { ids.insert(1 + Int(rng.next() % 599_999)) }
        let imgIds = ids.sorted()
        let sizeIdx = (0..<n).map { _ in Int(rng.next() % UInt64(sizes.count)) }
        let out = try ChunkWriter(path: path)
        out.write(#"{"info":{"description":"synthetic train2017-like instances","version":"1.0","year":2017},"#)
        out.write(#""licenses":[{"url":"http://example.invalid/license","id":1,"name":"synthetic"}],"images":["#)
        for i in 0..<n {
            let (W, H) = sizes[sizeIdx[i]]
            let id = imgIds[i], name = String(format: "%012d", id)
            if i > 0 { out.write(",") }
            out.write(#"{"license":1,"file_name":"\#(name).jpg","coco_url":"http://example.invalid/\#(name).jpg","height":\#(H),"width":\#(W),"date_captured":"2013-11-14 11:18:45","flickr_url":"http://example.invalid/f/\#(name).jpg","id":\#(id)}"#)
        }
        out.write(#"],"annotations":["#)
        let annImg = (0..<nAnn).map { _ in Int(rng.next() % UInt64(n)) }.sorted()
        for j in 0..<nAnn {
            let (W, H) = sizes[sizeIdx[annImg[j]]]
            let bw = rng.uniform(4, Double(W) * 0.6), bh = rng.uniform(4, Double(H) * 0.6)
            let x0 = rng.uniform(0, Double(W) - bw), y0 = rng.uniform(0, Double(H) - bh)
            let cat = categories[Int(rng.next() % UInt64(categories.count))].0
            let crowd = rng.uniform(0, 1) < 0.009
            var seg: String, area: String
            if crowd {
                let runs = (0..<(20 + Int(rng.next() % 100))).map { _ in 1 + Int(rng.next() % 399) }
                seg = #"{"counts":[\#(runs.map(String.init).joined(separator: ","))],"size":[\#(H),\#(W)]}"#
                area = String(stride(from: 1, to: runs.count, by: 2).reduce(0) { $0 + runs[$1] })
            } else {
                let nv = 4 + Int(rng.next() % 5)
                var angles = (0..<nv).map { _ in rng.uniform(0, 2 * .pi) }.sorted()
                let rot = rng.uniform(0, 2 * .pi)
                angles = angles.map { $0 + rot }
                var p: [Double] = []
                for a in angles {
                    let r = rng.uniform(0.55, 1)
                    p.append(x0 + bw / 2 + bw / 2 * r * cos(a))
                    p.append(y0 + bh / 2 + bh / 2 * r * sin(a))
                }
                var s = 0.0
                for v in 0..<nv {
                    let w = (v + 1) % nv
                    s += p[2 * v] * p[2 * w + 1] - p[2 * v + 1] * p[2 * w]
                }
                seg = "[[" + p.map(fixed2).joined(separator: ",") + "]]"
                area = "\(0.5 * abs(s))"
            }
            if j > 0 { out.write(",") }
            out.write(#"{"segmentation":\#(seg),"area":\#(area),"iscrowd":\#(crowd ? 1 : 0),"image_id":\#(imgIds[annImg[j]]),"bbox":[\#(fixed2(x0)),\#(fixed2(y0)),\#(fixed2(bw)),\#(fixed2(bh))],"category_id":\#(cat),"id":\#(j + 1)}"#)
        }
        out.write(#"],"categories":["#)
        out.write(categories.map { #"{"supercategory":"\#($0.2)","id":\#($0.0),"name":"\#($0.1)"}"# }.joined(separator: ","))
        out.write("]}")
        try out.close()
    }

    /// val2017-like bbox workload: diamond-polygon GT (1% crowd rectangles as RLE), 100 detections per
    /// image (jittered GT copies with scores in 0.3...1, then random boxes with low scores).
    static func valBboxWorkload(gtPath: String, dtPath: String, images n: Int, gtPerImage: Double,
                                detsPerImage: Int, seed: UInt64) throws {
        var rng = COCOBenchRNG(seed: seed)
        let catW = (0..<categories.count).map { 1.0 / (Double($0) + 3) }
        let total = catW.reduce(0, +)
        func weightedCat() -> Int {
            var u = rng.uniform(0, total)
            for (k, w) in catW.enumerated() { u -= w; if u < 0 { return categories[k].0 } }
            return categories[categories.count - 1].0
        }
        let gt = try ChunkWriter(path: gtPath), dt = try ChunkWriter(path: dtPath)
        var images: [String] = []
        gt.write(#"{"info": {}, "licenses": [], "annotations": ["#)
        dt.write("[")
        var aid = 1, firstDet = true
        for i in 0..<n {
            let iid = 100_000 + 7 * i + Int(rng.next() % 7)
            let (W, H) = sizes[Int(rng.next() % 7)]
            images.append(#"{"id": \#(iid), "width": \#(W), "height": \#(H), "file_name": "\#(String(format: "%012d", iid)).jpg"}"#)
            var imgCats: [Int] = []
            let nc = 1 + Int(rng.next() % 5)
            while imgCats.count < nc { let c = weightedCat(); if !imgCats.contains(c) { imgCats.append(c) } }
            func box() -> (Double, Double, Double, Double) {
                let area = exp(rng.uniform(log(16), log(0.5 * Double(W * H))))
                let ar = exp(rng.uniform(-1, 1))
                let bw = min((area * ar).squareRoot(), Double(W) - 1), bh = min(area / bw, Double(H) - 1)
                return (rng.uniform(0, Double(W) - bw), rng.uniform(0, Double(H) - bh), bw, bh)
            }
            var gts: [(Int, [Double])] = []
            for _ in 0..<rng.poisson(gtPerImage) {
                let cid = imgCats[Int(rng.next() % UInt64(imgCats.count))]
                let (x, y, bw, bh) = box()
                let crowd = rng.uniform(0, 1) < 0.01
                var seg: String, area: String
                if crowd {
                    let c0 = Int(x), c1 = min(Int(x + bw) + 1, W), r0 = Int(y), r1 = min(Int(y + bh) + 1, H)
                    var runs = [c0 * H + r0]
                    for c in c0..<c1 { runs.append(r1 - r0); runs.append(c == c1 - 1 ? H - r1 + (W - c1) * H : H - (r1 - r0)) }
                    seg = #"{"counts": [\#(runs.map(String.init).joined(separator: ", "))], "size": [\#(H), \#(W)]}"#
                    area = String((c1 - c0) * (r1 - r0))
                } else {
                    let p = [x, y + bh / 2, x + bw / 2, y, x + bw, y + bh / 2, x + bw / 2, y + bh].map(round2)
                    seg = "[[" + p.map { "\($0)" }.joined(separator: ", ") + "]]"
                    area = "\(bw * bh * 0.5)"
                }
                let b = [x, y, bw, bh].map(round2)
                if aid > 1 { gt.write(", ") }
                gt.write(#"{"id": \#(aid), "image_id": \#(iid), "category_id": \#(cid), "segmentation": \#(seg), "area": \#(area), "bbox": [\#(b.map { "\($0)" }.joined(separator: ", "))], "iscrowd": \#(crowd ? 1 : 0)}"#)
                gts.append((cid, b))
                aid += 1
            }
            var nd = 0
            func det(_ cid: Int, _ b: [Double], _ score: Double) {
                if !firstDet { dt.write(", ") }
                firstDet = false
                dt.write(#"{"image_id": \#(iid), "category_id": \#(cid), "bbox": [\#(b.map { "\(Double(Float($0)))" }.joined(separator: ", "))], "score": \#(Double(Float(score)))}"#)
                nd += 1
            }
            for (cid, b) in gts {
                for _ in 0..<(1 + Int(rng.next() % 3)) where nd < detsPerImage {
                    let s = rng.uniform(0.02, 0.2)
                    let c = rng.uniform(0, 1) > 0.05 ? cid : categories[Int(rng.next() % UInt64(categories.count))].0
                    det(c, [b[0] + rng.normal() * s * b[2], b[1] + rng.normal() * s * b[3],
                            b[2] * exp(rng.normal() * s), b[3] * exp(rng.normal() * s)], rng.uniform(0.3, 1))
                }
            }
            while nd < detsPerImage {
                let (x, y, bw, bh) = box()
                let cid = rng.uniform(0, 1) < 0.5 ? imgCats[Int(rng.next() % UInt64(imgCats.count))] : weightedCat()
                let s = rng.uniform(0, 0.6)
                det(cid, [x, y, bw, bh], s * s)
            }
        }
        gt.write(#"], "images": [\#(images.joined(separator: ", "))], "categories": ["#)
        gt.write(categories.map { #"{"id": \#($0.0), "name": "\#($0.1)", "supercategory": "\#($0.2)"}"# }.joined(separator: ", "))
        gt.write("]}")
        dt.write("]")
        try gt.close()
        try dt.close()
    }

    static func round2(_ v: Double) -> Double { (v * 100).rounded() / 100 }

    /// "%.2f" without Foundation's formatter (millions of values).
    static func fixed2(_ v: Double) -> String {
        let c = Int((abs(v) * 100).rounded())
        let frac = c % 100
        return (v < 0 && c != 0 ? "-" : "") + "\(c / 100)." + (frac < 10 ? "0" : "") + "\(frac)"
    }
}

/// Buffered file output.
private final class ChunkWriter {
    let handle: FileHandle
    var buffer: [UInt8] = []

    init(path: String) throws {
        guard FileManager.default.createFile(atPath: path, contents: nil) else {
            throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: path])
        }
        handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        buffer.reserveCapacity(1 << 22)
    }

    func write(_ s: String) {
        buffer.append(contentsOf: s.utf8)
        if buffer.count >= 1 << 22 { flush() }
    }

    func flush() {
        handle.write(Data(buffer))
        buffer.removeAll(keepingCapacity: true)
    }

    func close() throws {
        flush()
        try handle.close()
    }
}

/// Small deterministic generator for synthetic data.
private struct COCOBenchRNG {
    var state: UInt64
    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    mutating func uniform(_ lo: Double, _ hi: Double) -> Double {
        lo + (hi - lo) * Double(next() >> 11) / Double(1 << 53)
    }

    mutating func normal() -> Double {
        let u = max(uniform(0, 1), 1e-300), v = uniform(0, 1)
        return (-2 * log(u)).squareRoot() * cos(2 * .pi * v)
    }

    mutating func poisson(_ lambda: Double) -> Int {
        let l = exp(-lambda)
        var k = 0, p = 1.0
        repeat { k += 1; p *= uniform(0, 1) } while p > l
        return k - 1
    }
}
