import Backbones
import Data
import Engine
import Foundation
import NN
import TestSupport
import XCTest

/// det-infer and seg-infer on checkpoints written by mmdetection 3.3 / mmsegmentation 1.2 and converted with
/// scripts/convert_pth.py, against those libraries' own predictions on the same images
/// (Tests/Fixtures/mmref/make_fixtures.py; see its README).
final class MMRefInferenceTests: XCTestCase {
    let fixtures = ToolRunner.packageRoot.appendingPathComponent("Tests/Fixtures/mmref").path

    /// det-infer (score threshold 0) on the fixture images of `NAME_detections.json` with `NAME.json` and
    /// `NAME.safetensors`: our predictions and mmdet's, image by image.
    func detInfer(_ name: String, precision: String = "fp32") throws -> [(ours: JSON, theirs: JSON)] {
        let ref = try JSON.load(path: "\(fixtures)/\(name)_detections.json")
        let images = try XCTUnwrap(ref["images"]?.arrayValue)
        let files = images.compactMap { $0["file_name"]?.stringValue }
        let out = try ToolRunner.temporaryDirectory("mmref-det")
        // bf16 / int8 natively where the CPU has it, else emulated (the same numbers up to float rounding).
        var env = precision == "bf16" && !CPUInfo.current.hasBF16 ? ["ACMIX_BF16_EMULATION": "1"] : [:]
        var extra: [String] = []
        if precision == "int8" {
            if !CPUInfo.current.hasVNNI { env["ACMIX_INT8_EMULATION"] = "1" }
            // Calibrated on the fixture's own images (its config has no training split here).
            try FileManager.default.createDirectory(atPath: "\(out)/calibration", withIntermediateDirectories: true)
            for f in files { try FileManager.default.copyItem(atPath: "\(fixtures)/\(f)", toPath: "\(out)/calibration/\((f as NSString).lastPathComponent)") }
            extra = ["--calibration-dir", "\(out)/calibration"]
        }
        let r = try ToolRunner.run("det-infer", ["--config", "\(fixtures)/\(name).json", "--checkpoint", "\(fixtures)/\(name).safetensors",
                                                 "--out-dir", "\(out)/out", "--score-thr", "0", "--precision", precision] + extra
                                   + files.map { "\(fixtures)/\($0)" }, environment: env)
        XCTAssertEqual(r.status, 0, r.stderr)
        let ours = try XCTUnwrap(try JSON.load(path: "\(out)/out/predictions.json").arrayValue)
        XCTAssertEqual(ours.count, images.count)
        return Array(zip(ours, images))
    }

    func testDetInferEqualsMMDetection() throws {
        for (mine, theirs) in try detInfer("retinanet_r50w8") {
            let name = theirs["file_name"]?.stringValue ?? "?"
            XCTAssertEqual(mine["width"]?.intValue, theirs["width"]?.intValue, name)
            let a = try XCTUnwrap(mine["detections"]?.arrayValue), b = try XCTUnwrap(theirs["detections"]?.arrayValue)
            XCTAssertEqual(a.count, b.count, "\(name): detection count")
            guard a.count == b.count else { continue }
            for (d, e) in zip(a, b) {
                // Ours [x, y, w, h]; mmdet's [x1, y1, x2, y2].
                let box = try XCTUnwrap(d["bbox"]?.arrayValue?.compactMap(\.doubleValue))
                let ref = try XCTUnwrap(e["bbox"]?.arrayValue?.compactMap(\.doubleValue))
                for (x, y) in zip([box[0], box[1], box[0] + box[2], box[1] + box[3]], ref) { XCTAssertEqual(x, y, accuracy: 1e-2, name) }
                XCTAssertEqual(d["score"]?.doubleValue ?? -1, e["score"]?.doubleValue ?? 1, accuracy: 1e-4, name)
                XCTAssertEqual(d["category_id"]?.intValue, (e["label"]?.intValue ?? -9) + 1, name)
            }
        }
    }

    /// bf16 against fp32 on the mmdet fixtures: most fp32 detections scoring ≥ 0.3 have a bf16 one of their class
    /// (IoU ≥ 0.9) and the scores and boxes move little. Prints the largest differences. Chained bf16 (`ConvChain`)
    /// stores the residual stream and the FPN's sums in bf16, as PyTorch's autocast and OpenVINO do; on these
    /// random width-8 networks that moved the largest RetinaNet score difference from 0.028 (float32 between
    /// convolutions) to 0.052 (measured on Zen 4, nhwc), while a trained shapes RetinaNet kept its AP (0.722 → 0.721).
    func testBF16DetectionsStayCloseToFP32() throws {
        for name in ["retinanet_r50w8", "mask_rcnn_r50w8"] {
            let (matched, total, worstScore, _) = try compareToFP32(name, precision: "bf16")
            XCTAssertGreaterThanOrEqual(Double(matched), 0.8 * Double(total), name)
            XCTAssertLessThan(worstScore, 0.08, name)
        }
    }

