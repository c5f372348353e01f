import Data
import Evaluation
import Foundation
import XCTest

final class COCOEvalTests: XCTestCase {
    static let expected: [String: Any] = {
        let data = try! Data(contentsOf: URL(fileURLWithPath: COCOReference.path("expected.json")))
        return try! JSONSerialization.jsonObject(with: data) as! [String: Any]
    }()

    func run(_ iouType: Params.IouType) throws -> (COCOeval, [String]) {
        let gt = try COCODataset.load(COCOReference.path("instances_gt.json"))
        let dt = try gt.loadRes(COCOReference.path("detections.json"))
        let E = COCOeval(cocoGt: gt, cocoDt: dt, iouType: iouType)
        E.evaluate()
        E.accumulate()
        let lines = E.summarize()
        return (E, lines)
    }

    func check(_ iouType: Params.IouType) throws {
        let (E, lines) = try run(iouType)
        let exp = Self.expected[iouType.rawValue] as! [String: Any]
        let stats = exp["stats"] as! [Double]
        XCTAssertEqual(E.stats.count, 12)
        for (i, (a, b)) in zip(E.stats, stats).enumerated() {
            XCTAssertEqual(a, b, accuracy: 1e-9, "\(iouType) stat \(i)")
        }
        XCTAssertEqual(lines, exp["summary_lines"] as! [String])
        let perCat = exp["per_category_ap"] as! [String: Any]
        let ours = E.perCategoryAP()
        XCTAssertEqual(ours.count, perCat.count)
        for (key, v) in perCat {
            let got = try XCTUnwrap(ours[Int(key)!], "category \(key)")
            if let v = v as? Double {
                XCTAssertEqual(got, v, accuracy: 1e-9, "\(iouType) AP of category \(key)")
            } else {
                XCTAssertTrue(got.isNaN, "\(iouType) AP of category \(key) should be NaN, got \(got)")
            }
        }
    }

    func testBboxMatchesPycocotools() throws { try check(.bbox) }
    func testSegmMatchesPycocotools() throws { try check(.segm) }

    func testThresholdsAreNumpyLinspace() {
        let p = Params(iouType: .bbox)
        // Literals (Foundation's JSON reader on Linux is not correctly rounded): expected.json's iouThrs_values.
        XCTAssertEqual(p.iouThrs, [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.8999999999999999, 0.95])
        XCTAssertEqual(p.iouThrs[8], 0.8999999999999999)
        XCTAssertEqual(p.recThrs.count, 101)
        XCTAssertEqual(p.recThrs[35], 0.35000000000000003)
        XCTAssertEqual(p.recThrs[100], 1.0)
    }

    /// maxDets applies per image and category: with maxDets [1] only each pair's best detection counts.
    func testMaxDetsPerImageAndCategory() throws {
        let gt = try COCODataset(
            images: [COCOImage(id: 1, width: 100, height: 100, fileName: "a.jpg")],
            categories: [COCOCategory(id: 1, name: "a"), COCOCategory(id: 2, name: "b")],
            annotations: [
                COCOAnnotation(id: 1, imageId: 1, categoryId: 1, bbox: BBox(x: 0, y: 0, w: 10, h: 10), area: 100),
                COCOAnnotation(id: 2, imageId: 1, categoryId: 2, bbox: BBox(x: 50, y: 50, w: 10, h: 10), area: 100),
            ])
        let dt = try gt.loadRes([
            COCOResult(imageId: 1, categoryId: 1, score: 0.9, bbox: BBox(x: 0, y: 0, w: 10, h: 10)),
            COCOResult(imageId: 1, categoryId: 2, score: 0.8, bbox: BBox(x: 50, y: 50, w: 10, h: 10)),
        ])
        let E = COCOeval(cocoGt: gt, cocoDt: dt, iouType: .bbox)
        E.evaluate(); E.accumulate(); E.summarize()
        XCTAssertEqual(E.stats[6], 1.0, "AR1 counts one detection per image *and category*")
        XCTAssertEqual(E.perCategoryAP()[1]!, 1.0 - 2.220446049250313e-16, accuracy: 1e-15)
    }

