import Config
import Data
import Engine
import Foundation
import Heads
import NN
import Tasks
import TestSupport
import Training
import XCTest

/// int8 calibration, the quantized file and the tools' `--precision int8`, emulated (`ACMIX_INT8_EMULATION=1`: the
/// same numbers as oneDNN's kernels up to float rounding, on any CPU).
final class Int8ToolTests: XCTestCase {
    override func tearDown() {
        Int8Inference.emulated = false
        Int8Inference.model = nil
        try? MixedPrecision.select(.fp32)
    }

    /// The small RetinaNet of InferToolTests (random weights, written as a checkpoint) and calibration images.
    func detector(_ dir: String) throws -> (module: any Detector, predictor: DetectionPredictor, config: String, overrides: [String],
                                             weights: String, images: [Image]) {
        let m = try InferToolTests.model(detection: true, dir)
        let module = try DetectionConfig.buildModel(m.3)
        try Checkpoint.loadForInference(from: m.weights, into: module)
        let predictor = DetectionPredictor(detector: module, pipeline: try DetectionDatasets.testPipeline(m.3.section("data")))
        let gen = ShapesGenerator(size: 96, seed: 3)
        return (module, predictor, m.config, m.overrides, m.weights, (0..<4).map { gen.example(split: 0, index: $0).image })
    }

    func testCalibrationKeepsTheStemAndHeadsInFloatAndPicksTheSmallerError() throws {
        let dir = try ToolRunner.temporaryDirectory("int8-calib")
        let d = try detector(dir)
        Int8Inference.emulated = true
        let run = QuantizableRun(d.module, checkpoint: d.weights) { _ = d.predictor([$0]) }
        let report = try run.calibrateInt8(count: d.images.count) { d.images[$0] }
        let int8 = try XCTUnwrap(run.int8)
        XCTAssertEqual(report.images, 4)
        XCTAssertEqual(int8.count, report.quantized.count)
        XCTAssertTrue(report.kept.contains { $0.name == "backbone.conv1" && $0.reason == "first convolution" }, "\(report.kept)")
        for head in ["bbox_head.retina_cls", "bbox_head.retina_reg"] {
            XCTAssertTrue(report.kept.contains { $0.name == head }, head)
            XCTAssertFalse(report.quantized.contains(head), head)
        }
        XCTAssertEqual(report.compared, ["bbox_head.retina_cls", "bbox_head.retina_reg"])
        XCTAssertTrue(report.quantized.contains("neck.fpn_convs.0.conv") && report.quantized.contains("bbox_head.cls_convs.0.conv"),
                      "\(report.quantized)")
        XCTAssertEqual(report.errors.count, 2)
        XCTAssertEqual(report.chosen, report.errors.min { $0.error < $1.error }!.method)
        XCTAssertTrue(report.errors.allSatisfy { $0.error > 0 && $0.error < 0.2 }, "\(report.errors)")
        // The calibration restored the float32 state; int8 runs go through the kernels only inside withPrecision.
        XCTAssertEqual(MixedPrecision.inference, .fp32)
        XCTAssertNil(Int8Inference.model)
        let before = Int8Inference.emulatedCalls
        let fp32 = d.predictor([d.images[0]])
        XCTAssertEqual(Int8Inference.emulatedCalls, before)
        let q = try run.withPrecision(.int8) { d.predictor([d.images[0]]) }
        XCTAssertGreaterThanOrEqual(Int8Inference.emulatedCalls - before, report.quantized.count, "every quantized convolution ran int8")
        XCTAssertNotEqual(q[0].scores, fp32[0].scores)
    }

