/// One COCO-style object annotation, before mmdet's `_parse_ann_info` filtering.
public struct InstanceAnnotation: Equatable, Sendable {
    /// COCO [x, y, w, h] in pixels.
    public var bbox: [Double]
    /// Contiguous 0-based class index (mmdet's `cat2label[category_id]`).
    public var label: Int
    public var isCrowd: Bool
    /// COCO polygons (flat x, y lists); empty when the instance has none.
    public var polygons: [[Double]]
    /// Area as stored in the annotation (mmdet drops `area <= 0`).
    public var area: Double

    public init(bbox: [Double], label: Int, isCrowd: Bool = false, polygons: [[Double]] = [], area: Double? = nil) {
        precondition(bbox.count == 4, "bbox is [x, y, w, h]")
        self.bbox = bbox
        self.label = label
        self.isCrowd = isCrowd
        self.polygons = polygons
        self.area = area ?? bbox[2] * bbox[3]
    }
}

/// What `LoadImageFromFile` + `LoadAnnotations` give mmdet's train pipeline: the decoded image and its targets.
/// Boxes are flat `[x1, y1, x2, y2] * N` in pixels (mmdet's `gt_bboxes`, float32).
public struct DetectionSample: Sendable {
    public var filename: String
    public var image: Image
    public var gtBboxes: [Float]
    public var gtLabels: [Int]
    /// Crowd boxes, kept apart so assigners can ignore anchors on them (mmdet `gt_bboxes_ignore`).
    public var gtBboxesIgnore: [Float]
    /// Instance masks aligned with `gtLabels`, if the task has them (mmdet `gt_masks`).
    public var gtMasks: BitmapMasks?
    public var gtPolygons: PolygonMasks?

    public init(filename: String, image: Image, gtBboxes: [Float], gtLabels: [Int], gtBboxesIgnore: [Float] = [],
                gtMasks: BitmapMasks? = nil, gtPolygons: PolygonMasks? = nil) {
        precondition(gtBboxes.count == 4 * gtLabels.count, "one box per label")
        precondition(gtMasks.map { $0.count == gtLabels.count && $0.width == image.width && $0.height == image.height } ?? true,
                     "one image-sized mask per label")
        self.filename = filename
        self.image = image
        self.gtBboxes = gtBboxes
        self.gtLabels = gtLabels
        self.gtBboxesIgnore = gtBboxesIgnore
        self.gtMasks = gtMasks
        self.gtPolygons = gtPolygons
    }

    /// mmdet `CocoDataset._parse_ann_info`: drops boxes with area ≤ 0 or a side < 1, turns [x, y, w, h] into
    /// [x1, y1, x1 + w, y1 + h], and sends crowd boxes to `gtBboxesIgnore`. `masks`, if given, holds one bitmap per
    /// annotation (in `annotations` order) and is filtered alongside; polygons are always kept for non-crowd objects.
    public init(filename: String, image: Image, annotations: [InstanceAnnotation], masks: BitmapMasks? = nil) {
        var boxes: [Float] = [], labels: [Int] = [], ignore: [Float] = [], kept: [Int] = [], polys: [[[Double]]] = []
        for (i, a) in annotations.enumerated() {
            let (x, y, w, h) = (a.bbox[0], a.bbox[1], a.bbox[2], a.bbox[3])
            let interW = max(0, min(x + w, Double(image.width)) - max(x, 0))
            let interH = max(0, min(y + h, Double(image.height)) - max(y, 0))
            if interW * interH == 0 || a.area <= 0 || w < 1 || h < 1 { continue }
            let box = [Float(x), Float(y), Float(x + w), Float(y + h)]
            if a.isCrowd {
                ignore += box
            } else {
                boxes += box
                labels.append(a.label)
                kept.append(i)
                polys.append(a.polygons)
            }
        }
        self.init(filename: filename, image: image, gtBboxes: boxes, gtLabels: labels, gtBboxesIgnore: ignore,
                  gtMasks: masks?.selecting(kept),
                  gtPolygons: PolygonMasks(polygons: polys, width: image.width, height: image.height))
    }
}
