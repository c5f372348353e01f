import Config
import Foundation

/// mmdet's `DeltaXYWHBBoxCoder`: (dx, dy, dw, dh) of a box relative to an anchor, normalised by means and stds.
/// Boxes are flat [x1, y1, x2, y2] · count; widths are x2 − x1 (no +1, mmdet v2).
public struct DeltaXYWHBBoxCoder: Equatable {
    public var means: [Float] = [0, 0, 0, 0]
    public var stds: [Float] = [1, 1, 1, 1]
    /// dw, dh are clamped to ±|log(whRatioClip)| = log(1000/16) on decoding.
    public var whRatioClip: Float = 16 / 1000

    public init(means: [Float] = [0, 0, 0, 0], stds: [Float] = [1, 1, 1, 1]) { self.means = means; self.stds = stds }

    /// bbox2delta for `count` pairs (anchor i ↔ gt i).
    public func encode(anchors p: [Float], gts g: [Float]) -> [Float] {
        precondition(p.count == g.count && p.count % 4 == 0, "encode: \(p.count) anchors vs \(g.count) targets")
        var out = [Float](repeating: 0, count: p.count)
        for i in stride(from: 0, to: p.count, by: 4) {
            let px = (p[i] + p[i + 2]) * 0.5, py = (p[i + 1] + p[i + 3]) * 0.5
            let pw = p[i + 2] - p[i], ph = p[i + 3] - p[i + 1]
            let gx = (g[i] + g[i + 2]) * 0.5, gy = (g[i + 1] + g[i + 3]) * 0.5
            let gw = g[i + 2] - g[i], gh = g[i + 3] - g[i + 1]
            let d = [(gx - px) / pw, (gy - py) / ph, Foundation.log(gw / pw), Foundation.log(gh / ph)]
            for k in 0..<4 { out[i + k] = (d[k] - means[k]) / stds[k] }
        }
        return out
    }

    /// delta2bbox; clips to `maxShape` (height, width) when given: x to [0, width], y to [0, height].
    public func decode(anchors p: [Float], deltas: [Float], maxShape: (height: Int, width: Int)? = nil) -> [Float] {
        precondition(p.count == deltas.count && p.count % 4 == 0, "decode: \(p.count) anchors vs \(deltas.count) deltas")
        let maxRatio = abs(Foundation.log(whRatioClip))
        var out = [Float](repeating: 0, count: p.count)
        for i in stride(from: 0, to: p.count, by: 4) {
            let dx = deltas[i] * stds[0] + means[0], dy = deltas[i + 1] * stds[1] + means[1]
            let dw = min(max(deltas[i + 2] * stds[2] + means[2], -maxRatio), maxRatio)
            let dh = min(max(deltas[i + 3] * stds[3] + means[3], -maxRatio), maxRatio)
            let px = (p[i] + p[i + 2]) * 0.5, py = (p[i + 1] + p[i + 3]) * 0.5
            let pw = p[i + 2] - p[i], ph = p[i + 3] - p[i + 1]
            let gw = pw * Foundation.exp(dw), gh = ph * Foundation.exp(dh)
            let gx = px + pw * dx, gy = py + ph * dy
            var b = [gx - gw * 0.5, gy - gh * 0.5, gx + gw * 0.5, gy + gh * 0.5]
            if let s = maxShape {
                let w = Float(s.width), h = Float(s.height)
                b[0] = min(max(b[0], 0), w); b[2] = min(max(b[2], 0), w)
                b[1] = min(max(b[1], 0), h); b[3] = min(max(b[3], 0), h)
            }
            for k in 0..<4 { out[i + k] = b[k] }
        }
        return out
    }
}

extension DeltaXYWHBBoxCoder {
    /// mmdet's DeltaXYWHBBoxCoder keys with a context's default stds (its means are always 0 where `zeroMeans`).
    static func fields(stds: [Double] = [1, 1, 1, 1], zeroMeans: Bool = false) -> [ConfigSchema.Field] {
        [.init("type", .oneOf(["DeltaXYWHBBoxCoder"]), default: "DeltaXYWHBBoxCoder"),
         .init("target_means", zeroMeans ? .exactly([0, 0, 0, 0]) : .array(.number, count: 4), default: [0, 0, 0, 0]),
         .init("target_stds", .array(.positiveNumber, count: 4), default: .array(stds.map { .double($0) }))]
    }

    static func register(in r: Registry<DeltaXYWHBBoxCoder, Void>) {
        r.register("DeltaXYWHBBoxCoder", fields: Array(fields().dropFirst())) { c, _ in
            DeltaXYWHBBoxCoder(means: try c.doubles("target_means").map(Float.init), stds: try c.doubles("target_stds").map(Float.init))
        }
    }
}