    /// int8 (calibrated on the fixture images) against fp32 on the mmdet RetinaNet and Mask R-CNN fixtures, the same
    /// way. The RetinaNet's random-weight, width-8 network is a harsh case for int8: its head's outputs move by about
    /// 3 % (relative RMS, as calibration prints), and among its many near-tied boxes that reorders most of the top ones
    /// (measured: 18–23 of 95 kept at IoU ≥ 0.9, scores within 0.22, boxes within 4.7 px; trained shapes models lose
    /// ≤ 0.01 AP). The bounds catch a broken int8 path, which keeps none.
    func testInt8DetectionsOfARandomNetworkStayNearFP32() throws {
        let (matched, total, worstScore, worstShift) = try compareToFP32("retinanet_r50w8", precision: "int8")
        XCTAssertGreaterThanOrEqual(Double(matched), 0.15 * Double(total))
        XCTAssertLessThan(worstScore, 0.4)
        XCTAssertLessThan(worstShift, 10)
        // Mask R-CNN: backbone, FPN (chained at int8) and RPN convolutions, the RoI heads' FCs and mask convolutions.
        // Zen 4: 203 of 350, largest score difference 0.035, largest shift 4.2 px.
        let m = try compareToFP32("mask_rcnn_r50w8", precision: "int8")
        XCTAssertGreaterThanOrEqual(Double(m.matched), 0.4 * Double(m.total))
        XCTAssertLessThan(m.worstScore, 0.15)
        XCTAssertLessThan(m.worstShift, 10)
    }

    /// Detections scoring ≥ 0.3 at fp32 matched at `precision` (same class, IoU ≥ 0.9), with the largest score
    /// difference and box shift (px) of the matched ones; printed.
    func compareToFP32(_ name: String, precision: String) throws -> (matched: Int, total: Int, worstScore: Double, worstShift: Double) {
        let fp32 = try detInfer(name), other = try detInfer(name, precision: precision)
        var matched = 0, total = 0, worstScore = 0.0, worstShift = 0.0
        for ((a, _), (b, _)) in zip(fp32, other) {
            let x = try XCTUnwrap(a["detections"]?.arrayValue), y = try XCTUnwrap(b["detections"]?.arrayValue)
            func box(_ d: JSON) -> [Double] { d["bbox"]?.arrayValue?.compactMap(\.doubleValue) ?? [0, 0, 0, 0] }
            for d in x where (d["score"]?.doubleValue ?? 0) >= 0.3 {
                total += 1
                let p = box(d)
                let best = y.filter { $0["category_id"]?.intValue == d["category_id"]?.intValue }
                    .max { iou(p, box($0)) < iou(p, box($1)) }
                guard let best, iou(p, box(best)) >= 0.9 else { continue }
                matched += 1
                worstScore = max(worstScore, abs((d["score"]?.doubleValue ?? 0) - (best["score"]?.doubleValue ?? 0)))
                worstShift = max(worstShift, zip(p, box(best)).map { abs($0 - $1) }.max() ?? 0)
            }
        }
        let native = precision == "bf16" ? CPUInfo.current.hasBF16 : CPUInfo.current.hasVNNI
        print("\(precision) vs fp32 on \(name) (\(native ? "native" : "emulated")): \(matched) of \(total) detections "
              + "matched, largest score difference \(worstScore), largest box shift \(worstShift) px")
        XCTAssertGreaterThan(total, 0)
        return (matched, total, worstScore, worstShift)
    }

