import Engine
import Foundation
import Heads
import NN
import XCTest

/// Fails unless `a` equals `b` within `tol` relative to `b`'s largest magnitude.
func close(_ a: [Float], _ b: [Float], _ tol: Float, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(a.count, b.count, what, file: file, line: line)
    let scale = max(b.map(abs).max() ?? 0, 1e-12)
    XCTAssertLessThan(zip(a, b).map { abs($0 - $1) }.max() ?? 0, tol * scale, what, file: file, line: line)
}

/// Whether `d` has the fixture's `NAME.boxes` (to 1e-2), `.scores` (to 1e-4) and `.labels`; fails the test where not.
func sameDetections(_ d: ImageDetections, _ f: [String: Tensor], _ name: String, file: StaticString = #filePath, line: UInt = #line) -> Bool {
    XCTAssertEqual(d.count, f["\(name).scores"]!.count, name, file: file, line: line)
    guard d.count == f["\(name).scores"]!.count else { return false }
    XCTAssertLessThan(zip(d.boxes, f["\(name).boxes"]!.array).map { abs($0 - $1) }.max() ?? 0, 1e-2, "\(name) boxes", file: file, line: line)
    XCTAssertLessThan(zip(d.scores, f["\(name).scores"]!.array).map { abs($0 - $1) }.max() ?? 0, 1e-4, "\(name) scores", file: file, line: line)
    XCTAssertEqual(d.labels, f["\(name).labels"]!.array.map { Int($0) }, "\(name) labels", file: file, line: line)
    return true
}

/// The StandardRoIHead (boxes) against mmdet 3.3 (Tests/Fixtures/roi_head/make_roi_head.py): losses and every
/// gradient with a sampler that keeps every candidate, and the final detections.
final class RoIHeadTests: XCTestCase {
    func fixture() throws -> (StandardRoIHead, [String: Tensor]) {
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/roi_head/roi_head.safetensors").path
        let f = try SafeTensors.read(path: path).tensors
        let head = StandardRoIHead(bboxHead: Shared2FCBBoxHead(inChannels: 4, roiSize: 7, fcChannels: 16, numClasses: 3))
        XCTAssertEqual(Set(head.stateDict().keys), Set(f.keys.filter { $0.hasPrefix("head.") }.map { String($0.dropFirst(5)) }))
        try head.load(stateDict: f.filter { $0.key.hasPrefix("head.") }, strict: true, stripPrefix: "head.")
        return (head, f)
    }

    func testLossesAndGradientsMatchMMDet() throws {
        let (head, f) = try fixture()
        head.sampler = RandomSampler(num: 100_000, posFraction: 0.25)
        let feats = (0..<4).map { Tensor(f["feat\($0)"]!.array, shape: f["feat\($0)"]!.shape, requiresGrad: true) }
        let targets = (0..<2).map { DetectionTarget(boxes: f["gt\($0)"]!.array, labels: f["labels\($0)"]!.array.map { Int($0) },
                                                    imgShape: $0 == 0 ? (90, 120) : (96, 100)) }
        let terms = head.loss(feats, proposals: (0..<2).map { f["proposals\($0)"]!.array }, targets: targets)
        XCTAssertEqual(terms.map(\.0), ["loss_cls", "loss_bbox"])
        XCTAssertEqual(terms[0].1.item, f["loss.cls"]!.array[0], accuracy: 1e-4 * f["loss.cls"]!.array[0])
        XCTAssertEqual(terms[1].1.item, f["loss.bbox"]!.array[0], accuracy: 1e-4 * f["loss.bbox"]!.array[0])
        (terms[0].1 + terms[1].1).backward()
        for (k, p) in head.namedParameters() {
            guard let g = p.grad else { XCTFail("\(k): no gradient"); continue }
            close(g.array, f["grad.head.\(k)"]!.array, 1e-4, k)
        }
        for i in 0..<4 {   // a level no RoI maps to gets no gradient: zeros, as in PyTorch
            close(feats[i].grad?.array ?? [Float](repeating: 0, count: feats[i].count), f["grad.feat\(i)"]!.array, 1e-4, "feat\(i)")
        }
    }

    func testDetectionsMatchMMDet() throws {
        let (head, f) = try fixture()
        head.eval()
        let feats = (0..<4).map { f["feat\($0)"]! }
        let dets = head.predict(feats, proposals: (0..<2).map { f["proposals\($0)"]!.array }, imgShapes: [(90, 120), (96, 100)],
                                scaleFactors: [[0.5, 0.5, 0.5, 0.5], [0.8, 0.75, 0.8, 0.75]], oriShapes: [(180, 240), (128, 125)])
        for i in 0..<2 { _ = sameDetections(dets[i], f, "dets\(i)") }
    }
}
