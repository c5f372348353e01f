import Engine
import Foundation
import Heads
import NN
import XCTest

/// CascadeRoIHead (3 stages, masks) against mmdet 3.3 (Tests/Fixtures/cascade_roi_head/make_cascade_roi_head.py):
/// every stage's losses, every gradient, and the final boxes, scores, labels and pasted masks.
final class CascadeRoIHeadTests: XCTestCase {
    static let imgShapes = [(height: 90, width: 120), (height: 96, width: 100)]

    func fixture() throws -> (CascadeRoIHead, [String: Tensor]) {
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/cascade_roi_head/cascade_roi_head.safetensors").path
        let f = try SafeTensors.read(path: path).tensors
        let stds: [[Float]] = [[0.1, 0.1, 0.2, 0.2], [0.05, 0.05, 0.1, 0.1], [0.033, 0.033, 0.067, 0.067]]
        let heads = stds.map { s -> Shared2FCBBoxHead in
            let h = Shared2FCBBoxHead(inChannels: 4, roiSize: 7, fcChannels: 16, numClasses: 3, regClassAgnostic: true)
            h.coder = DeltaXYWHBBoxCoder(stds: s)
            h.smoothL1Beta = 1
            return h
        }
        let masks = (0..<3).map { _ in FCNMaskHead(inChannels: 4, convChannels: 8, numConvs: 2, numClasses: 3) }
        let head = CascadeRoIHead(bboxHeads: heads, maskHeads: masks)
        XCTAssertEqual(Set(head.stateDict().keys), Set(f.keys.filter { $0.hasPrefix("head.") }.map { String($0.dropFirst(5)) }))
        try head.load(stateDict: f.filter { $0.key.hasPrefix("head.") }, strict: true, stripPrefix: "head.")
        head.samplers = head.samplers.map { _ in RandomSampler(num: 100_000, posFraction: 0.25) }
        return (head, f)
    }

    func testLossesAndGradientsMatchMMDet() throws {
        let (head, f) = try fixture()
        let feats = (0..<4).map { Tensor(f["feat\($0)"]!.array, shape: f["feat\($0)"]!.shape, requiresGrad: true) }
        let targets = (0..<2).map { i -> DetectionTarget in
            let m = f["masks\(i)"]!, (h, w) = (m.shape[1], m.shape[2])
            let bitmaps = (0..<m.shape[0]).map { g in BitmapMask(width: w, height: h, data: m.array[(g * h * w)..<((g + 1) * h * w)].map { UInt8($0) }) }
            return DetectionTarget(boxes: f["gt\(i)"]!.array, labels: f["labels\(i)"]!.array.map { Int($0) }, imgShape: Self.imgShapes[i], masks: bitmaps)
        }
        let terms = head.loss(feats, proposals: (0..<2).map { f["proposals\($0)"]!.array }, targets: targets)
        let names = (0..<3).flatMap { s in ["loss_cls", "loss_bbox", "loss_mask"].map { "s\(s).\($0)" } }
        XCTAssertEqual(terms.map(\.0), names)
        for (name, value) in terms {
            let ref = f["loss.\(name)"]!.array[0]
            XCTAssertEqual(value.item, ref, accuracy: 1e-4 * max(abs(ref), 1e-3), name)
        }
        terms.dropFirst().reduce(terms[0].1) { $0 + $1.1 }.backward()
        for (k, p) in head.namedParameters() {
            guard let g = p.grad else { XCTFail("\(k): no gradient"); continue }
            close(g.array, f["grad.head.\(k)"]!.array, 2e-4, k)
        }
        for i in 0..<4 { close(feats[i].grad?.array ?? [Float](repeating: 0, count: feats[i].count), f["grad.feat\(i)"]!.array, 2e-4, "feat\(i)") }
    }

    func testDetectionsAndMasksMatchMMDet() throws {
        let (head, f) = try fixture()
        head.eval()
        let feats = (0..<4).map { f["feat\($0)"]! }
        let dets = head.predict(feats, proposals: (0..<2).map { f["proposals\($0)"]!.array }, imgShapes: Self.imgShapes,
                                scaleFactors: [[1.25, 1.25, 1.25, 1.25], [1.25, 1.2, 1.25, 1.2]], oriShapes: [(72, 96), (80, 80)])
        for i in 0..<2 {
            guard sameDetections(dets[i], f, "dets\(i)") else { continue }
            let ref = f["dets\(i).masks"]!, plane = ref.shape[1] * ref.shape[2]
            var differing = 0
            for (k, m) in (dets[i].masks ?? []).enumerated() {
                let ours = m.bitmap(), theirs = ref.array[(k * plane)..<((k + 1) * plane)]
                differing += zip(ours, theirs).filter { Float($0) != $1 }.count
            }
            // Pixels whose averaged probability sits on the threshold may round either way.
            XCTAssertLessThanOrEqual(differing, 5, "image \(i): \(differing) mask pixels differ")
        }
    }
}
