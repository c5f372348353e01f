import Config
import Foundation
import Heads
import NN
import Tasks
import Training
import XCTest

final class ConfigTests: XCTestCase {
    var dir = ""

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "acmix-config-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: "\(dir)/_base_", withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func write(_ name: String, _ text: String) throws { try text.write(toFile: "\(dir)/\(name)", atomically: true, encoding: .utf8) }

    static var packageRoot: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    }

    func testBaseInheritanceDeepMergeAndOverrides() throws {
        try write("_base_/a.json", #"{"optimizer": {"type": "SGD", "lr": 0.01, "momentum": 0.9}, "list": [1, 2], "x": 1}"#)
        try write("_base_/b.json", #"{"optimizer": {"lr": 0.02}, "y": {"z": "b"}}"#)
        try write("child.json", #"{"_base_": ["_base_/a.json", "_base_/b.json"], "optimizer": {"momentum": 0.5}, "list": [3]}"#)
        var c = try Config.load(path: "\(dir)/child.json", overrides: ["optimizer.lr=0.005", "y.z=text", "new.key=[1, 2]", "x=7"])
        XCTAssertEqual(c["optimizer.type"], .string("SGD"))
        XCTAssertEqual(try c.double("optimizer.lr"), 0.005)        // --set wins over b, which won over a
        XCTAssertEqual(try c.double("optimizer.momentum"), 0.5)    // child wins over a
        XCTAssertEqual(c["list"], .array([.int(3)]))                // lists are replaced, not merged
        XCTAssertEqual(c["y.z"], .string("text"))                   // not JSON → a string
        XCTAssertEqual(c["new.key"], .array([.int(1), .int(2)]))
        XCTAssertEqual(try c.int("x"), 7)
        XCTAssertEqual(c.source(of: "optimizer.type"), "\(dir)/_base_/a.json")
        XCTAssertEqual(c.source(of: "optimizer.momentum"), "\(dir)/child.json")
        XCTAssertEqual(c.source(of: "optimizer.lr"), "--set optimizer.lr")
        try c.set("optimizer.lr", .double(1))
        XCTAssertEqual(try c.double("optimizer.lr"), 1)
        // _delete_ replaces the base object.
        try write("del.json", #"{"_base_": "_base_/a.json", "optimizer": {"_delete_": true, "type": "AdamW", "lr": 1e-4}}"#)
        let d = try Config.load(path: "\(dir)/del.json")
        XCTAssertNil(d["optimizer.momentum"])
        XCTAssertEqual(d["optimizer.type"], .string("AdamW"))
    }

    func testErrorsNameTheFileAndKey() throws {
        let schema = ConfigSchema.object([
            .init("optimizer", .object([.init("type", .oneOf(["SGD", "AdamW"]), required: true), .init("lr", .number)]), required: true),
        ])
        try write("_base_/opt.json", #"{"optimizer": {"type": "SGD", "lr": 0.01, "lrr": 3}}"#)
        try write("typo.json", #"{"_base_": "_base_/opt.json"}"#)
        func message(_ body: () throws -> Void) -> String {
            do { try body(); return "no error" } catch { return "\(error)" }
        }
        // Unknown key: names the base file that introduced it.
        var m = message { try Config.load(path: "\(dir)/typo.json").validate(schema) }
        XCTAssertTrue(m.contains("_base_/opt.json") && m.contains("unknown key optimizer.lrr"), m)
        // Wrong type from an override names the override.
        try write("ok.json", #"{"optimizer": {"type": "SGD", "lr": 0.01}}"#)
        m = message { try Config.load(path: "\(dir)/ok.json", overrides: ["optimizer.lr=fast"]).validate(schema) }
        XCTAssertTrue(m.contains("--set optimizer.lr") && m.contains("expected a number, got string"), m)
        m = message { try Config.load(path: "\(dir)/ok.json", overrides: ["optimizer.type=Adam"]).validate(schema) }
        XCTAssertTrue(m.contains("expected one of 'SGD', 'AdamW'"), m)
        // Missing files: the config itself, and a _base_ (named by the file that asked for it).
        m = message { _ = try Config.load(path: "\(dir)/nope.json") }
        XCTAssertTrue(m.contains("nope.json: config file not found"), m)
        try write("badbase.json", #"{"_base_": "_base_/missing.json"}"#)
        m = message { _ = try Config.load(path: "\(dir)/badbase.json") }
        XCTAssertTrue(m.contains("badbase.json") && m.contains("_base_ '_base_/missing.json' not found"), m)
        // Missing required key, malformed JSON, cycles.
        try write("empty.json", "{}")
        m = message { try Config.load(path: "\(dir)/empty.json").validate(schema) }
        XCTAssertTrue(m.contains("missing key optimizer"), m)
        try write("broken.json", #"{"optimizer": }"#)
        m = message { _ = try Config.load(path: "\(dir)/broken.json") }
        XCTAssertTrue(m.contains("broken.json") && m.contains("malformed JSON"), m)
        try write("loop.json", #"{"_base_": "loop.json"}"#)
        m = message { _ = try Config.load(path: "\(dir)/loop.json") }
        XCTAssertTrue(m.contains("cycle"), m)
        m = message { _ = try Config.load(path: "\(dir)/ok.json", overrides: ["novalue"]) }
        XCTAssertTrue(m.contains("expected key.path=value"), m)
        // Overrides answer for the keys they create, and for malformed keys.
        m = message { _ = try Config.load(path: "\(dir)/ok.json", overrides: ["a..b=1"]) }
        XCTAssertTrue(m.hasPrefix("--set a..b: bad key 'a..b'"), m)
        m = message { try Config.load(path: "\(dir)/ok.json", overrides: ["a.b=1"]).validate(schema) }
        XCTAssertTrue(m.hasPrefix("--set a.b: unknown key a "), m)
        // Alternatives: the error of the one of the value's kind (a string is checked against the choices, not
        // reported as "expected a list").
        let metric = ConfigSchema.object([.init("metric", .anyOf([.oneOf(["bbox", "segm"]), .array(.oneOf(["bbox", "segm"]))]))])
        m = message { try Config(json: try JSON.parse(#"{"metric": "mAPP"}"#)).validate(metric) }
        XCTAssertTrue(m.contains("metric: expected one of 'bbox', 'segm', got \"mAPP\""), m)
        m = message { try Config(json: try JSON.parse(#"{"metric": 3}"#)).validate(metric) }
        XCTAssertTrue(m.contains("metric: expected a list, got integer"), m)
    }

    func testShippedConfigs() throws {
        let root = Self.packageRoot + "/configs/retinanet"
        let shapes = try DetectionConfig.load(path: "\(root)/retinanet_acmix_resnet26_fpn_shapes.json")
        XCTAssertEqual(try shapes.string("model.backbone.arch"), "acmix_resnet26")
        XCTAssertEqual(try shapes.int("model.bbox_head.num_classes"), 4)
        let settings = try TrainerSettings(config: shapes)
        XCTAssertEqual(settings.optimizerType, "AdamW")
        XCTAssertEqual(try shapes.int("model.bbox_head.stacked_convs"), 1)
        // COCO configs: the schedule is the mmdet 1x one; they stop at the data section until COCO loading lands.
        let r50 = try Config.load(path: "\(root)/retinanet_resnet50_fpn_1x_coco.json")
        try r50.validate(DetectionConfig.schema)
        let s = try TrainerSettings(config: r50)
        XCTAssertEqual(s.lr, 0.01); XCTAssertEqual(s.steps, [8, 11]); XCTAssertEqual(s.maxEpochs, 12)
        XCTAssertEqual(s.warmupIters, 500); XCTAssertEqual(s.warmupRatio, 0.001); XCTAssertEqual(s.weightDecay, 1e-4)
        XCTAssertEqual(s.schedule(itersPerEpoch: 100).lr(at: 850), 0.001, accuracy: 1e-12)
        let acmix = try Config.load(path: "\(root)/retinanet_acmix_resnet50_fpn_1x_coco.json")
        XCTAssertEqual(try acmix.string("model.backbone.arch"), "acmix_resnet50")
        // COCO's files are checked before any work (none are on this machine).
        XCTAssertThrowsError(try DetectionConfig.validate(acmix)) {
            XCTAssertTrue("\($0)".contains("data.coco.train_ann: file not found"), "\($0)")
        }
        for (file, arch) in [("retinanet_swin_tiny_fpn_1x_coco.json", "swin_tiny"), ("retinanet_acmix_swin_tiny_fpn_1x_coco.json", "acmix_swin_tiny")] {
            let c = try Config.load(path: "\(root)/\(file)")
            try c.validate(DetectionConfig.schema)
            let t = try TrainerSettings(config: c)
            XCTAssertEqual(t.optimizerType, "AdamW"); XCTAssertEqual(t.weightDecay, 0.05); XCTAssertTrue(t.noDecayOn1D)
            XCTAssertTrue(t.noDecayKeys.contains("relative_position_bias_table"))
            XCTAssertEqual(try c.string("model.backbone.arch"), arch)
            XCTAssertNoThrow(try Registries.backbones.build(c.section("model.backbone")))
        }
        // Unknown head / neck types and keys are caught with the file named.
        let path = "\(root)/retinanet_acmix_resnet26_fpn_shapes.json"
        for (o, needle) in [("model.bbox_head.type=FCOSHead", "unknown type 'FCOSHead'"), ("model.neck.typo=1", "unknown key model.neck.typo"),
                            ("model.backbone.arch=resnet18", "unknown arch 'resnet18'"), ("runner.max_epochs=ten", "expected an integer")] {
            XCTAssertThrowsError(try DetectionConfig.load(path: path, overrides: [o])) { XCTAssertTrue("\($0)".contains(needle), "\($0)") }
        }
    }
}
