import Data
import Foundation
import XCTest

final class MaskAPITests: XCTestCase {
    /// Every GT annotation's annToRLE must equal pycocotools': compressed counts, area and box.
    func testAnnToRLEMatchesPycocotools() throws {
        let coco = try COCODataset.load(COCOReference.path("instances_gt.json"))
        let data = try Data(contentsOf: URL(fileURLWithPath: COCOReference.path("gt_rle.json")))
        let root = try XCTUnwrap(JSONSerialization.jsonObject(with: data) as? [String: Any])
        let anns = try XCTUnwrap(root["annotations"] as? [[String: Any]])
        XCTAssertEqual(anns.count, coco.annotations.count)
        var mismatches = 0
        for ref in anns {
            let id = ref["id"] as! Int
            let ann = try XCTUnwrap(coco.annotation(id: id))
            let rle = coco.annToRLE(ann)
            let size = ref["size"] as! [Int]
            XCTAssertEqual([rle.h, rle.w], size, "annotation \(id)")
            if rle.toString() != ref["counts"] as! String { mismatches += 1; XCTFail("counts differ for annotation \(id)") }
            XCTAssertEqual(rle.area, ref["mask_area"] as! Int, "area of annotation \(id)")
            XCTAssertEqual(rle.toBbox().array, ref["mask_bbox"] as! [Double], "bbox of annotation \(id)")
            let back = try XCTUnwrap(MaskAPI.rleFrString(ref["counts"] as! String, h: size[0], w: size[1]))
            XCTAssertEqual(back, rle, "rleFrString of annotation \(id)")
        }
        XCTAssertEqual(mismatches, 0)
    }

    func testEncodeDecodeRoundTrip() {
        // 3x4 column-major mask.
        let m: [UInt8] = [0, 1, 1,  1, 1, 0,  0, 0, 0,  1, 1, 1]
        let r = MaskAPI.rleEncode(m, h: 3, w: 4)
        XCTAssertEqual(r.counts, [1, 4, 4, 3])
        XCTAssertEqual(r.decode(), m)
        XCTAssertEqual(r.area, 7)
        XCTAssertEqual(r.toBbox(), BBox(x: 0, y: 0, w: 4, h: 3))
        let empty = MaskAPI.rleEncode([UInt8](repeating: 0, count: 12), h: 3, w: 4)
        XCTAssertEqual(empty.counts, [12])
        XCTAssertEqual(empty.toBbox(), BBox(x: 0, y: 0, w: 0, h: 0))
    }

    func testMergeAndIou() {
        let a = MaskAPI.rleEncode([1, 1, 0, 0,  1, 1, 0, 0], h: 4, w: 2)
        let b = MaskAPI.rleEncode([0, 1, 1, 0,  0, 1, 1, 0], h: 4, w: 2)
        XCTAssertEqual(MaskAPI.rleMerge([a, b]).decode(), [1, 1, 1, 0, 1, 1, 1, 0])
        XCTAssertEqual(MaskAPI.rleMerge([a, b], intersect: true).decode(), [0, 1, 0, 0, 0, 1, 0, 0])
        XCTAssertEqual(MaskAPI.rleIou([a], [b], iscrowd: [false]), [2.0 / 6.0])
        // Crowd: intersection over the detection's area.
        XCTAssertEqual(MaskAPI.rleIou([a], [b], iscrowd: [true]), [2.0 / 4.0])
        XCTAssertEqual(MaskAPI.bbIou([BBox(x: 0, y: 0, w: 2, h: 2)], [BBox(x: 1, y: 0, w: 2, h: 2)], iscrowd: nil), [2.0 / 6.0])
    }

    func testStringRoundTripAndRejects() {
        let r = RLE(h: 100, w: 100, counts: [5, 17, 300, 1, 0, 9000 - 323, 1000])
        XCTAssertEqual(MaskAPI.rleFrString(r.toString(), h: 100, w: 100), r)
        XCTAssertNil(MaskAPI.rleFrString("ab~", h: 10, w: 10))
        XCTAssertNil(MaskAPI.rleFrString("o", h: 10, w: 10), "a string ending inside a count")
    }

    func testFrBboxIsTheBoxPolygon() {
        let r = MaskAPI.rleFrBbox(BBox(x: 1, y: 1, w: 2, h: 3), h: 6, w: 5)
        XCTAssertEqual(r.area, 6)
        XCTAssertEqual(r.toBbox(), BBox(x: 1, y: 1, w: 2, h: 3))
    }
}