    /// Masks are pycocotools' UInt32 runs over h·w pixels. An image of 2^40 a side loaded and gave segm AP 0.847 for
    /// detections equal to the ground truth (x·h + y and h·w wrapped); such sizes are refused now, and up to the
    /// limit (2^20 a side, 2^31 pixels) the arithmetic is exact: the far corner of the largest image still scores 1.
    func testSegmAPIsExactUpToTheImageSizeLimit() throws {
        func square(_ x: Double, _ y: Double, _ s: Double) -> COCOPolygons { COCOPolygons([[x, y, x + s, y, x + s, y + s, x, y + s]]) }
        let cats = [COCOCategory(id: 1, name: "a")]
        for (w, h) in [(1 << 40, 64), (64, 1 << 40), (1 << 40, 1 << 40)] {
            XCTAssertThrowsError(try COCODataset(images: [COCOImage(id: 1, width: w, height: h, fileName: "a.jpg")], categories: cats,
                                                 annotations: [])) { e in
                XCTAssertTrue("\(e)".contains("limit"), "\(e)")
            }
        }
        let w = 1 << 20, h = 1 << 11, W = Double(w), H = Double(h)
        let masks = [square(3, 4, 20), square(W - 40, H - 30, 25), square(W / 2, 7, 30), square(W - 33, 2, 31)]
        let gt = try COCODataset(
            images: [COCOImage(id: 1, width: w, height: h, fileName: "a.jpg")], categories: cats,
            annotations: masks.enumerated().map { i, m in
                COCOAnnotation(id: i + 1, imageId: 1, categoryId: 1, bbox: BBox(x: m.coordinates.first!, y: m.coordinates.dropFirst().first!, w: 20, h: 20),
                               area: 400, segmentation: .polygons(m))
            })
        let dt = try gt.loadRes(masks.enumerated().map { i, m in
            COCOResult(imageId: 1, categoryId: 1, score: 0.9 - 0.1 * Double(i), segmentation: .polygons(m))
        })
        XCTAssertEqual(dt.annotations.map(\.area), [400, 625, 900, 961])
        let E = COCOeval(cocoGt: gt, cocoDt: dt, iouType: .segm)
        E.evaluate(); E.accumulate(); E.summarize()
        XCTAssertEqual(E.stats[0], 1.0, accuracy: 1e-12)
        XCTAssertEqual(E.stats[8], 1.0, accuracy: 1e-12)
    }

    /// A result RLE whose runs stop before the last pixel, against a crowd RLE: det-eval --iou-type segm hung in the
    /// mask IoU (found by fuzzing results files). It is kept with a warning and the rest of it is background.
    func testShortResultRLEDoesNotHang() throws {
        let gt = try COCODataset(
            images: [COCOImage(id: 20, width: 6, height: 3, fileName: "b.jpg")], categories: [COCOCategory(id: 1, name: "a")],
            annotations: [COCOAnnotation(id: 8, imageId: 20, categoryId: 1, bbox: BBox(x: 1, y: 0, w: 1, h: 3), area: 3, iscrowd: true,
                                         segmentation: .rle(RLE(h: 3, w: 6, counts: [3, 3, 12])))])
        let dt = try gt.loadRes([COCOResult(imageId: 20, categoryId: 1, score: 0.75, segmentation: .rle(RLE(h: 3, w: 6, counts: [1, 3, 12])))])
        XCTAssertEqual(dt.warnings.count, 1)
        let E = COCOeval(cocoGt: gt, cocoDt: dt, iouType: .segm)
        E.evaluate(); E.accumulate(); E.summarize()
        XCTAssertEqual(E.stats[0], -1)  // the only gt is a crowd: nothing to find
    }

    /// A training loop hands detections over in memory: same numbers as from the file.
    func testInMemoryDetectionsMatchTheFile() throws {
        let gt = try COCODataset.load(COCOReference.path("instances_gt.json"))
        let fromFile = try gt.loadRes(COCOReference.path("detections.json"))
        let results = fromFile.annotations.map {
            COCOResult(imageId: $0.imageId, categoryId: $0.categoryId, score: $0.score, bbox: $0.bbox,
                       segmentation: $0.segmentation)
        }
        let inMemory = try gt.loadRes(results)
        for type in [Params.IouType.bbox, .segm] {
            let a = COCOeval(cocoGt: gt, cocoDt: fromFile, iouType: type)
            let b = COCOeval(cocoGt: gt, cocoDt: inMemory, iouType: type)
            for E in [a, b] { E.evaluate(); E.accumulate(); E.summarize() }
            XCTAssertEqual(a.stats, b.stats)
        }
    }

