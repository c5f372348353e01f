import ACmixKit
import Backbones
import Foundation
import Heads
import NN
import Tasks
import TestSupport
import Training
import XCTest

/// The app-facing library: models from a config (or a built-in name) and a checkpoint give the task predictors'
/// results, typed; errors come back as KitError values; the example package in Examples/ runs on a trained checkpoint.
final class ACmixKitTests: XCTestCase {
    let root = ToolRunner.packageRoot.path

    /// A detector det-train trained for a few iterations on a small shapes set: (work dir config, checkpoint, images).
    func trainedShapesDetector() throws -> (config: String, checkpoint: String, images: String) {
        let tmp = try ToolRunner.temporaryDirectory("kit")
        let tiny = ["--set", "model.backbone.arch=resnet50", "--set", "model.backbone.base_width=8",
                    "--set", "model.bbox_head.stacked_convs=1", "--set", "data.img_scale=[64,64]",
                    "--set", #"data.shapes={"size": 64, "train_count": 4, "val_count": 3, "root": "\#(tmp)/shapes"}"#,
                    "--set", "data.samples_per_gpu=2", "--set", "evaluation.interval=100", "--set", "lr_config.step=[100]",
                    "--set", "model.test_cfg.score_thr=0.0", "--set", #"runner={"type": "IterBasedRunner", "max_iters": 3}"#]
        let r = try ToolRunner.run("det-train", ["--work-dir", "\(tmp)/work"] + tiny)
        XCTAssertEqual(r.status, 0, r.stderr)
        let images = "\(tmp)/images"
        try FileManager.default.createDirectory(atPath: images, withIntermediateDirectories: true)
        let gen = ShapesGenerator(size: 64, seed: 5)
        for i in 0..<3 { try writePNG(gen.example(split: 1, index: i).image.resized(width: 64 + 16 * i, height: 64), to: "\(images)/img\(i).png") }
        return ("\(tmp)/work/config.json", "\(tmp)/work/latest.safetensors", images)
    }

    func testDetectorGivesThePredictorsDetectionsTypedAndTheExampleAppPrintsThem() throws {
        let m = try trainedShapesDetector()
        let detector = try ObjectDetector(config: .file(m.config), checkpoint: m.checkpoint)
        let cfg = try DetectionConfig.loadForInference(path: m.config, overrides: [])
        XCTAssertEqual(detector.classes, try XCTUnwrap(try DetectionDatasets.classes(cfg.section("data"))).names)
        let reference = try DetectionConfig.buildModel(cfg)
        try Checkpoint.loadForInference(from: m.checkpoint, into: reference)
        let predictor = DetectionPredictor(detector: reference, pipeline: try DetectionDatasets.testPipeline(cfg.section("data")))
        var lines: [String] = [], total = 0
        for name in ["img0.png", "img1.png", "img2.png"] {
            let image = try readImage("\(m.images)/\(name)")
            let expected = predictor([image])[0].scoring(atLeast: 0.005)
            let got = try detector.predict(imageAt: "\(m.images)/\(name)", scoreThreshold: 0.005)
            XCTAssertEqual(got.count, expected.count, name)
            for (k, d) in got.enumerated() where k < expected.count {
                XCTAssertEqual([d.box.x1, d.box.y1, d.box.x2, d.box.y2], Array(expected.boxes[(4 * k)..<(4 * k + 4)]))
                XCTAssertEqual(d.score, expected.scores[k])
                XCTAssertEqual(d.label, expected.labels[k])
                XCTAssertEqual(d.name, detector.classes[d.label])
                XCTAssertEqual(d.categoryID, detector.categoryIDs[d.label])
                XCTAssertNil(d.mask)
                lines.append("\(name) \(d.name) " + String(format: "%.4f %.1f %.1f %.1f %.1f", d.score, d.box.x1, d.box.y1, d.box.x2, d.box.y2))
            }
            total += got.count
        }
        XCTAssertGreaterThan(total, 0, "the trained detector should report boxes at score 0.005")
        // A batch of images of one size gives what one at a time gives, up to float rounding.
        let same = try (0..<2).map { _ in try readImage("\(m.images)/img0.png") }
        let batched = try detector.predict(same, scoreThreshold: 0.005), single = try detector.predict(same[0], scoreThreshold: 0.005)
        for b in batched {
            XCTAssertEqual(b.count, single.count)
            for (x, y) in zip(b.prefix(10), single) {
                XCTAssertEqual(x.label, y.label)
                XCTAssertEqual(x.score, y.score, accuracy: 1e-5)
                XCTAssertEqual(x.box.x1, y.box.x1, accuracy: 1e-3)
                XCTAssertEqual(x.box.y2, y.box.y2, accuracy: 1e-3)
            }
        }

        // The example package (built by scripts/test.sh before the tests) prints the same detections.
        let example = "\(root)/Examples/DetectFolder/.build/release/detect-folder"
        guard FileManager.default.isExecutableFile(atPath: example) else {
            throw XCTSkip("the example app is not built (scripts/test.sh builds it: swift build -c release --package-path Examples/DetectFolder)")
        }
        let p = Process(), out = Pipe(), err = Pipe()
        p.executableURL = URL(fileURLWithPath: example)
        p.arguments = [m.config, m.checkpoint, m.images, "0.005"]
        p.standardOutput = out; p.standardError = err
        try p.run()
        let printed = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0, String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self))
        XCTAssertEqual(printed.split(separator: "\n").map(String.init), lines)
    }

    func testBuiltInNamesResolveToTheShippedConfigs() throws {
        for m in BuiltInModel.allCases {
            XCTAssertTrue(FileManager.default.fileExists(atPath: m.configPath), m.rawValue)
            guard case .builtIn(m) = ModelConfig(m.rawValue) else { return XCTFail("\(m.rawValue) is not read as built-in") }
            let cfg = m.isDetector ? try DetectionConfig.loadForInference(path: m.configPath, overrides: [])
                : try SegmentationConfig.loadForInference(path: m.configPath, overrides: [])
            XCTAssertNotNil(cfg.section("model"))
        }
        guard case .file("configs/x.json") = ModelConfig("configs/x.json") else { return XCTFail("a path is a file") }
    }

    func testErrorsAreKitErrorsNamingTheProblem() throws {
        let dir = try ToolRunner.temporaryDirectory("kit-errors")
        func message(_ body: () throws -> Void) -> String {
            do { try body() } catch let e as KitError { return e.description } catch { return "not a KitError: \(error)" }
            return "no error"
        }
        XCTAssertTrue(message { _ = try ObjectDetector(config: .builtIn(.retinanetShapes), checkpoint: "\(dir)/none.safetensors") }
            .contains("none.safetensors: checkpoint not found"))
        XCTAssertTrue(message { _ = try ObjectDetector(config: "\(dir)/nope.json", checkpoint: "x") }.contains("nope.json"))
        XCTAssertTrue(message { _ = try ObjectDetector(config: .builtIn(.retinanetShapes), checkpoint: "x",
                                                       overrides: ["model.bbox_head.no_such_key=1"]) }.contains("no_such_key"))
        if !CPUInfo.current.hasBF16 && !MixedPrecision.emulated {
            XCTAssertTrue(message { _ = try Segmenter(config: .builtIn(.upernetShapes), checkpoint: "x", precision: .bf16) }
                .contains("neither AVX512-BF16 nor AMX-BF16"))
        }
        // A model with random weights: a broken image and an image too small for it.
        let cfg = try DetectionConfig.loadForInference(path: BuiltInModel.retinanetShapes.configPath, overrides: ["data.img_scale=[64,64]"])
        let weights = "\(dir)/w.safetensors"
        try SafeTensors.write(try DetectionConfig.buildModel(cfg).namedTensors(), to: weights)
        let detector = try ObjectDetector(config: .builtIn(.retinanetShapes), checkpoint: weights, overrides: ["data.img_scale=[64,64]"])
        try Data("not an image".utf8).write(to: URL(fileURLWithPath: "\(dir)/broken.png"))
        XCTAssertTrue(message { _ = try detector.predict(imageAt: "\(dir)/broken.png") }.contains("broken.png: not a PNG or JPEG file"))
        XCTAssertTrue(message { _ = try detector.predict(Image(width: 1, height: 900)) }.contains("after the test pipeline's resize"))
        XCTAssertEqual(try detector.predict([]), [])
    }

    func testSegmenterAndFeatureExtractorGiveTheModelsOutputs() throws {
        let dir = try ToolRunner.temporaryDirectory("kit-seg")
        let overrides = ["model.backbone.arch=resnet50", "model.backbone.base_width=8", "data.img_scale=[96,96]", "data.crop_size=[64,64]"]
        let cfg = try SegmentationConfig.loadForInference(path: BuiltInModel.upernetShapes.configPath, overrides: overrides)
        EngineRandom.seed(3)
        let model = try SegmentationConfig.buildModel(cfg)
        try SafeTensors.write(model.namedTensors(), to: "\(dir)/seg.safetensors")
        let segmenter = try Segmenter(config: "upernet-shapes", checkpoint: "\(dir)/seg.safetensors", overrides: overrides)
        XCTAssertEqual(segmenter.classes.count, model.numClasses)
        let image = ShapesGenerator(size: 80, seed: 2).example(split: 1, index: 0).image
        let predictor = SegmentationPredictor(segmentor: model, pipeline: try SegmentationDatasets.testPipeline(cfg.section("data")).pipeline)
        XCTAssertEqual(try segmenter.predict(image), predictor(image))

        let backbone = try ResNet(arch: "acmix_resnet26", numClasses: nil)
        try SafeTensors.write(backbone.namedTensors(), to: "\(dir)/r26.safetensors")
        let extractor = try FeatureExtractor(arch: "acmix_resnet26", weights: "\(dir)/r26.safetensors")
        let features = try extractor.features(image)
        backbone.eval()
        let expected = withNoGrad { backbone.features(FeatureExtractor.input(image)) }
        XCTAssertEqual(features.map(\.name), ["c2", "c3", "c4", "c5"])
        XCTAssertEqual(features.map(\.tensor.array), expected.map(\.array))
        XCTAssertThrowsError(try extractor.features(image, logits: true)) { XCTAssertTrue("\($0)".contains("classification head")) }

        // The backbone of the trained segmentor: its features are the segmentor's own backbone's.
        let fromConfig = try FeatureExtractor(config: "upernet-shapes", checkpoint: "\(dir)/seg.safetensors", overrides: overrides)
        XCTAssertEqual(fromConfig.arch, "resnet50")
        model.eval()
        let own = withNoGrad { model.backbone.features(FeatureExtractor.input(image)) }
        XCTAssertEqual(try fromConfig.features(image).map(\.tensor.array), own.map(\.array))
    }
}
