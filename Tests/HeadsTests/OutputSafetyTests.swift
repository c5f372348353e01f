import Config
import Data
import Engine
import Foundation
import Heads
import NN
import Tasks
import TestSupport
import ToolSupport
import Training
import XCTest

/// Reliability round 2: no tool's output replaces or lands inside one of its inputs, every input gets its own output
/// name, errors are one line (usage errors exit 2), a .pth is named as such, EXIF orientation is applied, det-infer's
/// class names do not depend on the dataset file being on disk.
final class OutputSafetyTests: XCTestCase {
    let root = ToolRunner.packageRoot.path

    /// A tiny RetinaNet on the shapes config and its random weights.
    func detector(_ dir: String, metadata: [String: String] = [:], coco: Bool = false) throws -> (config: String, args: [String], weights: String) {
        var overrides = ["model.backbone.arch=resnet50", "model.backbone.base_width=8", "data.shapes.root=\(dir)/shapes",
                         "data.img_scale=[64,64]", "model.test_cfg.score_thr=0.0"]
        var config = "\(root)/configs/retinanet/retinanet_acmix_resnet26_fpn_shapes.json"
        if coco {
            config = "\(root)/configs/retinanet/retinanet_resnet50_fpn_1x_coco.json"
            overrides = ["model.backbone.base_width=8", "data.img_scale=[64,64]", "data.coco.val_ann=\(dir)/absent/instances_val.json",
                         "model.test_cfg.score_thr=0.0"]
        }
        let cfg = try DetectionConfig.loadForInference(path: config, overrides: overrides)
        EngineRandom.seed(5)
        let model = try DetectionConfig.buildModel(cfg)
        let head = (model as! SingleStageDetector).bbox_head as! RetinaHead
        head.retina_cls.bias!.assign(Init.normal(head.retina_cls.bias!.shape, std: 3))
        let weights = "\(dir)/w.safetensors"
        try SafeTensors.write(model.namedTensors(), metadata: metadata, to: weights)
        return (config, overrides.flatMap { ["--set", $0] }, weights)
    }

    func image(_ path: String, seed: UInt64 = 1) throws {
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try writePNG(ShapesGenerator(size: 64, seed: seed).example(split: 1, index: 0).image, to: path)
    }

    func bytes(_ path: String) -> Data? { FileManager.default.contents(atPath: path) }

    func testInferenceOutputsNeverLandInAnInputFolder() throws {
        let dir = try ToolRunner.temporaryDirectory("outsafe")
        let m = try detector(dir)
        try image("\(dir)/D/vis/a.png")
        let before = bytes("\(dir)/D/vis/a.png")
        for tool in ["det-infer", "seg-infer"] {
            let sub = tool == "det-infer" ? "vis" : "pred"
            if tool == "seg-infer" { try image("\(dir)/D/pred/a.png") }
            let cfg = tool == "det-infer" ? m.config : "\(root)/configs/upernet/upernet_acmix_resnet26_shapes.json"
            let r = try ToolRunner.run(tool, ["--config", cfg, "--checkpoint", m.weights, "--out-dir", "\(dir)/D", "\(dir)/D/\(sub)"])
            XCTAssertEqual(r.status, 2, "\(tool): \(r.stderr)")
            XCTAssertTrue(r.stderr.contains("lies inside the input folder"), r.stderr)
            XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
        }
        XCTAssertEqual(bytes("\(dir)/D/vis/a.png"), before, "the input image was replaced")
        // Through a symbolic link to the input folder as well.
        try FileManager.default.createSymbolicLink(atPath: "\(dir)/link", withDestinationPath: "\(dir)/D")
        let r = try ToolRunner.run("det-infer", ["--config", m.config, "--checkpoint", m.weights, "--out-dir", "\(dir)/link"] + m.args + ["\(dir)/D/vis/a.png", "\(dir)/D/vis"])
        XCTAssertEqual(r.status, 2, r.stderr)
        XCTAssertEqual(bytes("\(dir)/D/vis/a.png"), before)
    }

