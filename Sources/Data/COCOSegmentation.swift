/// The polygons of one object: polygon i is `coordinates` from the sum of `lengths[..<i]` on, `lengths[i]`
/// values `x0, y0, x1, y1, ...`. Slices let a loaded file share one coordinate buffer across all objects.
public struct COCOPolygons: Equatable, Sendable {
    public var coordinates: ArraySlice<Double>
    public var lengths: ArraySlice<Int32>

    public init(coordinates: ArraySlice<Double>, lengths: ArraySlice<Int32>) {
        self.coordinates = coordinates
        self.lengths = lengths
    }

    public init(_ polygons: [[Double]]) {
        coordinates = ArraySlice(polygons.flatMap { $0 })
        lengths = ArraySlice(polygons.map { Int32($0.count) })
    }

    /// Each polygon as its own slice of `coordinates`.
    public var polygons: [ArraySlice<Double>] {
        var out: [ArraySlice<Double>] = []
        var s = coordinates.startIndex
        for n in lengths {
            out.append(coordinates[s..<(s + Int(n))])
            s += Int(n)
        }
        return out
    }
}

/// An object's mask as written in the file: polygons (iscrowd 0) or RLE (iscrowd 1 and results;
/// both the `counts` list and the compressed string end up as `RLE`).
public enum COCOSegmentation: Equatable, Sendable {
    case none
    case polygons(COCOPolygons)
    case rle(RLE)
}