    /// evalImgs keeps pycocotools' layout: category-major, then area range, then image.
    func testEvalImgsLayout() throws {
        let gt = try COCODataset(
            images: [COCOImage(id: 3, width: 100, height: 100, fileName: ""), COCOImage(id: 1, width: 100, height: 100, fileName: "")],
            categories: [COCOCategory(id: 1, name: "a")],
            annotations: [
                COCOAnnotation(id: 11, imageId: 3, categoryId: 1, bbox: BBox(x: 0, y: 0, w: 10, h: 10), area: 100),
                COCOAnnotation(id: 12, imageId: 3, categoryId: 1, bbox: BBox(x: 0, y: 0, w: 50, h: 50), area: 2500),
            ])
        let dt = try gt.loadRes([COCOResult(imageId: 3, categoryId: 1, score: 0.5, bbox: BBox(x: 0, y: 0, w: 10, h: 10))])
        let E = COCOeval(cocoGt: gt, cocoDt: dt, iouType: .bbox)
        E.evaluate()
        let imgs = E.evalImgs
        XCTAssertEqual(imgs.count, 1 * 4 * 2)
        XCTAssertNil(imgs[0], "image 1 (sorted first) has nothing")
        let all = try XCTUnwrap(imgs[1])
        XCTAssertEqual(all.imageId, 3)
        XCTAssertEqual(all.gtIds, [11, 12])
        XCTAssertEqual(all.dtMatches, [Int](repeating: 11, count: 10))
        XCTAssertEqual(all.gtMatches.count, 20)
        // Area "small" (index 1): gt 12 (2500) is ignored and goes last.
        let small = try XCTUnwrap(imgs[1 * 2 + 1])
        XCTAssertEqual(small.aRng, [0, 1024])
        XCTAssertEqual(small.gtIgnore, [false, true])
        // Area "medium": gt 11 is ignored and moves behind gt 12; the detection matches the ignored
        // gt 11, so it is ignored too.
        let medium = try XCTUnwrap(E.evalImg(categoryIndex: 0, areaIndex: 2, imageIndex: 1))
        XCTAssertEqual(medium.gtIds, [12, 11])
        XCTAssertEqual(medium.dtMatches, [Int](repeating: 11, count: 10))
        XCTAssertEqual(medium.dtIgnore, [Bool](repeating: true, count: 10))
    }

    /// Non-default parameters against pycocotools 2.0.11 run here on the reference data (numbers
    /// printed by `COCOeval` with the same settings): useCats = 0, and a subset of images and
    /// categories with maxDets [5, 20, 50] (stats[0] asks for maxDets=100, absent, so -1).
    func testNonDefaultParamsMatchPycocotools() throws {
        let expected: [String: [Double]] = [
            "bbox_nocats": [0.3709688251262434, 0.5776732591251479, 0.4221549925070249, 0.33199362144937816, 0.43220139743860664, 0.432470198393618, 0.11412911084043846, 0.3981729598051157, 0.47028014616321556, 0.4164241164241164, 0.5228215767634855, 0.5641666666666667],
            "bbox_subset": [-1.0, 0.30271521457487877, 0.15355778969640355, 0.1534994285217754, 0.273016158758733, 0.13717821782178216, 0.25709617180205413, 0.25709617180205413, 0.25709617180205413, 0.24363636363636362, 0.31029411764705883, 0.20555555555555557],
            "segm_nocats": [0.22945493494391278, 0.44608721531125745, 0.21053517635720664, 0.19110058514426234, 0.29030398300055055, 0.31195935924540336, 0.0876979293544458, 0.3170523751522533, 0.36930572472594403, 0.3091476091476092, 0.42987551867219914, 0.4766666666666667],
            "segm_subset": [-1.0, 0.21342224889573408, 0.07328532853285327, 0.1237584685508263, 0.12645341845108876, 0.07057755775577557, 0.18678804855275438, 0.18678804855275438, 0.18678804855275438, 0.19333333333333338, 0.18431372549019606, 0.13333333333333333],
        ]
        let gt = try COCODataset.load(COCOReference.path("instances_gt.json"))
        let dt = try gt.loadRes(COCOReference.path("detections.json"))
        for type in [Params.IouType.bbox, .segm] {
            let noCats = COCOeval(cocoGt: gt, cocoDt: dt, iouType: type)
            noCats.params.useCats = false
            let subset = COCOeval(cocoGt: gt, cocoDt: dt, iouType: type)
            subset.params.maxDets = [5, 20, 50]
            subset.params.imgIds = stride(from: 0, to: subset.params.imgIds.count, by: 2).map { subset.params.imgIds[$0] }
            subset.params.catIds = [1, 3, 7, 24]
            for (name, E) in [("nocats", noCats), ("subset", subset)] {
                E.evaluate(); E.accumulate(); E.summarize()
                let exp = expected["\(type.rawValue)_\(name)"]!
                for i in 0..<12 { XCTAssertEqual(E.stats[i], exp[i], accuracy: 1e-12, "\(type) \(name) stat \(i)") }
            }
        }
    }
}