    func testExportFeaturesNeverReplacesItsWeights() throws {
        let dir = try ToolRunner.temporaryDirectory("outsafe-export")
        let m = try detector(dir)
        try FileManager.default.createDirectory(atPath: "\(dir)/D", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: m.weights, toPath: "\(dir)/D/w.safetensors")
        try image("\(dir)/good/w.png")
        let before = bytes("\(dir)/D/w.safetensors")
        let r = try ToolRunner.run("export-features", ["--arch", "resnet50", "--weights", "\(dir)/D/w.safetensors", "--image", "\(dir)/good/",
                                                       "--output", "\(dir)/D"])
        XCTAssertEqual(r.status, 2, r.stderr)
        XCTAssertTrue(r.stderr.contains("is the --weights file"), r.stderr)
        XCTAssertEqual(bytes("\(dir)/D/w.safetensors"), before, "the weights were replaced")
    }

    func testEveryInputGetsItsOwnOutputName() throws {
        XCTAssertEqual(ImageList.uniqueStems(["x", "x_1", "x"]), ["x", "x_1", "x_2"])
        XCTAssertEqual(ImageList.uniqueStems(["x", "x", "x_1", "x"]), ["x", "x_2", "x_1", "x_3"])
        XCTAssertEqual(ImageList.uniqueStems(["a", "b"]), ["a", "b"])
        let dir = try ToolRunner.temporaryDirectory("outsafe-names")
        let m = try detector(dir)
        try image("\(dir)/a/x.png", seed: 1); try image("\(dir)/a/x_1.png", seed: 2); try image("\(dir)/b/x.jpg.png", seed: 3)
        try image("\(dir)/b/x.png", seed: 4)
        let r = try ToolRunner.run("det-infer", ["--config", m.config, "--checkpoint", m.weights, "--out-dir", "\(dir)/out"] + m.args
                                   + ["\(dir)/a", "\(dir)/b"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let drawn = try FileManager.default.contentsOfDirectory(atPath: "\(dir)/out/vis").sorted()
        XCTAssertEqual(drawn, ["x.jpg.png", "x.png", "x_1.png", "x_2.png"])
        let json = try JSON.parse(String(contentsOfFile: "\(dir)/out/predictions.json", encoding: .utf8))
        XCTAssertEqual(json.arrayValue?.count, 4)
    }

    func testUsageErrorsAreOneLineWithStatus2() throws {
        for (tool, args, needle) in [("make-shapes", ["--out", "/tmp/x", "--format", "gif"], "'jpg' and 'png'"),
                                     ("det-eval", ["--annotations", "a", "--results", "b", "--iou-type", "keypoints"], "'bbox' and 'segm'"),
                                     ("det-infer", [], "--config"), ("det-train", ["--bogus"], "--bogus"),
                                     ("bench", ["--case", "nope"], "unknown case")]
            + (CPUInfo.current.hasBF16 ? [] : [("det-train", ["--amp", "bf16", "--dry-run"], "amp bf16: this CPU"),
                                                ("bench", ["--case", "sgemm_1024", "--precision", "bf16"], "--precision bf16: this CPU")]) {
            let r = try ToolRunner.run(tool, args)
            XCTAssertEqual(r.status, 2, "\(tool) \(args): \(r.stderr)")
            let lines = r.stderr.split(separator: "\n")
            XCTAssertEqual(lines.count, 1, "\(tool): \(r.stderr)")
            XCTAssertTrue(r.stderr.hasPrefix("\(tool): error: ") && r.stderr.contains(needle), r.stderr)
        }
    }

    func testAPyTorchCheckpointIsNamedAsSuch() throws {
        let dir = try ToolRunner.temporaryDirectory("outsafe-pth")
        let m = try detector(dir)
        // torch.save's zip container starts with a local file header.
        try Data([0x50, 0x4B, 0x03, 0x04] + [UInt8](repeating: 7, count: 200)).write(to: URL(fileURLWithPath: "\(dir)/model.pth"))
        try image("\(dir)/i.png")
        let r = try ToolRunner.run("det-infer", ["--config", m.config, "--checkpoint", "\(dir)/model.pth", "--out-dir", "\(dir)/o"] + m.args + ["\(dir)/i.png"])
        XCTAssertEqual(r.status, 1, r.stderr)
        XCTAssertTrue(r.stderr.contains("a PyTorch checkpoint (.pth)") && r.stderr.contains("scripts/convert_pth.py"), r.stderr)
        XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
    }

    func testOneMissingImageIsOneLine() throws {
        let dir = try ToolRunner.temporaryDirectory("outsafe-missing")
        let m = try detector(dir)
        let r = try ToolRunner.run("export-features", ["--arch", "resnet50", "--weights", m.weights, "--image", "\(dir)/nope.jpg",
                                                       "--output", "\(dir)/f.safetensors"])
        XCTAssertEqual(r.status, 1, r.stderr)
        XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
        XCTAssertTrue(r.stderr.contains("nope.jpg"), r.stderr)
    }

    /// Without the COCO annotation file, an 80-class COCO model's detections carry COCO's names and sparse ids, as
    /// they do with it; a checkpoint's own class names (mmdet's dataset_meta) win over "class N".
    func testDetInferClassNamesDoNotDependOnTheDatasetFile() throws {
        let dir = try ToolRunner.temporaryDirectory("outsafe-classes")
        let m = try detector(dir, coco: true)
        try image("\(dir)/i.png")
        let r = try ToolRunner.run("det-infer", ["--config", m.config, "--checkpoint", m.weights, "--out-dir", "\(dir)/o", "--score-thr", "0"]
                                   + m.args + ["\(dir)/i.png"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let json = try JSON.parse(String(contentsOfFile: "\(dir)/o/predictions.json", encoding: .utf8))
        let dets = try XCTUnwrap(json.arrayValue?.first?["detections"]?.arrayValue)
        XCTAssertFalse(dets.isEmpty)
        for d in dets {
            let name = try XCTUnwrap(d["category"]?.stringValue), id = try XCTUnwrap(d["category_id"]?.intValue)
            let index = try XCTUnwrap(COCOClasses.names.firstIndex(of: name), name)
            XCTAssertEqual(COCOClasses.ids[index], id)
        }
        XCTAssertEqual(COCOClasses.ids.count, 80)
        XCTAssertEqual(COCOClasses.ids.last, 90)

        let named = try DetectionDatasets.categories(try DetectionConfig.loadForInference(
            path: "\(root)/configs/retinanet/retinanet_resnet50_fpn_1x_coco.json",
            overrides: ["data.coco.val_ann=\(dir)/absent.json"]).section("data"), numClasses: 3, checkpointClasses: ["cat", "dog", "bird"])
        XCTAssertEqual(named.names, ["cat", "dog", "bird"])
        XCTAssertEqual(named.categoryIDs, [1, 2, 3])
    }

    /// A phone photo stored 4×2 with EXIF orientation 6 is read 2×4, turned as OpenCV's imread turns it.
    func testEXIFOrientationIsApplied() throws {
        var pixels: [UInt8] = []
        for y in 0..<2 { for x in 0..<4 { pixels += [UInt8(x * 60), UInt8(y * 200), 0] } }
        let stored = Image(width: 4, height: 2, pixels: pixels)
        XCTAssertEqual(stored.oriented(1), stored)
        for o in 1...8 {
            // Each orientation undone by its inverse gives the stored image back.
            let inverse = [1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 8, 7: 7, 8: 6][o]!
            XCTAssertEqual(stored.oriented(o).oriented(inverse), stored, "orientation \(o)")
        }
        let r6 = stored.oriented(6)
        XCTAssertEqual([r6.width, r6.height], [2, 4])
        // Rotated 90° clockwise: the stored bottom-left pixel is the new top-left.
        XCTAssertEqual(Array(r6.pixels[0..<3]), [0, 200, 0])
        XCTAssertEqual(Array(r6.pixels[3..<6]), [0, 0, 0])

        // The tag itself, read from an APP1 Exif segment in both byte orders.
        for little in [true, false] {
            func u16(_ v: Int) -> [UInt8] { little ? [UInt8(v & 255), UInt8(v >> 8)] : [UInt8(v >> 8), UInt8(v & 255)] }
            func u32(_ v: Int) -> [UInt8] { little ? u16(v & 0xFFFF) + u16(v >> 16) : u16(v >> 16) + u16(v & 0xFFFF) }
            let tiff: [UInt8] = (little ? [0x49, 0x49] : [0x4D, 0x4D]) + u16(42) + u32(8) + u16(1)
                + u16(0x0112) + u16(3) + u32(1) + u16(6) + [0, 0] + u32(0)
            let app1 = [0x45, 0x78, 0x69, 0x66, 0, 0] + tiff
            let jpeg: [UInt8] = [0xFF, 0xD8, 0xFF, 0xE1] + [UInt8((app1.count + 2) >> 8), UInt8((app1.count + 2) & 255)] + app1 + [0xFF, 0xD9]
            XCTAssertEqual(exifOrientation(ofJPEG: jpeg), 6)
            // Truncated anywhere: no orientation, no crash.
            for cut in stride(from: 4, to: jpeg.count, by: 3) { _ = exifOrientation(ofJPEG: Array(jpeg[0..<cut])) }
        }
        XCTAssertEqual(exifOrientation(ofJPEG: [0xFF, 0xD8, 0xFF, 0xD9]), 1)
    }

    /// A run killed while writing leaves NAME.tmp-PID; the next write of NAME removes it (whatever file it was for),
    /// but never a live process's temporary nor a file of another name.
    func testStaleTemporariesOfEveryKindAreRemoved() throws {
        let dir = try ToolRunner.temporaryDirectory("outsafe-stale")
        var dead: Int32 = 4_000_000
        while kill(dead, 0) == 0 || errno == EPERM { dead -= 1 }
        for name in ["curves.png.tmp-\(dead)", "best.safetensors.tmp-\(dead)", "log.jsonl.tmp-1", "notes.txt.tmp-\(dead)"] {
            try Data([1, 2, 3]).write(to: URL(fileURLWithPath: "\(dir)/\(name)"))
        }
        try writeAtomically("x", to: "\(dir)/curves.png")
        try writeAtomically("x", to: "\(dir)/best.safetensors")
        try writeAtomically("x", to: "\(dir)/log.jsonl")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir).sorted(),
                       ["best.safetensors", "curves.png", "log.jsonl", "log.jsonl.tmp-1", "notes.txt.tmp-\(dead)"])
        // The work dir of a training run is cleared of every stale temporary at start.
        removeStaleTemporaries(in: dir)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir).sorted(),
                       ["best.safetensors", "curves.png", "log.jsonl", "log.jsonl.tmp-1"])
    }

