import Data
import Foundation
import TestSupport
import XCTest

private let repoRoot = ToolRunner.packageRoot
private let referenceDir = repoRoot.appendingPathComponent("../shared/reference/miou").standardized.path

/// The `seg-eval` command line (the label-map form), run as a process on the release build.
final class SegEvalToolTests: XCTestCase {
    private var dir: String!

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "acmix-segeval-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: dir) }

    private func run(_ args: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
        let r = try ToolRunner.run("seg-eval", args)
        return (r.status, r.stdout, r.stderr)
    }

    func testJSONOutputMatchesReference() throws {
        let json = dir + "/m.json"
        let r = try run(["--gt-dir", referenceDir + "/reduce_zero_label/labels", "--pred-dir",
                         referenceDir + "/reduce_zero_label/preds", "--num-classes", "21", "--reduce-zero-label",
                         "--json-out", json])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("aAcc 60.97  mIoU 37.69  mAcc 59.45"), r.stdout)
        let got = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: json))) as! [String: Any]
        let expected = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath:
            referenceDir + "/expected.json"))) as! [String: Any]
        let v = (expected["variants"] as! [String: Any])["reduce_zero_label"] as! [String: Any]
        XCTAssertEqual(got["mIoU"] as! Double, v["mIoU"] as! Double, accuracy: 1e-12)
        XCTAssertEqual(got["aAcc"] as! Double, v["aAcc"] as! Double, accuracy: 1e-12)
        XCTAssertTrue((got["IoU"] as! [Any])[6] is NSNull)
    }

    func testBadInputsExitNonZeroNamingTheFile() throws {
        let gt = dir + "/gt", pred = dir + "/pred"
        for d in [gt, pred] { try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true) }
        try writePNG(LabelMap(width: 4, height: 3, fill: 1), to: gt + "/a.png")
        // Missing prediction.
        var r = try run(["--gt-dir", gt, "--pred-dir", pred, "--num-classes", "3"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains(pred + "/a.png"), r.stderr)
        // Size mismatch.
        try writePNG(LabelMap(width: 3, height: 4, fill: 1), to: pred + "/a.png")
        r = try run(["--gt-dir", gt, "--pred-dir", pred, "--num-classes", "3"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("a.png") && r.stderr.contains("4x3"), r.stderr)
        // Label out of range.
        try writePNG(LabelMap(width: 4, height: 3, fill: 1), to: pred + "/a.png")
        try writePNG(LabelMap(width: 4, height: 3, fill: 7), to: gt + "/a.png")
        r = try run(["--gt-dir", gt, "--pred-dir", pred, "--num-classes", "3"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains(gt + "/a.png") && r.stderr.contains("label value 7"), r.stderr)
        // Corrupt prediction file.
        try Data([0x89, 0x50, 0x4E, 0x47]).write(to: URL(fileURLWithPath: pred + "/a.png"))
        try writePNG(LabelMap(width: 4, height: 3, fill: 1), to: gt + "/a.png")
        r = try run(["--gt-dir", gt, "--pred-dir", pred, "--num-classes", "3"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains(pred + "/a.png"), r.stderr)
        // Good input passes.
        try writePNG(LabelMap(width: 4, height: 3, fill: 1), to: pred + "/a.png")
        r = try run(["--gt-dir", gt, "--pred-dir", pred, "--num-classes", "3"])
        XCTAssertEqual(r.status, 0, r.stderr)
    }
}
