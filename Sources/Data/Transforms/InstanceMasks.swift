/// mmdet's `BitmapMasks`: one binary (0/1) mask per instance, `masks[(n * height + y) * width + x]`.
public struct BitmapMasks: Equatable, Sendable {
    public let count: Int
    public let width: Int
    public let height: Int
    /// `count * height * width` bytes.
    public var masks: [UInt8]

    public init(count: Int, width: Int, height: Int, masks: [UInt8]) {
        precondition(masks.count == count * width * height, "expected \(count * width * height) mask bytes")
        self.count = count
        self.width = width
        self.height = height
        self.masks = masks
    }

    /// Mask `n` as a `height * width` slice.
    public func mask(_ n: Int) -> ArraySlice<UInt8> { masks[(n * width * height)..<((n + 1) * width * height)] }

    /// Nearest resize of every mask (mmdet's `BitmapMasks.rescale/resize` uses 'nearest').
    public func resized(width w: Int, height h: Int) -> BitmapMasks {
        var out = [UInt8](); out.reserveCapacity(count * w * h)
        for n in 0..<count {
            out += resizeNearest(Array(mask(n)), width: width, height: height, toWidth: w, toHeight: h)
        }
        return BitmapMasks(count: count, width: w, height: h, masks: out)
    }

    public func flippedHorizontally() -> BitmapMasks {
        BitmapMasks(count: count, width: width, height: height, masks: flippedRows(masks, rows: count * height, width: width, channels: 1))
    }

    /// Zero-pads at the bottom/right to `width` x `height`.
    public func padded(width w: Int, height h: Int) -> BitmapMasks {
        precondition(w >= width && h >= height)
        var out = [UInt8](repeating: 0, count: count * w * h)
        for n in 0..<count {
            for y in 0..<height {
                let src = (n * height + y) * width, dst = (n * h + y) * w
                out.replaceSubrange(dst..<(dst + width), with: masks[src..<(src + width)])
            }
        }
        return BitmapMasks(count: count, width: w, height: h, masks: out)
    }

    /// Keeps the masks at `indices`, in that order.
    public func selecting(_ indices: [Int]) -> BitmapMasks {
        BitmapMasks(count: indices.count, width: width, height: height, masks: indices.flatMap { mask($0) })
    }
}

/// mmdet's `PolygonMasks`: per instance a list of polygons, each a flat [x0, y0, x1, y1, ...] in pixels of an image
/// `width` x `height`. Geometry transforms move the vertices; nothing is rasterised here.
public struct PolygonMasks: Equatable, Sendable {
    public var polygons: [[[Double]]]
    public var width: Int
    public var height: Int

    public init(polygons: [[[Double]]], width: Int, height: Int) {
        self.polygons = polygons
        self.width = width
        self.height = height
    }

    /// Scales x by `w / width` and y by `h / height` (mmdet `PolygonMasks.resize`).
    public func resized(width w: Int, height h: Int) -> PolygonMasks {
        let sx = Double(w) / Double(width), sy = Double(h) / Double(height)
        let moved = polygons.map { inst in
            inst.map { p in p.enumerated().map { i, v in i % 2 == 0 ? v * sx : v * sy } }
        }
        return PolygonMasks(polygons: moved, width: w, height: h)
    }

    /// x → width − x (mmdet `PolygonMasks.flip`, horizontal).
    public func flippedHorizontally() -> PolygonMasks {
        let moved = polygons.map { inst in inst.map { p in p.enumerated().map { i, v in i % 2 == 0 ? Double(width) - v : v } } }
        return PolygonMasks(polygons: moved, width: width, height: height)
    }

    /// Padding at the bottom/right moves no vertex; only the canvas grows.
    public func padded(width w: Int, height h: Int) -> PolygonMasks { PolygonMasks(polygons: polygons, width: w, height: h) }

    public func selecting(_ indices: [Int]) -> PolygonMasks {
        PolygonMasks(polygons: indices.map { polygons[$0] }, width: width, height: height)
    }
}
