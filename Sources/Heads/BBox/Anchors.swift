import Config
import Foundation

/// mmdet's `AnchorGenerator` (v2) for RetinaNet: per level, base anchors centred on (0, 0) (center_offset 0) with
/// sizes stride · octave_base_scale · 2^(i/scales_per_octave) and aspect ratios h/w = ratio, shifted over the grid.
///
/// Order is exactly mmdet's: location-major (row y, then column x), then ratio, then scale (scale_major=True) — the
/// order of a head output [N, A·C, H, W] permuted to [N, H, W, A, C]. Boxes are flat [x1, y1, x2, y2] · count.
public struct AnchorGenerator: Equatable {
    public var strides: [Int]
    public var ratios: [Float]
    /// Octave scales: octave_base_scale · 2^(i / scales_per_octave).
    public var scales: [Float]
    public var centerOffset: Float

    public init(strides: [Int] = [8, 16, 32, 64, 128], ratios: [Float] = [0.5, 1, 2], octaveBaseScale: Float = 4,
                scalesPerOctave: Int = 3, centerOffset: Float = 0) {
        self.strides = strides
        self.ratios = ratios
        scales = (0..<scalesPerOctave).map { octaveBaseScale * Float(pow(2, Double($0) / Double(scalesPerOctave))) }
        self.centerOffset = centerOffset
    }

    public var numBaseAnchors: Int { ratios.count * scales.count }

    /// The generator of an `anchor_generator` section: `strides` must give one stride per feature level of the neck
    /// (`levels`, when the neck says), `ratios` at least one ratio. With `scales` (RPN's key) the first is the one
    /// octave-base scale; otherwise `octave_base_scale` and `scales_per_octave` (RetinaNet's).
    static func build(_ ag: Config, levels: Int?) throws -> AnchorGenerator {
        let strides = try ag.ints("strides"), ratios = try ag.doubles("ratios").map(Float.init)
        if let levels, strides.count != levels {
            throw ag.fail("strides", "lists \(strides.count) strides, but the neck gives \(levels) feature levels (one stride per level)")
        }
        if strides.isEmpty { throw ag.fail("strides", "must list one stride per feature level, got none") }
        if ratios.isEmpty { throw ag.fail("ratios", "must list at least one aspect ratio, got none") }
        if ag.has("scales") {
            return AnchorGenerator(strides: strides, ratios: ratios, octaveBaseScale: Float(try ag.doubles("scales")[0]), scalesPerOctave: 1)
        }
        return AnchorGenerator(strides: strides, ratios: ratios, octaveBaseScale: Float(try ag.double("octave_base_scale")),
                               scalesPerOctave: try ag.int("scales_per_octave"), centerOffset: Float(try ag.double("center_offset")))
    }

    /// gen_single_level_base_anchors: [x_c − ws/2, y_c − hs/2, x_c + ws/2, y_c + hs/2], ratio-major.
    public func baseAnchors(level: Int) -> [Float] {
        let w = Float(strides[level]), h = w
        let xc = centerOffset * w, yc = centerOffset * h
        var out: [Float] = []
        for r in ratios {
            let hr = r.squareRoot(), wr = 1 / hr
            for s in scales {
                let ws = w * wr * s, hs = h * hr * s
                out += [xc - 0.5 * ws, yc - 0.5 * hs, xc + 0.5 * ws, yc + 0.5 * hs]
            }
        }
        return out
    }

    /// Anchors of one level for a feature map of `height` × `width`.
    public func gridAnchors(level: Int, height: Int, width: Int) -> [Float] {
        let base = baseAnchors(level: level), a = numBaseAnchors, stride = Float(strides[level])
        var out = [Float](repeating: 0, count: height * width * a * 4)
        var i = 0
        for y in 0..<height {
            for x in 0..<width {
                let sx = Float(x) * stride, sy = Float(y) * stride
                for k in 0..<a {
                    out[i] = base[4 * k] + sx; out[i + 1] = base[4 * k + 1] + sy
                    out[i + 2] = base[4 * k + 2] + sx; out[i + 3] = base[4 * k + 3] + sy
                    i += 4
                }
            }
        }
        return out
    }

    /// Every level's anchors for the given feature sizes, concatenated in level order.
    public func anchors(featureSizes: [(height: Int, width: Int)]) -> [Float] {
        featureSizes.enumerated().flatMap { gridAnchors(level: $0.offset, height: $0.element.height, width: $0.element.width) }
    }
}