    /// IoU of two [x, y, w, h] boxes.
    func iou(_ a: [Double], _ b: [Double]) -> Double {
        let w = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]), h = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
        let inter = max(0, w) * max(0, h)
        return inter / max(a[2] * a[3] + b[2] * b[3] - inter, 1e-9)
    }

    /// A Mask R-CNN checkpoint written by mmdet and converted: the same boxes, scores, labels and (≥ 99.9 % of) mask
    /// pixels as mmdet 3.3's own predict (Tests/Fixtures/mmref/make_mask_rcnn.py).
    func testDetInferMaskRCNNEqualsMMDetection() throws { try checkMaskDetections("mask_rcnn_r50w8") }

    /// The same for a Cascade Mask R-CNN checkpoint (three stages, class-agnostic boxes, stage-averaged scores and
    /// masks; Tests/Fixtures/mmref/make_cascade_mask_rcnn.py).
    func testDetInferCascadeMaskRCNNEqualsMMDetection() throws { try checkMaskDetections("cascade_mask_rcnn_r50w8") }

    func checkMaskDetections(_ fixture: String) throws {
        func mask(_ d: JSON) throws -> [UInt8] {
            let size = try XCTUnwrap(d["segmentation"]?["size"]?.arrayValue?.compactMap(\.intValue))
            let rle = try XCTUnwrap(MaskAPI.rleFrString(try XCTUnwrap(d["segmentation"]?["counts"]?.stringValue), h: size[0], w: size[1]))
            return rle.decode()
        }
        for (mine, theirs) in try detInfer(fixture) {
            let name = theirs["file_name"]?.stringValue ?? "?"
            let a = try XCTUnwrap(mine["detections"]?.arrayValue), b = try XCTUnwrap(theirs["detections"]?.arrayValue)
            XCTAssertEqual(a.count, b.count, "\(name): detection count")
            guard a.count == b.count else { continue }
            var differ = 0, pixels = 0
            for (d, e) in zip(a, b) {
                let box = try XCTUnwrap(d["bbox"]?.arrayValue?.compactMap(\.doubleValue))
                let ref = try XCTUnwrap(e["bbox"]?.arrayValue?.compactMap(\.doubleValue))
                for (x, y) in zip([box[0], box[1], box[0] + box[2], box[1] + box[3]], ref) { XCTAssertEqual(x, y, accuracy: 1e-2, name) }
                XCTAssertEqual(d["score"]?.doubleValue ?? -1, e["score"]?.doubleValue ?? 1, accuracy: 1e-4, name)
                XCTAssertEqual(d["category_id"]?.intValue, (e["label"]?.intValue ?? -9) + 1, name)
                let m = try mask(d), n = try mask(e)
                XCTAssertEqual(m.count, n.count, name)
                differ += zip(m, n).filter { $0 != $1 }.count; pixels += n.count
            }
            XCTAssertLessThanOrEqual(Double(differ), 0.001 * Double(pixels), "\(name): \(differ) of \(pixels) mask pixels differ")
        }
    }

    func testSegInferEqualsMMSegmentationWithAndWithoutTTA() throws {
        let images = try FileManager.default.contentsOfDirectory(atPath: "\(fixtures)/images").filter { $0.hasPrefix("seg_") }.sorted()
        XCTAssertEqual(images.count, 3)
        for (flag, refDir) in [([String](), "seg_pred"), (["--aug-test"], "seg_pred_tta")] {
            let out = try ToolRunner.temporaryDirectory("mmref-seg")
            let r = try ToolRunner.run("seg-infer", ["--config", "\(fixtures)/upernet_r50w8.json", "--checkpoint",
                                                     "\(fixtures)/upernet_r50w8.safetensors", "--out-dir", out] + flag
                                       + images.map { "\(fixtures)/images/\($0)" })
            XCTAssertEqual(r.status, 0, r.stderr)
            for name in images {
                let mine = try readLabelMap("\(out)/pred/\(name)"), theirs = try readLabelMap("\(fixtures)/\(refDir)/\(name)")
                XCTAssertEqual(mine.width, theirs.width); XCTAssertEqual(mine.height, theirs.height)
                let same = zip(mine.labels, theirs.labels).filter { $0 == $1 }.count
                XCTAssertGreaterThanOrEqual(Double(same) / Double(theirs.labels.count), 0.999, "\(refDir)/\(name)")
            }
        }
    }
}

/// mmseg's ResNetV1c (the deep-stem ResNet-50 of its Semantic FPN / UPerNet R50 zoo models) as `resnet50_v1c`: an
/// mmseg-written checkpoint, converted, loads strictly and gives mmseg's four stage outputs
/// (Tests/Fixtures/mmref/make_resnet_v1c.py).
final class ResNetV1cTests: XCTestCase {
    func testResNetV1cEqualsMMSegmentation() throws {
        let dir = ToolRunner.packageRoot.appendingPathComponent("Tests/Fixtures/mmref").path
        let net = try ResNet(arch: "resnet50_v1c", numClasses: nil, baseWidth: 8)
        XCTAssertTrue(net.stateDict().keys.contains("stem.7.running_var"))
        XCTAssertNil(net.conv1)
        try net.load(stateDict: try SafeTensors.read(path: "\(dir)/resnet50_v1c_w8.safetensors").tensors, strict: true, stripPrefix: "backbone.")
        net.eval()
        let io = try SafeTensors.read(path: "\(dir)/resnet50_v1c_w8_io.safetensors").tensors
        let outs = withNoGrad { net.features(io["input"]!) }
        for (i, o) in outs.enumerated() {
            let ref = io["c\(i + 2)"]!
            XCTAssertEqual(o.shape, ref.shape)
            let scale = ref.array.map(abs).max()!
            XCTAssertLessThan(zip(o.array, ref.array).map { abs($0 - $1) }.max()!, 1e-4 * scale, "c\(i + 2)")
        }
    }
}