    func testQuantizedFileRoundTripsAndIsRefusedForAnotherCheckpointOrModel() throws {
        let dir = try ToolRunner.temporaryDirectory("int8-file")
        let d = try detector(dir)
        Int8Inference.emulated = true
        let run = QuantizableRun(d.module, checkpoint: d.weights) { _ = d.predictor([$0]) }
        let report = try run.calibrateInt8(count: 2) { d.images[$0] }
        let path = "\(dir)/model.int8.safetensors"
        try run.saveInt8(to: path, report: report, calibration: "2 test images")
        let meta = try SafeTensors.read(path: path).metadata
        XCTAssertEqual(meta["checkpoint_sha256"], try SHA256.hex(fileAt: d.weights))
        XCTAssertEqual(meta["scale_method"], report.chosen.rawValue)

        // Into a fresh instance of the model: the same quantized convolutions.
        let again = try detector(dir)
        let loaded = QuantizableRun(again.module, checkpoint: again.weights) { _ in }
        try loaded.loadInt8(path)
        let a = run.int8!.entries, b = try XCTUnwrap(loaded.int8).entries
        XCTAssertEqual(a.map(\.name), b.map(\.name))
        XCTAssertTrue(a.contains { $0.conv.outputScale != nil }, "calibration records output scales")
        for (x, y) in zip(a, b) {
            XCTAssertEqual(Array(x.conv.qweight), Array(y.conv.qweight), x.name)
            XCTAssertEqual(x.conv.weightScale, y.conv.weightScale, x.name)
            XCTAssertEqual(x.conv.inputScale, y.conv.inputScale, x.name)
            XCTAssertEqual(x.conv.inputSigned, y.conv.inputSigned, x.name)
            XCTAssertEqual(x.conv.outputScale, y.conv.outputScale, x.name)
        }
        let fromFile = try loaded.withPrecision(.int8) { again.predictor([d.images[1]]) }
        let fromCalibration = try run.withPrecision(.int8) { d.predictor([d.images[1]]) }
        XCTAssertEqual(fromFile[0].scores, fromCalibration[0].scores)

        // Another checkpoint (one weight changed), another architecture, a damaged entry: one line each.
        let state = d.module.namedTensors()
        state[0].1.data[0] += 1
        try SafeTensors.write(state, to: "\(dir)/other.safetensors")
        XCTAssertThrowsError(try Int8ModelFile.read(path, model: d.module, checkpoint: "\(dir)/other.safetensors")) { e in
            XCTAssertTrue("\(e)".contains("another checkpoint") && "\(e)".contains("other.safetensors"), "\(e)")
        }
        try FileManager.default.createDirectory(atPath: "\(dir)/seg", withIntermediateDirectories: true)
        let seg = try InferToolTests.model(detection: false, "\(dir)/seg")
        let segModule = try SegmentationConfig.buildModel(seg.3)
        XCTAssertThrowsError(try Int8ModelFile.read(path, model: segModule, checkpoint: d.weights)) { e in
            XCTAssertTrue("\(e)".contains("another model"), "\(e)")
        }
        let file = try SafeTensors.read(path: path)
        let name = try XCTUnwrap(file.names.first { $0.hasSuffix(".weight_scale") })
        file.tensors[name]!.data[0] = -1
        try SafeTensors.write(file.names.map { ($0, file.tensors[$0]!) }, metadata: file.metadata, to: "\(dir)/bad.safetensors")
        XCTAssertThrowsError(try Int8ModelFile.read("\(dir)/bad.safetensors", model: d.module, checkpoint: d.weights)) { e in
            XCTAssertTrue("\(e)".contains(name) && "\(e)".contains("positive"), "\(e)")
        }
        // An output scale (optional) that is there must be one positive, finite value.
        let scaled = try SafeTensors.read(path: path)
        let output = try XCTUnwrap(scaled.names.first { $0.hasSuffix(".output_scale") })
        scaled.tensors[output]!.data[0] = .nan
        try SafeTensors.write(scaled.names.map { ($0, scaled.tensors[$0]!) }, metadata: scaled.metadata, to: "\(dir)/bad-output.safetensors")
        XCTAssertThrowsError(try Int8ModelFile.read("\(dir)/bad-output.safetensors", model: d.module, checkpoint: d.weights)) { e in
            XCTAssertTrue("\(e)".contains(output) && "\(e)".contains("positive"), "\(e)")
        }
        XCTAssertThrowsError(try Int8ModelFile.read(d.weights, model: d.module, checkpoint: d.weights)) { e in
            XCTAssertTrue("\(e)".contains("not a quantized model"), "\(e)")
        }
    }

