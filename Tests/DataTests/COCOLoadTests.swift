import Data
import Foundation
import XCTest

/// Loading COCO files: the reference data set, the model's indexes, and every kind of bad input.
final class COCOLoadTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("coco-load-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: dir)
    }

    func write(_ name: String, _ text: String) throws -> String {
        let url = dir.appendingPathComponent(name)
        try text.write(to: url, atomically: true, encoding: .utf8)
        return url.path
    }

    /// Two images (ids 10: 4x5, 20: 6x3), two categories (1, 5).
    func instances(annotations: String) -> String {
        """
        {"images": [{"id": 10, "width": 4, "height": 5, "file_name": "a.jpg"},
                    {"id": 20, "width": 6, "height": 3, "file_name": "b.jpg"}],
         "categories": [{"id": 5, "name": "cat", "supercategory": "animal"}, {"id": 1, "name": "person"}],
         "annotations": [\(annotations)]}
        """
    }

    let goodAnn = #"{"id": 7, "image_id": 10, "category_id": 5, "bbox": [0, 0, 2, 2], "area": 4, "iscrowd": 0, "segmentation": [[0, 0, 2, 0, 2, 2]]}"#

    func loadError(_ text: String, file: String = "gt.json") throws -> String {
        let path = try write(file, text)
        do {
            _ = try COCODataset.load(path)
        } catch let e as KitError {
            XCTAssertTrue(e.description.hasPrefix(path), "message should start with the file: \(e)")
            return e.description
        }
        XCTFail("expected an error")
        return ""
    }

    func resultsError(_ text: String) throws -> String {
        let gt = try COCODataset.load(try write("gt.json", instances(annotations: goodAnn)))
        let path = try write("res.json", text)
        do {
            _ = try gt.loadRes(path)
        } catch let e as KitError {
            XCTAssertTrue(e.description.hasPrefix(path), "message should start with the file: \(e)")
            return e.description
        }
        XCTFail("expected an error")
        return ""
    }

    func assertContains(_ s: String, _ parts: String..., line: UInt = #line) {
        for p in parts { XCTAssertTrue(s.contains(p), "'\(s)' should contain '\(p)'", line: line) }
    }

    // MARK: good input

    func testReferenceDataset() throws {
        let coco = try COCODataset.load(COCOReference.path("instances_gt.json"))
        XCTAssertEqual(coco.images.count, 200)
        XCTAssertEqual(coco.categories.count, 10)
        XCTAssertEqual(coco.annotations.count, 862)
        XCTAssertEqual(coco.categoryIds, [1, 2, 3, 5, 7, 9, 11, 16, 18, 24])
        XCTAssertEqual(coco.labelOfCategory[24], 9)
        XCTAssertEqual(coco.categoryId(forLabel: 3), 5)
        let crowd = coco.annotations.filter(\.iscrowd)
        XCTAssertEqual(crowd.count, 41)
        XCTAssertTrue(crowd.allSatisfy { if case .rle = $0.segmentation { return true } else { return false } })
        let multi = coco.annotations.filter { if case .polygons(let p) = $0.segmentation { return p.lengths.count > 1 } else { return false } }
        XCTAssertEqual(multi.count, 103)
        XCTAssertEqual(coco.annotationIndices(categoryId: 1).count, coco.annotations.filter { $0.categoryId == 1 }.count)
        XCTAssertEqual(coco.images.filter { coco.annotationIndices(imageId: $0.id).isEmpty }.count, 22)
        let dt = try coco.loadRes(COCOReference.path("detections.json"))
        XCTAssertEqual(dt.annotations.count, 1448)
        XCTAssertEqual(dt.annotations.map(\.id), Array(1...1448))
        for d in dt.annotations { XCTAssertEqual(d.area, d.bbox.w * d.bbox.h) }
    }

    func testModelAndIndexes() throws {
        let anns = [
            goodAnn,
            #"{"id": 8, "image_id": 20, "category_id": 1, "bbox": [1, 0, 1, 3], "area": 3, "iscrowd": true, "segmentation": {"counts": [3, 3, 12], "size": [3, 6]}}"#,
            #"{"id": 3, "image_id": 10, "category_id": 1, "bbox": [0, 0, 1, 1], "area": 1, "segmentation": {"counts": "52=", "size": [5, 4]}}"#,
            #"{"id": 4, "image_id": 10, "category_id": 5, "bbox": [0.5, 0.5, 1.5, 2], "area": 2.25, "iscrowd": 0, "segmentation": [[0, 0, 2, 0, 2, 2], [3, 3, 4, 3, 4, 4, 3, 4]]}"#,
        ]
        let coco = try COCODataset.load(try write("gt.json", instances(annotations: anns.joined(separator: ","))))
        XCTAssertEqual(coco.image(id: 20), COCOImage(id: 20, width: 6, height: 3, fileName: "b.jpg"))
        XCTAssertEqual(coco.category(id: 1), COCOCategory(id: 1, name: "person", supercategory: ""))
        XCTAssertEqual(coco.categoryIds, [1, 5])
        XCTAssertEqual(Array(coco.annotationIndices(imageId: 10)), [0, 2, 3])
        XCTAssertEqual(Array(coco.annotationIndices(categoryId: 1)), [1, 2])
        let crowd = try XCTUnwrap(coco.annotation(id: 8))
        XCTAssertTrue(crowd.iscrowd)
        XCTAssertEqual(crowd.segmentation, .rle(RLE(h: 3, w: 6, counts: [3, 3, 12])))
        XCTAssertEqual(coco.annotation(id: 3)?.segmentation, .rle(RLE(h: 5, w: 4, counts: [5, 2, 13])))
        guard case .polygons(let p) = coco.annotation(id: 4)?.segmentation else { return XCTFail("polygons") }
        XCTAssertEqual(p.polygons.map(Array.init), [[0, 0, 2, 0, 2, 2], [3, 3, 4, 3, 4, 4, 3, 4]])
        XCTAssertEqual(coco.annotation(id: 4)?.bbox, BBox(x: 0.5, y: 0.5, w: 1.5, h: 2))
        XCTAssertEqual(coco.annToRLE(crowd).area, 3)
        XCTAssertTrue(coco.warnings.isEmpty)
    }

    func testSegmResultsTakeAreaAndBoxFromTheMask() throws {
        let gt = try COCODataset.load(try write("gt.json", instances(annotations: goodAnn)))
        // 5x4 mask, pixels 5..6 set: column 1, rows 0-1.
        let dt = try gt.loadRes(try write("res.json", #"[{"image_id": 10, "category_id": 5, "score": 0.5, "segmentation": {"size": [5, 4], "counts": "52="}}]"#))
        XCTAssertEqual(dt.annotations[0].area, 2)
        XCTAssertEqual(dt.annotations[0].bbox, BBox(x: 1, y: 0, w: 1, h: 2))
        XCTAssertEqual(dt.annotations[0].id, 1)
        XCTAssertFalse(dt.annotations[0].iscrowd)
    }

    func testZeroSizeDetectionIsKeptWithAWarning() throws {
        let gt = try COCODataset.load(try write("gt.json", instances(annotations: goodAnn)))
        let dt = try gt.loadRes(try write("res.json", #"[{"image_id": 10, "category_id": 5, "score": 0.5, "bbox": [1, 1, 0, 2]}]"#))
        XCTAssertEqual(dt.annotations.count, 1)
        XCTAssertEqual(dt.warnings.count, 1)
        assertContains(dt.warnings[0], "1 results with a zero-size box")
    }

    // MARK: bad instances files

    func testMissingFile() throws {
        do {
            _ = try COCODataset.load(dir.appendingPathComponent("nope.json").path)
            XCTFail("expected an error")
        } catch let e as KitError {
            assertContains(e.description, "nope.json", "cannot read file")
        }
    }

    func testMalformedJSON() throws {
        assertContains(try loadError(#"{"images": [{"id": 1, "width": 4"#), "invalid JSON")
        assertContains(try loadError(instances(annotations: #"{"id": 7, "image_id": 10,, "area": 1}"#)), "invalid JSON")
        assertContains(try loadError(instances(annotations: goodAnn) + " []"), "invalid JSON")
    }

    func testWrongTypes() throws {
        assertContains(try loadError("[]"), "top level must be an object")
        assertContains(try loadError(#"{"images": {}}"#), "\"images\" must be an array, got an object")
        // COCO writes "id" last: the message still names it.
        assertContains(try loadError(instances(annotations: #"{"bbox": "0 0 2 2", "image_id": 10, "category_id": 5, "area": 4, "id": 123}"#)),
                       "annotations[0] (id 123)", "\"bbox\" must be an array of 4 numbers, got a string")
        assertContains(try loadError(instances(annotations: goodAnn + "," + #"{"id": 9, "image_id": "10", "category_id": 5, "bbox": [0, 0, 1, 1], "area": 1}"#)),
                       "annotations[1] (id 9)", "\"image_id\" must be an integer, got a string")
        assertContains(try loadError(instances(annotations: #"{"id": 9, "image_id": 10, "category_id": 5, "bbox": [0, 0, 1], "area": 1}"#)),
                       "annotations[0] (id 9)", "got 3")
        assertContains(try loadError(instances(annotations: #"{"id": 9, "image_id": 10, "category_id": 5, "bbox": [0, 0, 1, 1], "area": 1, "segmentation": [[0, 0, "a", 1, 1, 1]]}"#)),
                       "annotations[0] (id 9)", "segmentation")
        assertContains(try loadError(#"{"images": [{"id": 1, "width": 4.5, "height": 3}]}"#), "images[0] (id 1)", "\"width\" must be an integer")
        assertContains(try loadError(instances(annotations: "17")), "annotations[0]", "must be an object, got an integer")
    }

    func testMissingRequiredFields() throws {
        assertContains(try loadError(instances(annotations: goodAnn + "," + #"{"id": 8, "image_id": 10, "category_id": 5, "bbox": [0, 0, 1, 1]}"#)),
                       "annotations[1] (id 8)", "missing required field \"area\"")
        assertContains(try loadError(#"{"images": [{"id": 1, "width": 4}]}"#), "images[0] (id 1)", "missing required field \"height\"")
        assertContains(try loadError(#"{"categories": [{"id": 1}]}"#), "categories[0]", "missing required field \"name\"")
    }

    func testUnknownReferencesAndDuplicates() throws {
        assertContains(try loadError(instances(annotations: #"{"id": 9, "image_id": 99, "category_id": 5, "bbox": [0, 0, 1, 1], "area": 1}"#)),
                       "annotations[0] (id 9)", "image_id 99 is not in \"images\"")
        assertContains(try loadError(instances(annotations: #"{"id": 9, "image_id": 10, "category_id": 2, "bbox": [0, 0, 1, 1], "area": 1}"#)),
                       "annotations[0] (id 9)", "category_id 2 is not in \"categories\"")
        assertContains(try loadError(instances(annotations: goodAnn + "," + goodAnn)), "annotations[1] (id 7)", "duplicate annotation id 7")
    }

    func testBadBoxesAndAreas() throws {
        assertContains(try loadError(instances(annotations: #"{"id": 9, "image_id": 10, "category_id": 5, "bbox": [0, 0, -1, 1], "area": 1}"#)),
                       "annotations[0] (id 9)", "negative width or height")
        assertContains(try loadError(instances(annotations: #"{"id": 9, "image_id": 10, "category_id": 5, "bbox": [0, 0, 3, 0], "area": 1}"#)),
                       "annotations[0] (id 9)", "zero width or height")
        assertContains(try loadError(instances(annotations: #"{"id": 9, "image_id": 10, "category_id": 5, "bbox": [0, 0, 3, 1], "area": -2}"#)),
                       "annotations[0] (id 9)", "area -2.0")
    }

    func testBadMasks() throws {
        assertContains(try loadError(instances(annotations: #"{"id": 9, "image_id": 10, "category_id": 5, "bbox": [0, 0, 1, 1], "area": 1, "segmentation": [[0, 0, 1, 1]]}"#)),
                       "annotations[0] (id 9)", "has 2 points; a polygon needs at least 3")
        assertContains(try loadError(instances(annotations: #"{"id": 9, "image_id": 10, "category_id": 5, "bbox": [0, 0, 1, 1], "area": 1, "segmentation": [[0, 0, 1, 1, 2, 2, 3]]}"#)),
                       "odd number of coordinates")
        assertContains(try loadError(instances(annotations: #"{"id": 9, "image_id": 10, "category_id": 5, "bbox": [0, 0, 1, 1], "area": 1, "iscrowd": 1, "segmentation": {"counts": [1, 2, 17], "size": [4, 5]}}"#)),
                       "annotations[0] (id 9)", "RLE size [4, 5] does not match image 10 size [5, 4]")
        assertContains(try loadError(instances(annotations: #"{"id": 9, "image_id": 10, "category_id": 5, "bbox": [0, 0, 1, 1], "area": 1, "iscrowd": 1, "segmentation": {"counts": [1, 2, 30], "size": [5, 4]}}"#)),
                       "RLE counts cover 33 pixels")
        assertContains(try loadError(instances(annotations: #"{"id": 9, "image_id": 10, "category_id": 5, "bbox": [0, 0, 1, 1], "area": 1, "iscrowd": 1, "segmentation": {"counts": "5~", "size": [5, 4]}}"#)),
                       "annotations[0] (id 9)", "not valid compressed RLE")
        assertContains(try loadError(instances(annotations: #"{"id": 9, "image_id": 10, "category_id": 5, "bbox": [0, 0, 1, 1], "area": 1, "iscrowd": 1, "segmentation": {"size": [5, 4]}}"#)),
                       "RLE has no \"counts\"")
        // Runs ending early are kept (pycocotools does), counted in the warnings.
        let coco = try COCODataset.load(try write("short.json", instances(annotations: #"{"id": 9, "image_id": 10, "category_id": 5, "bbox": [0, 0, 1, 1], "area": 1, "iscrowd": 1, "segmentation": {"counts": [1, 2], "size": [5, 4]}}"#)))
        XCTAssertEqual(coco.warnings.count, 1)
    }

    // MARK: sizes from the file

    /// One image (id 10) of the given size, category 5.
    func instances(width: Int, height: Int, annotations: String = "") -> String {
        """
        {"images": [{"id": 10, "width": \(width), "height": \(height), "file_name": "a.jpg"}],
         "categories": [{"id": 5, "name": "cat"}], "annotations": [\(annotations)]}
        """
    }

    func rleAnnotation(h: Int, w: Int, counts: String = "[0, 1]") -> String {
        #"{"id": 9, "image_id": 10, "category_id": 5, "bbox": [0, 0, 1, 1], "area": 1, "iscrowd": 1, "segmentation": {"counts": \#(counts), "size": [\#(h), \#(w)]}}"#
    }

    /// An RLE of (2^32 + 1) x 2^32 on an image of that size: h·w wrapped to 2^32, the file loaded and det-eval hung.
    /// Now the image is refused at load time, named with its record, and so is any RLE size out of range.
    func testHugeRLESizeIsRefused() throws {
        let h = (1 << 32) + 1, w = 1 << 32
        assertContains(try loadError(instances(width: w, height: h, annotations: rleAnnotation(h: h, w: w))),
                       "images[0] (id 10)", "image size 4294967296 x 4294967297", "limit")
        for (rh, rw) in [(h, w), (-1, 4), (5, -4), (Int.max, 2), (1 << 40, 1 << 40)] {
            assertContains(try loadError(instances(annotations: rleAnnotation(h: rh, w: rw))),
                           "annotations[0] (id 9)", "RLE size [\(rh), \(rw)]")
        }
        // Counts must not cover more than h·w pixels, however large they are.
        assertContains(try loadError(instances(annotations: rleAnnotation(h: 5, w: 4, counts: "[4294967295, 4294967295, 4294967295]"))),
                       "annotations[0] (id 9)", "RLE counts cover 12884901885 pixels")
        assertContains(try resultsError(#"[{"image_id": 10, "category_id": 5, "score": 0.5, "segmentation": {"size": [\#(h), \#(w)], "counts": [0, 1]}}]"#),
                       "results[0] (id 1)", "RLE size [\(h), \(w)]")
    }

    /// An image of 2^40 pixels a side loaded, and segm AP came out 0.847 for detections equal to the ground truth:
    /// masks are pycocotools' UInt32 runs, and h·w (and x·h + y inside rleFrPoly) wrapped. Images are now limited
    /// to COCODataset.maxImageSide a side and COCODataset.maxImagePixels in all, where the UInt32 arithmetic is exact.
    func testImageSizesBeyondTheLimitAreRefused() throws {
        // The documented limits: 2^20 a side, 2^31 pixels.
        for (w, h) in [(1 << 40, 5), (4, 1 << 40), (1 << 40, 1 << 40), ((1 << 20) + 1, 1), (1 << 20, (1 << 11) + 1)] {
            assertContains(try loadError(instances(width: w, height: h, annotations: goodAnn)),
                           "images[0] (id 10)", "image size \(w) x \(h)", "limit")
        }
        assertContains(try loadError(instances(width: 0, height: 5)), "images[0] (id 10)", "not positive")
        assertContains(try loadError(instances(width: -4, height: 5)), "images[0] (id 10)", "not positive")
        // At the limit the file loads.
        let side = 1 << 20, other = 1 << 11
        XCTAssertNoThrow(try COCODataset.load(try write("edge.json", instances(width: side, height: other, annotations: goodAnn))))
    }

    /// Polygon coordinates far outside the image made the rasteriser walk (and once allocate) for every 1/5 pixel on the
    /// way; a results file's polygons were rasterised before any check (1e300 trapped converting to Int).
    func testPolygonsFarOutsideTheImageAreRefused() throws {
        let far = #"{"id": 9, "image_id": 10, "category_id": 5, "bbox": [0, 0, 1, 1], "area": 1, "segmentation": [[0, 0, 9000000, 0, 9000000, 9000000]]}"#
        assertContains(try loadError(instances(annotations: far)), "annotations[0] (id 9)", "coordinate 9000000")
        assertContains(try resultsError(#"[{"image_id": 10, "category_id": 5, "score": 0.5, "segmentation": [[0, 0, 1e300, 0, 2, 2]]}]"#),
                       "results[0] (id 1)", "coordinate")
        assertContains(try resultsError(#"[{"image_id": 10, "category_id": 5, "score": 0.5, "segmentation": [[0, 0, 2, 0]]}]"#),
                       "results[0] (id 1)", "at least 3")
        // Up to an image's size outside it on each side is fine (pycocotools clips while rasterising).
        let near = #"{"id": 9, "image_id": 10, "category_id": 5, "bbox": [0, 0, 1, 1], "area": 1, "segmentation": [[-4, -5, 8, -5, 8, 10]]}"#
        XCTAssertNoThrow(try COCODataset.load(try write("near.json", instances(annotations: near))))
    }

    /// A ground truth without images or annotations made loadRes blame the results file ("image_id 10 is not an
    /// image of the ground truth"); the message now names the ground-truth file.
    func testEmptyGroundTruthIsNamed() throws {
        let res = try write("res.json", #"[{"image_id": 10, "category_id": 5, "score": 0.5, "bbox": [0, 0, 1, 1]}]"#)
        for (name, text) in [("empty.json", "{}"), ("sections.json", #"{"images": [], "annotations": [], "categories": []}"#),
                             ("noanns.json", instances(width: 4, height: 5))] {
            let gtPath = try write(name, text)
            let gt = try COCODataset.load(gtPath)
            XCTAssertThrowsError(try gt.loadRes(res), name) { e in
                let m = "\(e)"
                XCTAssertTrue(m.hasPrefix(gtPath), "message should start with the ground-truth file: \(m)")
                XCTAssertFalse(m.contains("res.json"), m)
                XCTAssertTrue(m.contains("no annotations") || m.contains("no images"), m)
            }
        }
    }

    // MARK: bad results files

    func testBadResults() throws {
        assertContains(try resultsError("[]"), "contains no results")
        assertContains(try resultsError(#"{"image_id": 10}"#), "results must be an array of objects, got an object")
        assertContains(try resultsError(#"[{"image_id": 10, "category_id": 5, "score": NaN, "bbox": [0, 0, 1, 1]}]"#), "invalid JSON", "line 1", "'NaN' is not JSON")
        assertContains(try resultsError(#"[{"image_id": 10, "category_id": 5, "score": 0.5, "bbox": [0, 0, 1, 1]}, {"image_id": 77, "category_id": 5, "score": 0.5, "bbox": [0, 0, 1, 1]}]"#),
                       "results[1] (id 2)", "image_id 77 is not an image of the ground truth")
        assertContains(try resultsError(#"[{"image_id": 10, "category_id": 3, "score": 0.5, "bbox": [0, 0, 1, 1]}]"#),
                       "results[0] (id 1)", "category_id 3 is not in \"categories\"")
        assertContains(try resultsError(#"[{"image_id": 10, "category_id": 5, "score": -0.5, "bbox": [0, 0, 1, 1]}]"#),
                       "results[0] (id 1)", "score -0.5")
        assertContains(try resultsError(#"[{"image_id": 10, "category_id": 5, "bbox": [0, 0, 1, 1]}]"#),
                       "results[0]", "missing required field \"score\"")
        assertContains(try resultsError(#"[{"image_id": 10, "category_id": 5, "score": 0.5, "bbox": [0, 0, 1, 1]}, {"image_id": 10, "category_id": 5, "score": 0.5}]"#),
                       "results[1] (id 2)", "has no \"bbox\"")
        assertContains(try resultsError(#"[{"image_id": 10, "category_id": 5, "score": 0.5, "bbox": [0, 0, -1, 1]}]"#),
                       "results[0] (id 1)", "negative width")
        assertContains(try resultsError(#"[{"image_id": 10, "category_id": 5, "score": 0.5, "segmentation": {"size": [4, 4], "counts": "52="}}]"#),
                       "results[0] (id 1)", "RLE size [4, 4] does not match image 10 size [5, 4]")
        assertContains(try resultsError(#"[{"image_id": 10, "category_id": 5, "score": 0.5, "bbox": [0, 0, 1, 1], "segmentation": {"size": [3, 6], "counts": "52="}}]"#),
                       "does not match image 10")
        assertContains(try resultsError(#"[{"image_id": 10, "category_id": 5, "score": 0.5}]"#), "neither \"bbox\" nor \"segmentation\"")
    }
}