    /// Outputs given through another spelling of an input (.., symbolic links, hard links) are refused by every
    /// write, not only the ones a tool checks up front.
    func testEveryWriteIsGuarded() throws {
        let dir = try ToolRunner.temporaryDirectory("outsafe-guard")
        defer { ProtectedInputs.removeAll() }
        try FileManager.default.createDirectory(atPath: "\(dir)/in/sub", withIntermediateDirectories: true)
        try writeAtomically("weights", to: "\(dir)/w.bin")
        try FileManager.default.linkItem(atPath: "\(dir)/w.bin", toPath: "\(dir)/hard.bin")
        ProtectedInputs.add("\(dir)/w.bin", option: "--weights")
        ProtectedInputs.add("\(dir)/in", option: "image folder")
        for bad in ["\(dir)/w.bin", "\(dir)/in/../w.bin", "\(dir)/hard.bin", "\(dir)/in/new.png", "\(dir)/in/sub/deeper/x.png", "\(dir)/in"] {
            XCTAssertThrowsError(try writeAtomically("x", to: bad), bad) { e in
                XCTAssertEqual((e as? KitError)?.exitCode, 2, "\(e)")
            }
        }
        XCTAssertEqual(try String(contentsOfFile: "\(dir)/w.bin", encoding: .utf8), "weights")
        XCTAssertNoThrow(try writeAtomically("ok", to: "\(dir)/out.bin"))
        XCTAssertNoThrow(try writeAtomically("ok", to: "\(dir)/inside.png"))   // a sibling whose name starts like the folder's
    }