    /// quantize, then det-infer with the file: the same detections as calibrating in the process; without VNNI and
    /// without emulation, int8 is refused with one line; int8 options without int8 are usage errors.
    func testQuantizeAndDetInferWithTheFile() throws {
        let dir = try ToolRunner.temporaryDirectory("int8-tools")
        let d = try detector(dir)
        let image = "\(dir)/img.png"
        try writePNG(d.images[2], to: image)
        let emulate = ["ACMIX_INT8_EMULATION": "1"]
        let small = d.overrides + ["--set", "data.shapes.train_count=8", "--set", "data.shapes.val_count=4"]
        let q = try ToolRunner.run("quantize", ["--config", d.config, "--checkpoint", d.weights, "--out", "\(dir)/q.safetensors",
                                                "--calibration-images", "3"] + small, environment: emulate)
        XCTAssertEqual(q.status, 0, q.stderr)
        XCTAssertTrue(q.stderr.contains("calibrating on 3 of the 8 training images") && q.stderr.contains("int8 calibration on 3 images")
                      && q.stderr.contains("using "), q.stderr)
        let r = try ToolRunner.run("det-infer", ["--config", d.config, "--checkpoint", d.weights, "--out-dir", "\(dir)/out",
                                                 "--score-thr", "0", "--precision", "int8", "--quantized", "\(dir)/q.safetensors"]
                                   + d.overrides + [image], environment: emulate)
        XCTAssertEqual(r.status, 0, r.stderr)
        let dets = try XCTUnwrap(try JSON.load(path: "\(dir)/out/predictions.json").arrayValue?.first?["detections"]?.arrayValue)
        // The library with the same file gives the same scores.
        Int8Inference.emulated = true
        let lib = QuantizableRun(d.module, checkpoint: d.weights) { _ in }
        try lib.loadInt8("\(dir)/q.safetensors")
        let expected = try lib.withPrecision(.int8) { d.predictor([d.images[2]]) }[0]
        XCTAssertEqual(dets.count, expected.count)
        for (k, det) in dets.enumerated() where k < expected.count {
            XCTAssertEqual(det["score"]?.doubleValue ?? -1, Double(expected.scores[k]), accuracy: 1e-6)
        }

        let misuse = try ToolRunner.run("det-infer", ["--config", d.config, "--checkpoint", d.weights, "--out-dir", "\(dir)/out3",
                                                      "--quantized", "\(dir)/q.safetensors"] + d.overrides + [image])
        XCTAssertEqual(misuse.status, 2, misuse.stderr)
        XCTAssertTrue(misuse.stderr.contains("need --precision int8"), misuse.stderr)
        if !CPUInfo.current.hasVNNI {
            let refused = try ToolRunner.run("quantize", ["--config", d.config, "--checkpoint", d.weights, "--out", "\(dir)/q2.safetensors"]
                                             + d.overrides)
            XCTAssertEqual(refused.status, 2, refused.stderr)
            XCTAssertTrue(refused.stderr.contains("VNNI"), refused.stderr)
            XCTAssertEqual(refused.stderr.split(separator: "\n").count, 1, refused.stderr)
            XCTAssertFalse(FileManager.default.fileExists(atPath: "\(dir)/q2.safetensors"))
        }
    }

    /// export-features of a trained detector's backbone (--config/--checkpoint): fp32 equals the backbone run in the
    /// process; int8 calibrated on a folder stays close to it.
    func testExportFeaturesOfATrainedBackboneInFP32AndInt8() throws {
        let dir = try ToolRunner.temporaryDirectory("int8-export")
        let d = try detector(dir)
        try FileManager.default.createDirectory(atPath: "\(dir)/calib", withIntermediateDirectories: true)
        for i in 0..<3 { try writePNG(d.images[i], to: "\(dir)/calib/c\(i).png") }
        let image = "\(dir)/calib/c0.png"
        let config = "\(dir)/config.json"   // the resolved config, in the test's own folder (never beside the shipped one)
        try Config.load(path: d.config, overrides: stride(from: 1, to: d.overrides.count, by: 2).map { d.overrides[$0] })
            .serialized().write(toFile: config, atomically: true, encoding: .utf8)
        var outputs: [[String: Tensor]] = []
        for precision in ["fp32", "int8"] {
            let extra = precision == "int8" ? ["--calibration-dir", "\(dir)/calib"] : []
            let r = try ToolRunner.run("export-features", ["--config", config, "--checkpoint", d.weights, "--image", image,
                                                           "--output", "\(dir)/\(precision).safetensors", "--precision", precision] + extra,
                                       environment: ["ACMIX_INT8_EMULATION": "1"])
            XCTAssertEqual(r.status, 0, r.stderr)
            outputs.append(try SafeTensors.read(path: "\(dir)/\(precision).safetensors").tensors)
        }
        let x = Tensor(Normalize()(try readImage(image)).data, shape: [1, 3, 96, 96])
        let want = withNoGrad { zip(d.module.backbone.featureNames, d.module.backbone.features(x)) }
        for (name, t) in want {
            XCTAssertEqual(outputs[0][name]?.array, t.array, name)
            let q = try XCTUnwrap(outputs[1][name]).array, f = t.array
            let rel = (zip(q, f).map { Double($0 - $1) * Double($0 - $1) }.reduce(0, +) / max(f.map { Double($0) * Double($0) }.reduce(0, +), 1e-12)).squareRoot()
            XCTAssertGreaterThan(rel, 0, name)
            XCTAssertLessThan(rel, 0.1, name)
        }
        let both = try ToolRunner.run("export-features", ["--config", config, "--checkpoint", d.weights, "--arch", "resnet50", "--image", image,
                                                          "--output", "\(dir)/x.safetensors"])
        XCTAssertEqual(both.status, 2, both.stderr)
        XCTAssertTrue(both.stderr.contains("not both"), both.stderr)
    }
}
