import Dispatch

/// A COCO instances file (or a results file after `loadRes`), validated and indexed — pycocotools'
/// `COCO` object: `imgs`/`cats`/`anns` by id, annotations by image and by category, plus the
/// category id <-> contiguous label maps a detector head needs.
public final class COCODataset: @unchecked Sendable {
    /// Where the data came from, for error messages.
    public let file: String
    public let images: [COCOImage]
    public let categories: [COCOCategory]
    public let annotations: [COCOAnnotation]
    /// Kept-but-suspicious records (e.g. zero-size detection boxes), one line per kind with its count.
    public internal(set) var warnings: [String] = []

    /// Image id -> position in `images`.
    public let imageIndex: COCOIdIndex
    /// Category id -> position in `categories`.
    public let categoryIndex: COCOIdIndex
    /// Annotation id -> position in `annotations`.
    public let annotationIndex: COCOIdIndex
    /// Category ids sorted ascending; a category's contiguous label is its position here.
    public let categoryIds: [Int]
    /// Category id -> contiguous label 0..<K.
    public let labelOfCategory: [Int: Int]

    /// Annotation positions grouped by image position (CSR): image i owns `byImage[byImageStart[i]..<byImageStart[i+1]]`.
    let byImageStart: [Int32]
    let byImage: [Int32]
    let byCategoryStart: [Int32]
    let byCategory: [Int32]

    /// Builds and checks a dataset: unique ids, annotations pointing at known images and categories,
    /// sane boxes, areas and masks. `isResults` relaxes boxes to allow zero size (a clipped detection
    /// is legal and simply matches nothing) and requires finite, non-negative scores.
    public init(images: [COCOImage], categories: [COCOCategory], annotations: [COCOAnnotation],
                file: String = "<memory>", isResults: Bool = false, annotationSection: String? = nil) throws {
        self.file = file
        let section = annotationSection ?? (isResults ? "results" : "annotations")
        var dup: Int?
        let imageIndex = COCOIdIndex(images.map(\.id), duplicate: &dup)
        if let i = dup {
            throw KitError.coco(file: file, record: "images[\(i)] (id \(images[i].id))", problem: "duplicate image id \(images[i].id)")
        }
        for (i, im) in images.enumerated() {
            if let problem = Self.imageSizeProblem(width: im.width, height: im.height) {
                throw KitError.coco(file: file, record: "images[\(i)] (id \(im.id))", problem: problem)
            }
        }
        let categoryIndex = COCOIdIndex(categories.map(\.id), duplicate: &dup)
        if let i = dup {
            throw KitError.coco(file: file, record: "categories[\(i)] (id \(categories[i].id))",
                            problem: "duplicate category id \(categories[i].id)")
        }
        let annotationIndex = COCOIdIndex(annotations.map(\.id), duplicate: &dup)
        if let i = dup {
            throw KitError.coco(file: file, record: "\(section)[\(i)] (id \(annotations[i].id))",
                            problem: "duplicate annotation id \(annotations[i].id)")
        }
        // Positions of each annotation's image and category, looked up once.
        let n = annotations.count
        var imgPos = [Int32](repeating: 0, count: n), catPos = [Int32](repeating: 0, count: n)
        for (i, a) in annotations.enumerated() {
            guard let im = imageIndex[a.imageId] else {
                throw KitError.coco(file: file, record: "\(section)[\(i)] (id \(a.id))",
                                problem: isResults
                                    ? "image_id \(a.imageId) is not an image of the ground truth (pycocotools: 'Results do not correspond to current coco set')"
                                    : "image_id \(a.imageId) is not in \"images\"")
            }
            guard let c = categoryIndex[a.categoryId] else {
                throw KitError.coco(file: file, record: "\(section)[\(i)] (id \(a.id))",
                                problem: "category_id \(a.categoryId) is not in \"categories\"")
            }
            imgPos[i] = Int32(im)
            catPos[i] = Int32(c)
        }
        // Field checks on one core while the other builds the groupings.
        var checkError: Error?
        var zeroSize = 0, shortRLE = 0
        var groups: (([Int32], [Int32]), ([Int32], [Int32]))?
        DispatchQueue.concurrentPerform(iterations: 2) { job in
            if job == 0 {
                do {
                    for (i, a) in annotations.enumerated() {
                        switch try Self.check(a, image: images[Int(imgPos[i])], isResults: isResults, file: file,
                                              record: "\(section)[\(i)] (id \(a.id))") {
                        case .ok: break
                        case .zeroSizeBox: zeroSize += 1
                        case .shortRLE: shortRLE += 1
                        }
                    }
                } catch {
                    checkError = error
                }
            } else {
                groups = (Self.group(n, buckets: images.count) { Int(imgPos[$0]) },
                          Self.group(n, buckets: categories.count) { Int(catPos[$0]) })
            }
        }
        if let e = checkError { throw e }
        self.images = images
        self.categories = categories
        self.annotations = annotations
        self.imageIndex = imageIndex
        self.categoryIndex = categoryIndex
        self.annotationIndex = annotationIndex
        categoryIds = categories.map(\.id).sorted()
        var labels = [Int: Int](minimumCapacity: categoryIds.count)
        for (l, id) in categoryIds.enumerated() { labels[id] = l }
        labelOfCategory = labels
        ((byImageStart, byImage), (byCategoryStart, byCategory)) = groups!
        if zeroSize > 0 { warnings.append("\(zeroSize) results with a zero-size box (kept: they match nothing)") }
        if shortRLE > 0 { warnings.append("\(shortRLE) RLE masks whose runs stop before the last pixel (kept: the rest is background)") }
    }

