import Foundation

/// The synthetic dataset's classes; raw values are the COCO category ids and the semantic label values
/// (0 is background).
public enum ShapeKind: Int, CaseIterable, Sendable {
    case circle = 1, rectangle, triangle, ellipse

    public var name: String {
        switch self {
        case .circle: return "circle"
        case .rectangle: return "rectangle"
        case .triangle: return "triangle"
        case .ellipse: return "ellipse"
        }
    }
}

/// One drawn shape: an exact inside test (evaluated at pixel centres, so label maps match the drawn pixels) and a
/// polygon outline for the COCO annotation (vertices on the boundary; 32 for round shapes).
public struct ShapeGeometry: Equatable, Sendable {
    public var kind: ShapeKind
    public var cx: Double, cy: Double
    /// Half extents along the shape's own axes (radius for circles; circumradius for triangles).
    public var a: Double, b: Double
    public var angle: Double
    /// Triangle vertex angles (radians, before `angle`), unused otherwise.
    var triangleAngles: [Double] = []

    /// Flat [x0, y0, x1, y1, ...] outline.
    public var polygon: [Double] {
        var points: [(Double, Double)] = []
        switch kind {
        case .circle, .ellipse:
            points = (0..<32).map { i in
                let t = Double(i) * 2 * Double.pi / 32
                return (a * cos(t), b * sin(t))
            }
        case .rectangle:
            points = [(-a, -b), (a, -b), (a, b), (-a, b)]
        case .triangle:
            points = triangleAngles.map { (a * cos($0), a * sin($0)) }
        }
        let c: Double = cos(angle), s: Double = sin(angle)
        var flat: [Double] = []
        for (px, py) in points {
            flat.append(cx + px * c - py * s)
            flat.append(cy + px * s + py * c)
        }
        return flat
    }

    /// An inside test for points (x, y), boundary included, with the trigonometry done once.
    public func insideTest() -> (Double, Double) -> Bool {
        let c = cos(angle), s = sin(angle)
        let (cx, cy, a, b, kind) = (cx, cy, a, b, kind)
        let p = triangleAngles.map { (a * cos($0), a * sin($0)) }
        return { x, y in
            let dx = x - cx, dy = y - cy
            let u = dx * c + dy * s, v = -dx * s + dy * c
            switch kind {
            case .circle: return u * u + v * v <= a * a
            case .ellipse: return (u * u) / (a * a) + (v * v) / (b * b) <= 1
            case .rectangle: return abs(u) <= a && abs(v) <= b
            case .triangle:
                func side(_ p0: (Double, Double), _ p1: (Double, Double)) -> Double {
                    (p1.0 - p0.0) * (v - p0.1) - (p1.1 - p0.1) * (u - p0.0)
                }
                let d0 = side(p[0], p[1]), d1 = side(p[1], p[2]), d2 = side(p[2], p[0])
                return (d0 >= 0 && d1 >= 0 && d2 >= 0) || (d0 <= 0 && d1 <= 0 && d2 <= 0)
            }
        }
    }

    /// Pixel-centre raster of the shape on a `width` x `height` canvas: row-major 0/1.
    public func rasterize(width: Int, height: Int) -> [UInt8] {
        let inside = insideTest()
        let p = polygon
        let xs = stride(from: 0, to: p.count, by: 2).map { p[$0] }, ys = stride(from: 1, to: p.count, by: 2).map { p[$0] }
        // The polygon's vertices lie on the boundary; round shapes bulge up to a · (1 − cos(π/32)) beyond it.
        let pad = 0.01 * a + 1
        let x0 = max(0, Int((xs.min()! - pad).rounded(.down))), x1 = min(width - 1, Int((xs.max()! + pad).rounded(.up)))
        let y0 = max(0, Int((ys.min()! - pad).rounded(.down))), y1 = min(height - 1, Int((ys.max()! + pad).rounded(.up)))
        var mask = [UInt8](repeating: 0, count: width * height)
        if x0 > x1 || y0 > y1 { return mask }
        for y in y0...y1 {
            for x in x0...x1 where inside(Double(x) + 0.5, Double(y) + 0.5) { mask[y * width + x] = 1 }
        }
        return mask
    }

    /// A random shape of `kind` whose outline fits inside a `size` x `size` canvas with a 1-pixel margin.
    static func random(_ kind: ShapeKind, size: Int, rng: inout SplitMix64) -> ShapeGeometry {
        let s = Double(size)
        let r = rng.uniform(0.07, 0.2) * s
        var g = ShapeGeometry(kind: kind, cx: 0, cy: 0, a: r, b: r, angle: 0)
        switch kind {
        case .circle: break
        case .ellipse:
            g.b = r / rng.uniform(1.5, 2.5)
            g.angle = rng.uniform(0, Double.pi)
        case .rectangle:
            g.b = r * rng.uniform(0.4, 1.0)
            g.angle = rng.bernoulli(0.5) ? 0 : rng.uniform(-0.5, 0.5)
        case .triangle:
            let base = rng.uniform(0, 2 * Double.pi)
            g.triangleAngles = (0..<3).map { base + Double($0) * 2 * Double.pi / 3 + rng.uniform(-0.3, 0.3) }
        }
        // Place the centre so the outline's bounding box stays inside [1, size - 1].
        let p = g.polygon
        let xs = stride(from: 0, to: p.count, by: 2).map { p[$0] }, ys = stride(from: 1, to: p.count, by: 2).map { p[$0] }
        let (minX, maxX, minY, maxY) = (xs.min()!, xs.max()!, ys.min()!, ys.max()!)
        g.cx = rng.uniform(1 - minX, max(2 - minX, s - 1 - maxX))
        g.cy = rng.uniform(1 - minY, max(2 - minY, s - 1 - maxY))
        return g
    }
}

/// Shoelace area of a flat polygon.
public func polygonArea(_ p: [Double]) -> Double {
    let n = p.count / 2
    var twice = 0.0
    for i in 0..<n {
        let j = (i + 1) % n
        twice += p[2 * i] * p[2 * j + 1] - p[2 * j] * p[2 * i + 1]
    }
    return abs(twice) / 2
}
