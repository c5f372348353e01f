import CSimdJSON

/// One detection as a detector emits it (a record of a COCO results file).
public struct COCOResult: Equatable, Sendable {
    public var imageId: Int
    public var categoryId: Int
    public var score: Double
    public var bbox: BBox?
    public var segmentation: COCOSegmentation

    public init(imageId: Int, categoryId: Int, score: Double, bbox: BBox? = nil, segmentation: COCOSegmentation = .none) {
        self.imageId = imageId
        self.categoryId = categoryId
        self.score = score
        self.bbox = bbox
        self.segmentation = segmentation
    }
}

extension COCODataset {
    /// Results are evaluated against this ground truth: one without images or annotations is the file to blame
    /// (every result would be "not an image of the ground truth", or every AP -1).
    func checkCanHoldResults() throws {
        if images.isEmpty {
            throw KitError.coco(file: file, problem: "the ground truth has no images, so no results can be evaluated against it")
        }
        if annotations.isEmpty {
            throw KitError.coco(file: file, problem: "the ground truth has no annotations, so there is nothing to evaluate results against")
        }
    }

    /// pycocotools `loadRes(resFile)`: reads a results file (a JSON array) against this ground truth.
    public func loadRes(_ path: String) throws -> COCODataset {
        try checkCanHoldResults()
        let f = try COCOFile.read(path, kind: .results)
        var results: [COCOResult] = []
        results.reserveCapacity(f.annotations.count)
        for (a, flags) in zip(f.annotations, f.annotationFlags) {
            results.append(COCOResult(imageId: a.imageId, categoryId: a.categoryId, score: a.score,
                                      bbox: flags & UInt32(CSJ_HAS_BBOX) != 0 ? a.bbox : nil,
                                      segmentation: a.segmentation))
        }
        return try loadRes(results, file: path)
    }

    /// pycocotools `loadRes` on in-memory detections (a training loop's output). As there: the first
    /// record decides the kind — with a bbox, every result needs one and `area = w * h` (used for the
    /// area ranges in segm evaluation too); otherwise every result needs a segmentation, `area` is the
    /// mask area and a missing bbox is the mask's box. Ids are positions 1...n, iscrowd is 0.
    public func loadRes(_ results: [COCOResult], file: String = "<memory>") throws -> COCODataset {
        try checkCanHoldResults()
        guard let first = results.first else {
            throw KitError.coco(file: file, problem: "contains no results (pycocotools' loadRes fails on an empty list)")
        }
        let bboxMode = first.bbox != nil
        if !bboxMode && first.segmentation == .none {
            throw KitError.coco(file: file, record: "results[0]", problem: "has neither \"bbox\" nor \"segmentation\"")
        }
        var anns: [COCOAnnotation] = []
        anns.reserveCapacity(results.count)
        for (i, r) in results.enumerated() {
            let rec = "results[\(i)] (id \(i + 1))"
            guard let im = imageIndex[r.imageId] else {
                throw KitError.coco(file: file, record: rec,
                                problem: "image_id \(r.imageId) is not an image of the ground truth (pycocotools: 'Results do not correspond to current coco set')")
            }
            var a = COCOAnnotation(id: i + 1, imageId: r.imageId, categoryId: r.categoryId,
                                   bbox: r.bbox ?? BBox(x: 0, y: 0, w: 0, h: 0), area: 0, iscrowd: false,
                                   score: r.score, segmentation: r.segmentation)
            if bboxMode {
                guard let b = r.bbox else {
                    throw KitError.coco(file: file, record: rec, problem: "has no \"bbox\" (results[0] has one, so every result needs one)")
                }
                a.area = b.w * b.h
            } else {
                if r.segmentation == .none {
                    throw KitError.coco(file: file, record: rec,
                                    problem: "has no \"segmentation\" (results[0] has no bbox, so every result needs a mask)")
                }
                let image = images[im]
                // The mask is rasterised here for its area: checked first, as the ground truth's masks are.
                _ = try Self.checkMask(r.segmentation, image: image) { KitError.coco(file: file, record: rec, problem: $0) }
                let m = Self.annToRLE(a, h: image.height, w: image.width)
                a.area = Double(m.area)
                if r.bbox == nil { a.bbox = m.toBbox() }
            }
            anns.append(a)
        }
        return try COCODataset(images: images, categories: categories, annotations: anns, file: file, isResults: true)
    }
}
