import Config
import Engine
import Foundation

/// mmdet's `SingleRoIExtractor` with `RoIAlign(output_size, sampling_ratio, aligned=True)`: each roi is cropped from
/// one pyramid level, chosen by its scale s = √(w·h) as level ⌊log2(s / finestScale + 1e-6)⌋ clamped to the levels
/// (finest_scale 56: rois under 112 px go to stride 4, ...), at that level's 1/stride.
///
/// Input: levels [N, C, H/stride_i, W/stride_i] (finest first) and K rois × [batch index, x1, y1, x2, y2] in input
/// pixels. Output: [K, C, outputSize, outputSize] in roi order.
public struct SingleRoIExtractor {
    public var outputSize: Int
    public var samplingRatio: Int
    public var strides: [Int]
    public var finestScale: Float

    public init(outputSize: Int = 7, samplingRatio: Int = 0, strides: [Int] = [4, 8, 16, 32], finestScale: Float = 56) {
        self.outputSize = outputSize; self.samplingRatio = samplingRatio; self.strides = strides; self.finestScale = finestScale
    }

    /// mmdet's `map_roi_levels`.
    public func levels(_ rois: [Float]) -> [Int] {
        (0..<(rois.count / 5)).map { r in
            let scale = ((rois[5 * r + 3] - rois[5 * r + 1]) * (rois[5 * r + 4] - rois[5 * r + 2])).squareRoot()
            let level = Foundation.floor(Foundation.log2(scale / finestScale + 1e-6))
            return level.isNaN ? 0 : min(max(Int(max(min(level, 1e6), -1e6)), 0), strides.count - 1)
        }
    }

    public func callAsFunction(_ feats: [Tensor], rois: [Float]) -> Tensor {
        precondition(feats.count >= strides.count, "SingleRoIExtractor: \(feats.count) levels for \(strides.count) strides")
        let k = rois.count / 5, c = feats[0].shape[1]
        guard k > 0 else { return Tensor(zeros: [0, c, outputSize, outputSize]) }
        let lv = levels(rois)
        var parts: [Tensor] = [], order: [Int] = []
        for (l, stride) in strides.enumerated() {
            let members = (0..<k).filter { lv[$0] == l }
            guard !members.isEmpty else { continue }
            let sub = members.flatMap { rois[(5 * $0)..<(5 * $0 + 5)] }
            parts.append(feats[l].roiAlign(rois: sub, outH: outputSize, outW: outputSize, spatialScale: 1 / Float(stride),
                                           samplingRatio: samplingRatio, aligned: true))
            order += members
        }
        // Level-grouped results back into roi order.
        var inverse = [Int](repeating: 0, count: k)
        for (position, roi) in order.enumerated() { inverse[roi] = position }
        let grouped = parts.count == 1 ? parts[0] : concat(parts, axis: 0)
        return grouped.indexSelect(axis: 0, inverse)
    }
}

extension SingleRoIExtractor {
    /// mmdet's SingleRoIExtractor keys (RoIAlign only, aligned); `outputSize` is the context's default.
    static func fields(outputSize: Int = 7) -> [ConfigSchema.Field] {
        [.init("type", .oneOf(["SingleRoIExtractor"]), default: "SingleRoIExtractor"),
         .init("roi_layer", .object([.init("type", .oneOf(["RoIAlign"]), default: "RoIAlign"),
                                     .init("output_size", .positiveInt, default: .int(outputSize)),
                                     .init("sampling_ratio", .nonNegativeInt, default: 0), .init("aligned", .exactly(true), default: true)])),
         .init("out_channels", .positiveInt), .init("featmap_strides", .array(.positiveInt), default: [4, 8, 16, 32]),
         .init("finest_scale", .positiveNumber, default: 56)]
    }

    /// Context: the neck's channels, which `out_channels` must equal when given.
    static func register(in r: Registry<SingleRoIExtractor, Int>) {
        r.register("SingleRoIExtractor", fields: Array(fields().dropFirst())) { c, channels in
            try c.checkChannels("out_channels", channels)
            let strides = try c.ints("featmap_strides")
            if strides.isEmpty { throw c.fail("featmap_strides", "must list one stride per feature level, got none") }
            return SingleRoIExtractor(outputSize: try c.int("roi_layer.output_size"), samplingRatio: try c.int("roi_layer.sampling_ratio"),
                                      strides: strides, finestScale: Float(try c.double("finest_scale")))
        }
    }
}