    /// A work dir that is a file is a usage error, reported once before any work (under mpirun by rank 0 alone).
    func testWorkDirThatIsAFile() throws {
        let dir = try ToolRunner.temporaryDirectory("outsafe-workdir")
        try writeAtomically("keep", to: "\(dir)/work")
        let r = try ToolRunner.run("det-train", ["--work-dir", "\(dir)/work", "--set", "data.shapes.root=\(dir)/shapes"])
        XCTAssertEqual(r.status, 2, r.stderr)
        XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
        XCTAssertTrue(r.stderr.contains("is a file"), r.stderr)
        XCTAssertEqual(try String(contentsOfFile: "\(dir)/work", encoding: .utf8), "keep")
    }

    /// det-eval --show-dir inside the dataset's folders is refused before any drawing: the data section's files and
    /// folders are inputs too.
    func testShowDirInsideTheDatasetIsRefused() throws {
        let dir = try ToolRunner.temporaryDirectory("outsafe-showdir")
        let m = try detector(dir)
        let small = ["--set", "data.shapes.size=64", "--set", "data.shapes.train_count=4", "--set", "data.shapes.val_count=2"]
        let r = try ToolRunner.run("det-eval", ["--config", m.config, "--checkpoint", m.weights, "--show-dir", "\(dir)/shapes/images/validation"]
                                   + m.args + small)
        XCTAssertEqual(r.status, 2, r.stderr)
        XCTAssertTrue(r.stderr.contains("lies inside the data.shapes.root folder"), r.stderr)
        let images = try FileManager.default.contentsOfDirectory(atPath: "\(dir)/shapes/images/validation")
        XCTAssertFalse(images.contains { $0.hasSuffix(".png") }, "drawings were written into the dataset: \(images)")
    }

