import Engine
import Foundation
import Heads
import NN
import XCTest

/// The Mask R-CNN RoI head (StandardRoIHead + FCNMaskHead) against mmdet 3.3
/// (Tests/Fixtures/mask_head/make_mask_head.py): mask targets, the three losses and every gradient with a sampler
/// that keeps every candidate, and the detections with their pasted masks.
final class MaskHeadTests: XCTestCase {
    func fixture() throws -> (StandardRoIHead, [String: Tensor]) {
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/mask_head/mask_head.safetensors").path
        let f = try SafeTensors.read(path: path).tensors
        let head = StandardRoIHead(bboxHead: Shared2FCBBoxHead(inChannels: 4, roiSize: 7, fcChannels: 16, numClasses: 3),
                                   maskHead: FCNMaskHead(inChannels: 4, convChannels: 8, numConvs: 2, numClasses: 3))
        XCTAssertEqual(Set(head.stateDict().keys), Set(f.keys.filter { $0.hasPrefix("head.") }.map { String($0.dropFirst(5)) }))
        try head.load(stateDict: f.filter { $0.key.hasPrefix("head.") }, strict: true, stripPrefix: "head.")
        head.sampler = RandomSampler(num: 100_000, posFraction: 0.25)
        return (head, f)
    }

    func targets(_ f: [String: Tensor]) -> [DetectionTarget] {
        (0..<2).map { i in
            let m = f["masks\(i)"]!, (h, w) = (m.shape[1], m.shape[2])
            let masks = (0..<m.shape[0]).map { k in BitmapMask(width: w, height: h, data: (0..<(h * w)).map { UInt8(m.data[k * h * w + $0]) }) }
            return DetectionTarget(boxes: f["gt\(i)"]!.array, labels: f["labels\(i)"]!.array.map { Int($0) },
                                   imgShape: i == 0 ? (90, 120) : (96, 100), masks: masks)
        }
    }

    func testMaskTargetsMatchMMDet() throws {
        let (head, f) = try fixture()
        var got: [Float] = []
        for (i, t) in targets(f).enumerated() {
            var rng = SplitMix64(seed: 0)
            let s = head.sampleRoIs(proposals: f["proposals\(i)"]!.array, target: t, rng: &rng)
            got += head.mask_head!.maskTargets(boxes: Array(s.boxes.prefix(4 * s.gtIndices.count)), gtIndices: s.gtIndices, masks: t.masks!)
        }
        XCTAssertEqual(got.count, f["mask_targets"]!.count)
        let differ = zip(got, f["mask_targets"]!.array).filter { $0 != $1 }.count
        XCTAssertEqual(differ, 0, "mask target pixels that differ from mmdet's")
    }

    func testLossesAndGradientsMatchMMDet() throws {
        let (head, f) = try fixture()
        let feats = (0..<4).map { Tensor(f["feat\($0)"]!.array, shape: f["feat\($0)"]!.shape, requiresGrad: true) }
        let losses = head.loss(feats, proposals: (0..<2).map { f["proposals\($0)"]!.array }, targets: targets(f))
        XCTAssertEqual(losses.map(\.0), ["loss_cls", "loss_bbox", "loss_mask"])
        for (name, value) in losses {
            close([value.item], f["loss.\(name.dropFirst(5))"]!.array, 1e-4, name)
        }
        losses.map(\.1).dropFirst().reduce(losses[0].1, +).backward()
        for (key, p) in head.namedParameters() {
            close(p.grad?.array ?? [], f["grad.head.\(key)"]!.array, 1e-4, "grad \(key)")
        }
        for i in 0..<4 {
            close(feats[i].grad?.array ?? [Float](repeating: 0, count: feats[i].count), f["grad.feat\(i)"]!.array, 1e-4, "feat\(i)")
        }
    }

    func testDetectionsAndPastedMasksMatchMMDet() throws {
        let (head, f) = try fixture()
        head.eval()
        let oriShapes = [(180, 240), (128, 125)]
        let dets = head.predict((0..<4).map { f["feat\($0)"]! }, proposals: (0..<2).map { f["proposals\($0)"]!.array },
                                imgShapes: [(90, 120), (96, 100)], scaleFactors: [[0.5, 0.5, 0.5, 0.5], [0.8, 0.75, 0.8, 0.75]],
                                oriShapes: oriShapes.map { (height: $0.0, width: $0.1) })
        for i in 0..<2 {
            let want = f["dets\(i).masks"]!
            XCTAssertEqual(dets[i].count, f["dets\(i).scores"]!.count, "image \(i)")
            guard dets[i].count == want.shape[0], let masks = dets[i].masks else { XCTFail("image \(i): no masks"); continue }
            XCTAssertLessThan(zip(dets[i].boxes, f["dets\(i).boxes"]!.array).map { abs($0 - $1) }.max()!, 1e-2, "image \(i) boxes")
            XCTAssertLessThan(zip(dets[i].scores, f["dets\(i).scores"]!.array).map { abs($0 - $1) }.max()!, 1e-4, "image \(i) scores")
            XCTAssertEqual(dets[i].labels, f["dets\(i).labels"]!.array.map { Int($0) }, "image \(i) labels")
            let plane = oriShapes[i].0 * oriShapes[i].1
            var differ = 0
            for (k, m) in masks.enumerated() {
                XCTAssertEqual(m.width, oriShapes[i].1); XCTAssertEqual(m.height, oriShapes[i].0)
                let bits = m.bitmap()
                for p in 0..<plane where Float(bits[p]) != want.data[k * plane + p] { differ += 1 }
            }
            XCTAssertLessThanOrEqual(Double(differ), 0.001 * Double(masks.count * plane), "image \(i): \(differ) mask pixels differ")
            XCTAssertGreaterThan(masks.map(\.area).reduce(0, +), 1000, "image \(i): masks are not empty")
        }
    }

    /// Runs, bitmaps and areas agree, for a region anywhere in the image (edges included).
    func testMaskRunsRoundTrip() {
        var rng = SplitMix64(seed: 3)
        for _ in 0..<50 {
            let w = 1 + Int(rng.uniform() * 20), h = 1 + Int(rng.uniform() * 20)
            let rw = Int(rng.uniform() * Double(w + 1)), rh = Int(rng.uniform() * Double(h + 1))
            let x = Int(rng.uniform() * Double(w - rw + 1)), y = Int(rng.uniform() * Double(h - rh + 1))
            let region = (0..<(rw * rh)).map { _ in UInt8(rng.uniform() < 0.5 ? 1 : 0) }
            let runs = MaskRuns(width: w, height: h, region: region, x: x, y: y, regionWidth: rw, regionHeight: rh)
            var full = [UInt8](repeating: 0, count: w * h)
            for r in 0..<rh { for c in 0..<rw { full[(y + r) * w + x + c] = region[r * rw + c] } }
            XCTAssertEqual(runs.bitmap(), full)
            XCTAssertEqual(runs.area, full.reduce(0) { $0 + Int($1) })
            XCTAssertEqual(runs.counts.reduce(0) { $0 + Int($1) }, w * h)
        }
    }
}
