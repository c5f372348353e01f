/// One `images` entry.
public struct COCOImage: Equatable, Sendable {
    public var id: Int
    public var width: Int
    public var height: Int
    public var fileName: String

    public init(id: Int, width: Int, height: Int, fileName: String) {
        self.id = id
        self.width = width
        self.height = height
        self.fileName = fileName
    }
}

/// One `categories` entry; COCO ids are not contiguous (1...90 with gaps).
public struct COCOCategory: Equatable, Sendable {
    public var id: Int
    public var name: String
    public var supercategory: String

    public init(id: Int, name: String, supercategory: String = "") {
        self.id = id
        self.name = name
        self.supercategory = supercategory
    }
}

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

/// One annotation or one detection result (pycocotools keeps both in the same dict shape).
public struct COCOAnnotation: Equatable, Sendable {
    public var id: Int
    public var imageId: Int
    public var categoryId: Int
    public var bbox: BBox
    /// The `area` field (ground truth) or loadRes' area (results): used for the area ranges.
    public var area: Double
    public var iscrowd: Bool
    /// Detection confidence; 0 for ground truth.
    public var score: Double
    public var segmentation: COCOSegmentation

    public init(id: Int, imageId: Int, categoryId: Int, bbox: BBox, area: Double, iscrowd: Bool = false,
                score: Double = 0, segmentation: COCOSegmentation = .none) {
        self.id = id
        self.imageId = imageId
        self.categoryId = categoryId
        self.bbox = bbox
        self.area = area
        self.iscrowd = iscrowd
        self.score = score
        self.segmentation = segmentation
    }
}