    /// A write that fails (a full disk; here a folder standing where the first output goes) stops the run at once
    /// with one line, instead of one error per image while the model keeps running.
    func testAFailedWriteStopsTheRun() throws {
        let dir = try ToolRunner.temporaryDirectory("outsafe-write")
        try image("\(dir)/in/a.png", seed: 1); try image("\(dir)/in/b.png", seed: 2)
        try FileManager.default.createDirectory(atPath: "\(dir)/out/pred/a.png", withIntermediateDirectories: true)
        // seg-infer with a segmentor config: random weights of its own shape.
        let cfg = "\(root)/configs/upernet/upernet_acmix_resnet26_shapes.json"
        let overrides = ["model.backbone.arch=resnet50", "model.backbone.base_width=8", "data.img_scale=[64,64]", "data.crop_size=[64,64]"]
        let seg = try SegmentationConfig.buildModel(try SegmentationConfig.loadForInference(path: cfg, overrides: overrides))
        try SafeTensors.write(seg.namedTensors(), to: "\(dir)/seg.safetensors")
        let r = try ToolRunner.run("seg-infer", ["--config", cfg, "--checkpoint", "\(dir)/seg.safetensors", "--out-dir", "\(dir)/out"]
                                   + overrides.flatMap { ["--set", $0] } + ["\(dir)/in"])
        XCTAssertEqual(r.status, 1, r.stderr)
        XCTAssertEqual(r.stderr.split(separator: "\n").filter { $0.contains("error") }.count, 1, r.stderr)
        XCTAssertTrue(r.stderr.contains("a.png"), r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: "\(dir)/out/pred/b.png"), "the run went on after a failed write")
    }
}
