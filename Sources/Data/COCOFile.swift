import CSimdJSON
import Dispatch
import Foundation

/// A parsed COCO JSON file as simdjson's C shim left it: flat records plus shared coordinate, count and
/// string buffers. Turning it into Swift values copies each buffer once.
struct COCOFile {
    var images: [COCOImage] = []
    var categories: [COCOCategory] = []
    var annotations: [COCOAnnotation] = []
    /// Present-field flags of each annotation record (CSJ_HAS_*).
    var annotationFlags: [UInt32] = []

    enum Kind { case instances, results }

    static func read(_ path: String, kind: Kind) throws -> COCOFile {
        if access(path, R_OK) != 0 {
            throw KitError.coco(file: path, problem: "cannot read file: \(String(cString: strerror(errno)))")
        }
        // A FIFO would block the reader and a device such as /dev/zero never end: regular files only.
        var st = stat()
        if stat(path, &st) != 0 || (st.st_mode & S_IFMT) != S_IFREG {
            throw KitError.coco(file: path, problem: "cannot read file: not a regular file")
        }
        var handle: OpaquePointer?
        let status = path.withCString { p in
            kind == .instances ? csj_parse_instances(p, &handle) : csj_parse_results(p, &handle)
        }
        defer { csj_free(handle) }
        guard status == CSJ_OK else {
            let msg = handle.map { String(cString: csj_error_message($0)) } ?? "out of memory"
            throw KitError.coco(file: path, problem: msg)
        }
        let f = handle!
        let section = kind == .instances ? "annotations" : "results"
        var out = COCOFile()
        let strings = UnsafeBufferPointer(start: UnsafeRawPointer(csj_strings(f))?.assumingMemoryBound(to: UInt8.self),
                                          count: csj_string_bytes(f))
        func string(_ start: Int64, _ len: Int64) -> String {
            String(decoding: UnsafeBufferPointer(rebasing: strings[Int(start)..<Int(start + len)]), as: UTF8.self)
        }

        let ims = UnsafeBufferPointer(start: csj_images(f), count: csj_image_count(f))
        out.images.reserveCapacity(ims.count)
        for (i, im) in ims.enumerated() {
            let rec = im.flags & UInt32(CSJ_HAS_ID) != 0 ? "images[\(i)] (id \(im.id))" : "images[\(i)]"
            for (flag, name) in [(CSJ_HAS_ID, "id"), (CSJ_HAS_WIDTH, "width"), (CSJ_HAS_HEIGHT, "height")]
            where im.flags & UInt32(flag) == 0 {
                throw KitError.coco(file: path, record: rec, problem: "missing required field \"\(name)\"")
            }
            out.images.append(COCOImage(id: Int(im.id), width: Int(im.width), height: Int(im.height),
                                        fileName: string(im.file_name_start, im.file_name_len)))
        }

        let cats = UnsafeBufferPointer(start: csj_categories(f), count: csj_category_count(f))
        for (i, c) in cats.enumerated() {
            for (flag, name) in [(CSJ_HAS_ID, "id"), (CSJ_HAS_NAME, "name")] where c.flags & UInt32(flag) == 0 {
                throw KitError.coco(file: path, record: "categories[\(i)]", problem: "missing required field \"\(name)\"")
            }
            out.categories.append(COCOCategory(id: Int(c.id), name: string(c.name_start, c.name_len),
                                               supercategory: string(c.supercategory_start, c.supercategory_len)))
        }

        // One Swift copy of each shared buffer; annotations hold slices of them.
        let coordinates = Array(UnsafeBufferPointer(start: csj_coordinates(f), count: csj_coordinate_count(f)))
        let cPolys = UnsafeBufferPointer(start: csj_polygons(f), count: csj_polygon_count(f))
        let lengths = cPolys.map { Int32(truncatingIfNeeded: $0.count) }
        let counts = UnsafeBufferPointer(start: csj_counts(f), count: csj_count_count(f))

        let anns = UnsafeBufferPointer(start: csj_annotations(f), count: csj_annotation_count(f))
        let required: [(Int, String)] = kind == .instances
            ? [(CSJ_HAS_ID, "id"), (CSJ_HAS_IMAGE_ID, "image_id"), (CSJ_HAS_CATEGORY_ID, "category_id"),
               (CSJ_HAS_BBOX, "bbox"), (CSJ_HAS_AREA, "area")]
            : [(CSJ_HAS_IMAGE_ID, "image_id"), (CSJ_HAS_CATEGORY_ID, "category_id"), (CSJ_HAS_SCORE, "score")]
        let requiredMask = required.reduce(UInt32(0)) { $0 | UInt32($1.0) }
        func record(_ i: Int) -> String {
            anns[i].flags & UInt32(CSJ_HAS_ID) != 0 ? "\(section)[\(i)] (id \(anns[i].id))" : "\(section)[\(i)]"
        }
        for (i, a) in anns.enumerated() where a.flags & requiredMask != requiredMask {
            let missing = required.first { a.flags & UInt32($0.0) == 0 }!.1
            throw KitError.coco(file: path, record: record(i), problem: "missing required field \"\(missing)\"")
        }
        // Two halves converted in parallel; a bad compressed RLE string is remembered and thrown after.
        let n = anns.count
        let badRLE = UnsafeMutablePointer<Int>.allocate(capacity: 2)
        defer { badRLE.deallocate() }
        badRLE.initialize(repeating: Int.max, count: 2)
        out.annotationFlags = anns.map(\.flags)
        out.annotations = [COCOAnnotation](unsafeUninitializedCapacity: n) { buf, initialized in
            let base = buf.baseAddress!
            DispatchQueue.concurrentPerform(iterations: 2) { c in
                for i in (n * c / 2)..<(n * (c + 1) / 2) {
                    let a = anns[i]
                    var seg = COCOSegmentation.none
                    switch Int32(a.seg_kind) {
                    case Int32(CSJ_SEG_POLYGONS.rawValue):
                        let p0 = Int(a.seg_start), pn = Int(a.seg_count)
                        let c0 = pn > 0 ? Int(cPolys[p0].start) : 0
                        let c1 = pn > 0 ? Int(cPolys[p0 + pn - 1].start + cPolys[p0 + pn - 1].count) : 0
                        seg = .polygons(COCOPolygons(coordinates: coordinates[c0..<c1], lengths: lengths[p0..<(p0 + pn)]))
                    case Int32(CSJ_SEG_RLE_COUNTS.rawValue):
                        let s = Int(a.seg_start)
                        seg = .rle(RLE(h: Int(a.seg_h), w: Int(a.seg_w), counts: Array(counts[s..<(s + Int(a.seg_count))])))
                    case Int32(CSJ_SEG_RLE_STRING.rawValue):
                        let s = Int(a.seg_start)
                        if let r = MaskAPI.rleFrString(UnsafeBufferPointer(rebasing: strings[s..<(s + Int(a.seg_count))]),
                                                       h: Int(a.seg_h), w: Int(a.seg_w)) {
                            seg = .rle(r)
                        } else if badRLE[c] == Int.max {
                            badRLE[c] = i
                        }
                    default:
                        break
                    }
                    (base + i).initialize(to: COCOAnnotation(
                        id: Int(a.id), imageId: Int(a.image_id), categoryId: Int(a.category_id),
                        bbox: BBox(x: a.bbox.0, y: a.bbox.1, w: a.bbox.2, h: a.bbox.3), area: a.area,
                        iscrowd: a.iscrowd != 0, score: a.score, segmentation: seg))
                }
            }
            initialized = n
        }
        let bad = min(badRLE[0], badRLE[1])
        if bad != Int.max {
            throw KitError.coco(file: path, record: record(bad), problem: "RLE counts string is not valid compressed RLE")
        }
        return out
    }
}

extension COCODataset {
    /// Loads an instances file (pycocotools `COCO(path)`), failing with a `KitError` naming the file,
    /// the record and the problem.
    public static func load(_ path: String) throws -> COCODataset {
        let f = try COCOFile.read(path, kind: .instances)
        return try COCODataset(images: f.images, categories: f.categories, annotations: f.annotations, file: path)
    }
}
