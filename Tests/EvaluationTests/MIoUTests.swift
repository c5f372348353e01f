import Data
import Foundation
import XCTest
import Evaluation

/// The repository root, derived from this file's path (Tests/EvaluationTests/MIoUTests.swift).
private let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()
private let referenceDir = repoRoot.appendingPathComponent("../shared/reference/miou").standardized.path

final class MIoUTests: XCTestCase {
    private func expected() throws -> [String: Any] {
        let data = try Data(contentsOf: URL(fileURLWithPath: referenceDir + "/expected.json"))
        return try JSONSerialization.jsonObject(with: data) as! [String: Any]
    }

    private func check(variant: String) throws {
        let root = try expected()
        let numClasses = root["num_classes"] as! Int
        let v = (root["variants"] as! [String: Any])[variant] as! [String: Any]
        var metric = MIoUMetric(numClasses: numClasses, ignoreIndex: root["ignore_index"] as! Int,
                                reduceZeroLabel: v["reduce_zero_label"] as! Bool)
        for file in v["files"] as! [String] {
            let label = try readLabelMap(referenceDir + "/" + (v["labels_dir"] as! String) + "/" + file)
            let pred = try readLabelMap(referenceDir + "/" + (v["preds_dir"] as! String) + "/" + file)
            try metric.process(pred: pred, label: label, name: file)
        }
        let r = metric.compute()
        XCTAssertEqual(r.totals.intersect, (v["total_area_intersect"] as! [Int]).map(Int64.init))
        XCTAssertEqual(r.totals.union, (v["total_area_union"] as! [Int]).map(Int64.init))
        XCTAssertEqual(r.totals.predLabel, (v["total_area_pred_label"] as! [Int]).map(Int64.init))
        XCTAssertEqual(r.totals.label, (v["total_area_label"] as! [Int]).map(Int64.init))
        XCTAssertEqual(r.aAcc, v["aAcc"] as! Double, accuracy: 1e-12)
        XCTAssertEqual(r.mIoU, v["mIoU"] as! Double, accuracy: 1e-12)
        XCTAssertEqual(r.mAcc, v["mAcc"] as! Double, accuracy: 1e-12)
        for (name, got) in [("IoU", r.iou), ("Acc", r.acc)] {
            let want = v[name] as! [Any]
            XCTAssertEqual(got.count, want.count)
            for (c, (g, w)) in zip(got, want).enumerated() {
                if let w = w as? Double {
                    XCTAssertEqual(g, w, accuracy: 1e-12, "\(variant) \(name)[\(c)]")
                } else {
                    XCTAssertTrue(g.isNaN, "\(variant) \(name)[\(c)] should be NaN, got \(g)")
                }
            }
        }
        // What mmseg prints: round(x * 100, 2).
        let reported = v["mmseg_reported_percent"] as! [String: Any]
        XCTAssertEqual(formatPercent(r.mIoU), String(format: "%.2f", reported["mIoU"] as! Double))
    }

    func testPlainMatchesReference() throws { try check(variant: "plain") }

    func testReduceZeroLabelMatchesReference() throws { try check(variant: "reduce_zero_label") }

    func testIgnoreAndReduceZeroLabelOnSmallMaps() throws {
        let label = LabelMap(width: 4, height: 1, labels: [0, 1, 2, 255])
        let pred = LabelMap(width: 4, height: 1, labels: [0, 0, 1, 1])
        let plain = try intersectAndUnion(pred: pred, label: label, numClasses: 3)
        XCTAssertEqual(plain.intersect, [1, 0, 0])
        XCTAssertEqual(plain.predLabel, [2, 1, 0])
        XCTAssertEqual(plain.label, [1, 1, 1])
        XCTAssertEqual(plain.union, [2, 2, 1])
        // Reduced: 0→ignore, 1→0, 2→1, 255→ignore.
        let reduced = try intersectAndUnion(pred: pred, label: label, numClasses: 3, reduceZeroLabel: true)
        XCTAssertEqual(reduced.intersect, [1, 1, 0])
        XCTAssertEqual(reduced.label, [1, 1, 0])
        XCTAssertEqual(reduced.predLabel, [1, 1, 0])
        let r = MIoUResult(totals: reduced)
        XCTAssertTrue(r.iou[2].isNaN)
        XCTAssertEqual(r.mIoU, 1.0)
    }

    func testBadInputsThrowNamingTheImage() {
        let a = LabelMap(width: 3, height: 2, fill: 0)
        let b = LabelMap(width: 2, height: 3, fill: 0)
        XCTAssertThrowsError(try intersectAndUnion(pred: b, label: a, numClasses: 2, name: "x.png")) { e in
            XCTAssertTrue("\(e)".contains("x.png") && "\(e)".contains("2x3"), "\(e)")
        }
        let badLabel = LabelMap(width: 2, height: 1, labels: [1, 7])
        XCTAssertThrowsError(try intersectAndUnion(pred: LabelMap(width: 2, height: 1, fill: 0), label: badLabel,
                                                   numClasses: 3, name: "y.png")) { e in
            XCTAssertEqual(e as? KitError, .labelOutOfRange(name: "y.png", value: 7, numClasses: 3, ignoreIndex: 255))
        }
        XCTAssertThrowsError(try intersectAndUnion(pred: badLabel, label: LabelMap(width: 2, height: 1, fill: 0),
                                                   numClasses: 3, name: "z.png")) { e in
            XCTAssertEqual(e as? KitError, .predictionOutOfRange(name: "z.png", value: 7, numClasses: 3))
        }
    }
}
