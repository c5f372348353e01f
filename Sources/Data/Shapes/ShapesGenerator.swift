import Foundation

/// One generated image with every form of its ground truth.
public struct ShapesExample: Equatable, Sendable {
    public var image: Image
    /// 0 = background, 1...4 = `ShapeKind` raw values; exactly the pixels drawn for each shape's visible part.
    public var label: LabelMap
    public var shapes: [ShapeGeometry]
    /// Full-shape masks in `shapes` order (occluded parts included, matching the COCO polygons).
    public var masks: BitmapMasks

    /// COCO-style annotations (category = kind raw value − 1 as the contiguous label).
    public var annotations: [InstanceAnnotation] {
        shapes.map { g in
            let p = g.polygon
            let xs = stride(from: 0, to: p.count, by: 2).map { p[$0] }, ys = stride(from: 1, to: p.count, by: 2).map { p[$0] }
            let bbox = [xs.min()!, ys.min()!, xs.max()! - xs.min()!, ys.max()! - ys.min()!]
            return InstanceAnnotation(bbox: bbox, label: g.kind.rawValue - 1, polygons: [p], area: polygonArea(p))
        }
    }

    public func detectionSample(filename: String) -> DetectionSample {
        DetectionSample(filename: filename, image: image, annotations: annotations, masks: masks)
    }

    public func segmentationSample(filename: String) -> SegmentationSample {
        SegmentationSample(filename: filename, image: image, label: label)
    }
}

/// Draws the synthetic "shapes" images: 1–6 circles, rectangles, triangles and ellipses in saturated colours over
/// muted, gradient-and-noise backgrounds. Later shapes occlude earlier ones, but a placement is redrawn if it would
/// hide more than `maxOcclusion` of an earlier shape, so every instance stays mostly visible and its full polygon is a
/// fair annotation. Example `index` of `split` depends only on (seed, split, index).
public struct ShapesGenerator: Sendable {
    public var size: Int
    public var seed: UInt64
    public var maxShapes = 6
    public var maxOcclusion = 0.25

    public init(size: Int = 192, seed: UInt64 = 0) {
        precondition(size >= 32, "shapes images need at least 32 pixels a side")
        self.size = size
        self.seed = seed
    }

    static let palette: [(Int, Int, Int)] = [
        (220, 40, 40), (40, 170, 60), (40, 80, 220), (240, 200, 30), (200, 50, 200), (30, 200, 210), (250, 130, 20),
        (245, 245, 245),
    ]

    public func example(split: Int, index: Int) -> ShapesExample {
        var rng = SplitMix64(seed: seed, stream: UInt64(split), index: UInt64(index))
        let n = size
        var image = background(rng: &rng)
        var owner = [Int8](repeating: -1, count: n * n)
        var shapes: [ShapeGeometry] = []
        var fullMasks: [[UInt8]] = []
        var visible: [Int] = []
        var fullAreas: [Int] = []
        let target = rng.randint(1, maxShapes + 1)
        var attempts = 0
        while shapes.count < target && attempts < 40 {
            attempts += 1
            let kind = ShapeKind.allCases[rng.randint(0, 4)]
            let g = ShapeGeometry.random(kind, size: n, rng: &rng)
            let mask = g.rasterize(width: n, height: n)
            var hidden = [Int](repeating: 0, count: shapes.count)
            var area = 0
            for i in 0..<(n * n) where mask[i] == 1 {
                area += 1
                let o = Int(owner[i])
                if o >= 0 { hidden[o] += 1 }
            }
            guard area >= 16 else { continue }
            let tooHidden = shapes.indices.contains { j in
                Double(visible[j] - hidden[j]) < (1 - maxOcclusion) * Double(fullAreas[j])
            }
            if tooHidden { continue }
            let base = ShapesGenerator.palette[rng.randint(0, ShapesGenerator.palette.count)]
            let colour = [base.0, base.1, base.2].map { $0 + rng.randint(-20, 21) }
            let k = shapes.count
            for i in 0..<(n * n) where mask[i] == 1 {
                let o = Int(owner[i])
                if o >= 0 { visible[o] -= 1 }
                owner[i] = Int8(k)
                let texture = rng.randint(-6, 7)
                for c in 0..<3 { image.pixels[3 * i + c] = UInt8(clamping: colour[c] + texture) }
            }
            shapes.append(g)
            fullMasks.append(mask)
            visible.append(area)
            fullAreas.append(area)
        }
        let label = LabelMap(width: n, height: n, labels: owner.map { $0 < 0 ? 0 : UInt8(shapes[Int($0)].kind.rawValue) })
        return ShapesExample(image: image, label: label, shapes: shapes,
                             masks: BitmapMasks(count: shapes.count, width: n, height: n, masks: fullMasks.flatMap { $0 }))
    }

    /// A muted base colour, a linear gradient, a soft sinusoidal texture and per-pixel noise.
    private func background(rng: inout SplitMix64) -> Image {
        let n = size
        let grey = rng.uniform(70, 170)
        let base = (0..<3).map { _ in grey + rng.uniform(-25, 25) }
        let (gx, gy) = (rng.uniform(-40, 40) / Double(n), rng.uniform(-40, 40) / Double(n))
        let (fx, fy, phase) = (rng.uniform(0.05, 0.3), rng.uniform(0.05, 0.3), rng.uniform(0, 6.28))
        let amplitude = rng.uniform(4, 14)
        var img = Image(width: n, height: n)
        for y in 0..<n {
            for x in 0..<n {
                let wave = amplitude * sin(Double(x) * fx + phase) * cos(Double(y) * fy)
                let shade = Double(x) * gx + Double(y) * gy + wave + Double(rng.randint(-8, 9))
                for c in 0..<3 { img[y, x, c] = UInt8(clamping: Int((base[c] + shade).rounded())) }
            }
        }
        return img
    }
}
