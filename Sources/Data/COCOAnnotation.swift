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
