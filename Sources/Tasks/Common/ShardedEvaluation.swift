import Distributed
import Engine
import Evaluation
import Heads

/// Sharded evaluation (mmdet's `collect_results`): each rank runs the model on its part of the validation split;
/// detections are gathered on rank 0, segmentation areas summed over the ranks.

/// Every rank's (dataset index, detections) on rank 0, in dataset order; nil on the other ranks.
func gatherDetections(_ indices: [Int], _ dets: [ImageDetections], group: ProcessGroup) throws -> ([Int], [ImageDetections])? {
    var w = ByteWriter()
    w.int(indices.count)
    for (i, d) in zip(indices, dets) {
        w.int(i); w.int(d.count)
        w.floats(d.boxes); w.floats(d.scores)
        for l in d.labels { w.int(l) }
        w.int(d.masks == nil ? 0 : 1)
        for m in d.masks ?? [] { w.int(m.width); w.int(m.height); w.int(m.counts.count); w.uint32s(m.counts) }
    }
    let parts = try group.gather(bytes: w.bytes, "gathering the validation detections")
    guard group.isMain else { return nil }
    var all: [(Int, ImageDetections)] = []
    for (rank, part) in parts.enumerated() {
        var r = ByteReader(part, what: "detections from rank \(rank)")
        for _ in 0..<(try r.count()) {
            let index = try r.int(), n = try r.count()
            let boxes = try r.floats(4 * n), scores = try r.floats(n)
            let labels = try (0..<n).map { _ in try r.int() }
            var masks: [MaskRuns]?
            if try r.int() != 0 {
                masks = try (0..<n).map { _ in
                    let width = try r.int(), height = try r.int(), runs = try r.count()
                    return MaskRuns(width: width, height: height, counts: try r.uint32s(runs))
                }
            }
            all.append((index, ImageDetections(boxes: boxes, scores: scores, labels: labels, masks: masks)))
        }
    }
    all.sort { $0.0 < $1.0 }
    return (all.map(\.0), all.map(\.1))
}

/// The validation areas of every rank, summed (exact: counts below 2^53).
func sumAreas(_ a: SegmentationAreas, group: ProcessGroup) throws -> SegmentationAreas {
    let n = a.intersect.count
    var v = (a.intersect + a.union + a.predLabel + a.label).map(Double.init)
    try group.allreduceSum(&v, "summing the validation areas")
    var out = SegmentationAreas(numClasses: n)
    for c in 0..<n {
        out.intersect[c] = Int64(v[c]); out.union[c] = Int64(v[n + c])
        out.predLabel[c] = Int64(v[2 * n + c]); out.label[c] = Int64(v[3 * n + c])
    }
    return out
}

/// Little-endian fields for the gather.
struct ByteWriter {
    var bytes: [UInt8] = []
    mutating func int(_ v: Int) { withUnsafeBytes(of: Int64(v).littleEndian) { bytes.append(contentsOf: $0) } }
    mutating func floats(_ v: [Float]) { uint32s(v.map(\.bitPattern)) }
    mutating func uint32s(_ v: [UInt32]) {
        for x in v { withUnsafeBytes(of: x.littleEndian) { bytes.append(contentsOf: $0) } }
    }
}

/// Reads what `ByteWriter` wrote, checking every length against the bytes left.
struct ByteReader {
    let data: [UInt8]
    let what: String
    var at = 0
    init(_ data: [UInt8], what: String) { self.data = data; self.what = what }

    mutating func take(_ n: Int) throws -> ArraySlice<UInt8> {
        guard n >= 0, n <= data.count - at else { throw KitError.format("\(what): truncated at byte \(at) of \(data.count)") }
        defer { at += n }
        return data[at..<(at + n)]
    }
    mutating func int() throws -> Int {
        Int(try take(8).reversed().reduce(Int64(0)) { $0 << 8 | Int64($1) })
    }
    /// A non-negative count no larger than the bytes left.
    mutating func count() throws -> Int {
        let n = try int()
        guard n >= 0, n <= data.count - at else { throw KitError.format("\(what): bad count \(n) at byte \(at)") }
        return n
    }
    mutating func floats(_ n: Int) throws -> [Float] { try uint32s(n).map(Float.init(bitPattern:)) }
    mutating func uint32s(_ n: Int) throws -> [UInt32] {
        guard n <= (data.count - at) / 4 else { throw KitError.format("\(what): truncated at byte \(at) of \(data.count)") }
        let raw = try take(4 * n)
        return stride(from: raw.startIndex, to: raw.endIndex, by: 4).map { i in
            UInt32(raw[i]) | UInt32(raw[i + 1]) << 8 | UInt32(raw[i + 2]) << 16 | UInt32(raw[i + 3]) << 24
        }
    }
}