    /// The largest image side accepted, in pixels. Masks are pycocotools' run lengths in 32-bit counts over
    /// `height * width` pixels, so sizes must keep that product (and `x * height + y` inside the rasteriser) below
    /// 2^32; beyond these limits a file is refused at load time rather than evaluated wrongly.
    public static let maxImageSide = 1 << 20
    /// The largest `width * height` accepted (2^31 pixels).
    public static let maxImagePixels = MaskAPI.maxPixels

    /// Why an image (or mask) size cannot be used, or nil when it can.
    static func imageSizeProblem(width w: Int, height h: Int) -> String? {
        if w <= 0 || h <= 0 { return "image size \(w) x \(h) is not positive" }
        let (pixels, overflow) = w.multipliedReportingOverflow(by: h)
        if w > maxImageSide || h > maxImageSide || overflow || pixels > maxImagePixels {
            return "image size \(w) x \(h) is beyond the limit of \(maxImageSide) pixels a side and \(maxImagePixels) pixels in all"
        }
        return nil
    }

    enum CheckResult { case ok, zeroSizeBox, shortRLE }

    /// Checks a mask against its image before anything is rasterised or decoded: an RLE's size (in range, equal to
    /// the image's) and its counts (not past `h * w`, summed with overflow checks); polygons' structure and
    /// coordinates (finite, and within one image size outside the image on each side, which bounds the
    /// rasteriser's work). Returns whether an RLE's runs stop before the last pixel.
    static func checkMask(_ segmentation: COCOSegmentation, image: COCOImage, fail: (String) -> KitError) throws -> Bool {
        switch segmentation {
        case .none:
            return false
        case .polygons(let p):
            if p.lengths.isEmpty { throw fail("segmentation has no polygon") }
            var total = 0
            for (k, n) in p.lengths.enumerated() {
                if n % 2 != 0 { throw fail("segmentation polygon \(k) has an odd number of coordinates (\(n))") }
                if n < 6 { throw fail("segmentation polygon \(k) has \(n / 2) points; a polygon needs at least 3") }
                total += Int(n)
            }
            if total != p.coordinates.count {
                throw fail("segmentation polygons list \(total) coordinates but hold \(p.coordinates.count)")
            }
            let w = Double(image.width), h = Double(image.height)
            for (j, v) in p.coordinates.enumerated() {
                let isX = j % 2 == 0, side = isX ? w : h
                if !(v.isFinite && v >= -side && v <= 2 * side) {
                    throw fail("segmentation has a coordinate \(v) (\(isX ? "x" : "y")) that is not finite or lies more than the image \(isX ? "width" : "height") \(isX ? image.width : image.height) outside the image")
                }
            }
            return false
        case .rle(let r):
            if imageSizeProblem(width: r.w, height: r.h) != nil {
                throw fail("RLE size [\(r.h), \(r.w)] is out of range (positive, at most \(maxImageSide) a side and \(maxImagePixels) pixels)")
            }
            if r.h != image.height || r.w != image.width {
                throw fail("RLE size [\(r.h), \(r.w)] does not match image \(image.id) size [\(image.height), \(image.width)]")
            }
            let pixels = r.h * r.w  // in range: checked above
            var n = 0
            for c in r.counts {
                let (s, overflow) = n.addingReportingOverflow(Int(c))
                if overflow { throw fail("RLE counts overflow") }
                n = s
            }
            if n > pixels { throw fail("RLE counts cover \(n) pixels, more than the \(pixels) of its size [\(r.h), \(r.w)]") }
            return n < pixels
        }
    }

