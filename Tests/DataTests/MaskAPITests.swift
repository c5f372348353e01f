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

    /// rleFrBbox clips the corners to a pixel outside the image before rasterising: the same runs as the unclipped
    /// box polygon (for any box rleFrPoly still takes), and a box of any size costs no more than the image.
    func testFrBboxClippingChangesNoPixel() {
        var g = SystemRandomNumberGenerator()
        for (h, w) in [(5, 4), (7, 9), (1, 1), (12, 3)] {
            let H = Double(h), W = Double(w)
            for _ in 0..<300 {
                let x0 = Double.random(in: -W...(2 * W), using: &g).rounded(toPlaces: 2), y0 = Double.random(in: -H...(2 * H), using: &g).rounded(toPlaces: 2)
                let x1 = Double.random(in: x0...(2 * W), using: &g).rounded(toPlaces: 2), y1 = Double.random(in: y0...(2 * H), using: &g).rounded(toPlaces: 2)
                let box = BBox(x: x0, y: y0, w: x1 - x0, h: y1 - y0)
                let xs = box.x, xe = xs + box.w, ys = box.y, ye = ys + box.h
                XCTAssertEqual(MaskAPI.rleFrBbox(box, h: h, w: w), MaskAPI.rleFrPoly([xs, ys, xs, ye, xe, ye, xe, ys], h: h, w: w), "\(box) in \(w)x\(h)")
            }
        }
        let huge = MaskAPI.rleFrBbox(BBox(x: -1e300, y: -1e300, w: .greatestFiniteMagnitude, h: .greatestFiniteMagnitude), h: 5, w: 4)
        XCTAssertEqual(huge.decode(), [UInt8](repeating: 1, count: 20))
        XCTAssertEqual(MaskAPI.rleFrBbox(BBox(x: 1e300, y: 0, w: 1, h: 1), h: 5, w: 4).area, 0)
    }

    /// An RLE whose runs stop early (kept with a warning) against a full one in rleIou / rleMerge: C's loop never
    /// ends (found by fuzzing results files). The ended mask is background for the rest.
    func testShortRLEsAreBackgroundForTheRest() {
        let short = RLE(h: 3, w: 6, counts: [1, 3, 12])  // pixels 1...3 set, 16 of 18 pixels covered
        let full = RLE(h: 3, w: 6, counts: [3, 3, 12])   // pixels 3...5
        XCTAssertEqual(MaskAPI.rleIou([short], [full], iscrowd: [false]), [1.0 / 5.0])
        XCTAssertEqual(MaskAPI.rleIou([full], [short], iscrowd: [false]), [1.0 / 5.0])
        XCTAssertEqual(MaskAPI.rleIou([short], [full], iscrowd: [true]), [1.0 / 3.0])
        XCTAssertEqual(MaskAPI.rleMerge([short, full]).decode(), zip(short.decode(), full.decode()).map { $0 | $1 })
        XCTAssertEqual(MaskAPI.rleMerge([full, short], intersect: true).decode(), zip(short.decode(), full.decode()).map { $0 & $1 })
        XCTAssertEqual(MaskAPI.rleMerge([RLE(h: 3, w: 6, counts: []), full]).decode(), full.decode())
        // Equal lengths, zero-length runs included, are unchanged (C's results).
        XCTAssertEqual(MaskAPI.rleIou([RLE(h: 3, w: 6, counts: [0, 2, 0, 16])], [full], iscrowd: [false]), [3.0 / 18.0])
        XCTAssertEqual(MaskAPI.rleMerge([full, full]), full)
    }

    /// Sizes and counts the 32-bit arithmetic cannot hold are refused, not wrapped.
    func testOutOfRangeSizesAndCounts() {
        XCTAssertEqual(MaskAPI.rleDecode(RLE(h: -1, w: 4, counts: [4])), [])
        XCTAssertEqual(MaskAPI.rleDecode(RLE(h: (1 << 32) + 1, w: 1 << 32, counts: [1])), [])
        XCTAssertEqual(MaskAPI.pixelCount(h: 1 << 20, w: 1 << 11), 1 << 31)
        XCTAssertNil(MaskAPI.pixelCount(h: 1 << 20, w: (1 << 11) + 1))
        XCTAssertNil(MaskAPI.pixelCount(h: Int.max, w: 2))
        // A compressed count that decodes beyond 2^32 (C wraps it into some small count) is not valid RLE.
        XCTAssertNil(MaskAPI.rleFrString("PPPPPP8", h: 1, w: 1))  // 8 << 30 = 2^33
        XCTAssertNil(MaskAPI.rleFrString("@", h: 1, w: 1))        // -16
        XCTAssertNotNil(MaskAPI.rleFrString("52=", h: 5, w: 4))
    }
}

private extension Double {
    func rounded(toPlaces p: Int) -> Double { (self * pow(10, Double(p))).rounded() / pow(10, Double(p)) }
}