    /// Field checks that need the image. Two oddities are kept with a warning, as pycocotools keeps
    /// them: zero-size result boxes (they match nothing) and RLEs whose runs end before the last pixel
    /// (the rest is background).
    static func check(_ a: COCOAnnotation, image: COCOImage, isResults: Bool, file: String,
                      record: @autoclosure () -> String) throws -> CheckResult {
        func fail(_ p: String) -> KitError { KitError.coco(file: file, record: record(), problem: p) }
        let b = a.bbox
        if !(b.x.isFinite && b.y.isFinite && b.w.isFinite && b.h.isFinite) {
            throw fail("bbox \(b.array) is not finite")
        }
        if b.w < 0 || b.h < 0 { throw fail("bbox \(b.array) has a negative width or height") }
        var zero = false
        if b.w == 0 || b.h == 0 {
            if !isResults { throw fail("bbox \(b.array) has zero width or height") }
            zero = true
        }
        if !a.area.isFinite || a.area < 0 { throw fail("area \(a.area) is not a finite non-negative number") }
        if isResults && !(a.score.isFinite && a.score >= 0) {
            throw fail("score \(a.score) is not a finite non-negative number")
        }
        if try checkMask(a.segmentation, image: image, fail: fail) { return .shortRLE }
        return zero ? .zeroSizeBox : .ok
    }

    /// Counting sort of item positions into buckets; stable, so each bucket keeps file order.
    static func group(_ n: Int, buckets: Int, key: (Int) -> Int) -> ([Int32], [Int32]) {
        var keys = [Int32](repeating: 0, count: n)
        var start = [Int32](repeating: 0, count: buckets + 1)
        for i in 0..<n {
            let k = key(i)
            keys[i] = Int32(k)
            start[k + 1] += 1
        }
        for b in 0..<buckets { start[b + 1] += start[b] }
        var fill = start
        var items = [Int32](repeating: 0, count: n)
        for i in 0..<n {
            let k = Int(keys[i])
            items[Int(fill[k])] = Int32(i)
            fill[k] += 1
        }
        return (start, items)
    }

    /// Positions in `annotations` of one image's annotations, in file order (pycocotools' imgToAnns).
    public func annotationIndices(imageId: Int) -> ArraySlice<Int32> {
        guard let i = imageIndex[imageId] else { return [] }
        return byImage[Int(byImageStart[i])..<Int(byImageStart[i + 1])]
    }

    /// Positions in `annotations` of one category's annotations, in file order.
    public func annotationIndices(categoryId: Int) -> ArraySlice<Int32> {
        guard let c = categoryIndex[categoryId] else { return [] }
        return byCategory[Int(byCategoryStart[c])..<Int(byCategoryStart[c + 1])]
    }

    public func image(id: Int) -> COCOImage? { imageIndex[id].map { images[$0] } }
    public func category(id: Int) -> COCOCategory? { categoryIndex[id].map { categories[$0] } }
    public func annotation(id: Int) -> COCOAnnotation? { annotationIndex[id].map { annotations[$0] } }
    public func categoryId(forLabel label: Int) -> Int { categoryIds[label] }

    /// annToRLE: the annotation's mask at its image's size. Polygons are rasterised one by one and
    /// merged (union); a record without a segmentation gets its box as a polygon (loadRes does that
    /// for bbox results).
    public func annToRLE(_ ann: COCOAnnotation) -> RLE {
        let im = images[imageIndex[ann.imageId]!]
        return Self.annToRLE(ann, h: im.height, w: im.width)
    }

    public static func annToRLE(_ ann: COCOAnnotation, h: Int, w: Int) -> RLE {
        switch ann.segmentation {
        case .rle(let r):
            return r
        case .none:
            return MaskAPI.rleFrBbox(ann.bbox, h: h, w: w)
        case .polygons(let p):
            return p.coordinates.withUnsafeBufferPointer { c -> RLE in
                var rles: [RLE] = []
                rles.reserveCapacity(p.lengths.count)
                var s = 0
                for n in p.lengths {
                    rles.append(MaskAPI.rleFrPoly(UnsafeBufferPointer(rebasing: c[s..<(s + Int(n))]), h: h, w: w))
                    s += Int(n)
                }
                return MaskAPI.rleMerge(rles)
            }
        }
    }
}
