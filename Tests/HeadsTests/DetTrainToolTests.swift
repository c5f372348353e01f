import Foundation
import NN
import XCTest
import Data
import Heads
import TestSupport

/// The det-train command line, run as a process on the release build next to the tests.
final class DetTrainToolTests: XCTestCase {
    let root = ToolRunner.packageRoot

    func run(_ args: [String], cwd: String? = nil) throws -> (Int32, String, String) {
        let r = try ToolRunner.run("det-train", args, cwd: cwd)
        return (r.status, r.stdout, r.stderr)
    }

    func testConfigErrorsComeFirstAndNameTheKey() throws {
        let tmp = NSTemporaryDirectory() + "det-train-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: tmp, withIntermediateDirectories: true)
        // The default config is found from any working directory; --dry-run prints the merged config.
        var (code, out, err) = try run(["--dry-run"], cwd: tmp)
        XCTAssertEqual(code, 0, err)
        XCTAssertTrue(out.contains("\"acmix_resnet26\""), out)
        (code, _, err) = try run(["--set", "model.neck.bad=1"], cwd: tmp)
        XCTAssertEqual(code, 2)
        XCTAssertTrue(err.contains("--set model.neck.bad: unknown key model.neck.bad"), err)
        (code, _, err) = try run(["--config", root.appendingPathComponent("configs/retinanet/retinanet_swin_tiny_fpn_1x_coco.json").path])
        XCTAssertEqual(code, 2)
        XCTAssertTrue(err.contains("data.coco.train_ann: file not found"), err)
        (code, _, err) = try run(["--config", "\(tmp)/missing.json"])
        XCTAssertEqual(code, 2)
        XCTAssertTrue(err.contains("missing.json: config file not found"), err)
        // ACmix needs inputs large enough for its 7x7 window at every stage.
        (code, _, err) = try run(["--set", "data.img_scale=[32,32]", "--set", "data.shapes.size=32"], cwd: tmp)
        XCTAssertEqual(code, 2)
        XCTAssertTrue(err.contains("data.img_scale") && err.contains("too small"), err)
        XCTAssertFalse(FileManager.default.fileExists(atPath: "\(tmp)/work_dirs"), "nothing may be written before the config is valid")
        // Environment settings are checked too: a profiling setting the tools do not know is one line, exit 2.
        let r = try ToolRunner.run("det-train", ["--dry-run"], cwd: tmp, environment: ["ACMIX_PROFILE_OPS": "yes"])
        XCTAssertEqual(r.status, 2, r.stderr)
        XCTAssertTrue(r.stderr.contains("ACMIX_PROFILE_OPS: 'yes' is not 0, 1 or shapes"), r.stderr)
    }

    func testTinyRunWritesTheWorkDirAndResumes() throws {
        let tmp = NSTemporaryDirectory() + "det-train-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: tmp, withIntermediateDirectories: true)
        let tiny = ["--work-dir", "\(tmp)/work", "--set", "model.backbone.arch=resnet50", "--set", "model.backbone.base_width=8",
                    "--set", "model.bbox_head.stacked_convs=1", "--set", "data.img_scale=[64,64]",
                    "--set", #"data.shapes={"size": 64, "train_count": 4, "val_count": 2, "root": "\#(tmp)/shapes"}"#,
                    "--set", "data.samples_per_gpu=2", "--set", "log_config.interval=1", "--set", "evaluation.interval=100",
                    "--set", "lr_config.step=[100]"]
        var (code, out, err) = try run(tiny + ["--set", #"runner={"type": "IterBasedRunner", "max_iters": 3}"#], cwd: tmp)
        XCTAssertEqual(code, 0, err)
        XCTAssertTrue(out.contains("done: 3 iterations"), out)
        for f in ["config.json", "log.jsonl", "latest.safetensors", "curves.png", "results_val.json"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: "\(tmp)/work/\(f)"), f)
        }
        XCTAssertTrue(FileManager.default.fileExists(atPath: "\(tmp)/shapes/annotations/instances_val.json"))
        (code, out, err) = try run(tiny + ["--set", #"runner={"type": "IterBasedRunner", "max_iters": 5}"#, "--resume"], cwd: tmp)
        XCTAssertEqual(code, 0, err)
        XCTAssertTrue(out.contains("done: 5 iterations"), out)
        let log = try String(contentsOfFile: "\(tmp)/work/log.jsonl", encoding: .utf8).split(separator: "\n")
        // Iteration records carry lr and the losses; the end-of-run evaluations (iterations 3 and 5) carry the COCO
        // bbox metrics as fractions.
        let records = try log.map { try JSON.parse(String($0)) }
        let training = records.filter { $0["lr"] != nil }, evaluations = records.filter { $0["bbox_mAP"] != nil }
        XCTAssertEqual(training.compactMap { $0["iter"]?.intValue }, [1, 2, 3, 4, 5])
        for e in training { for k in ["loss_cls", "loss_bbox", "loss"] { XCTAssertNotNil(e[k]?.doubleValue, k) } }
        XCTAssertEqual(evaluations.compactMap { $0["iter"]?.intValue }, [3, 5])
        for e in evaluations {
            for k in ["bbox_mAP", "bbox_mAP_50", "bbox_mAP_75", "bbox_mAP_s", "bbox_mAP_m", "bbox_mAP_l"] {
                let v = try XCTUnwrap(e[k]?.doubleValue, k)
                XCTAssertTrue(v >= 0 && v <= 1, "\(k) = \(v)")
            }
        }
        // Resuming into a schedule shorter than the checkpoint is refused, and the checkpoint is kept.
        (code, _, err) = try run(tiny + ["--set", #"runner={"type": "IterBasedRunner", "max_iters": 2}"#, "--resume"], cwd: tmp)
        XCTAssertEqual(code, 1)
        XCTAssertTrue(err.contains("latest.safetensors: iteration 5 is outside this schedule's 0...2"), err)
        // The shapes folder now holds seed 0's validation split: a config asking for another seed is refused before
        // any training, and the folder and the work dir are left as they were.
        let before = try Data(contentsOf: URL(fileURLWithPath: "\(tmp)/work/latest.safetensors"))
        (code, _, err) = try run(tiny + ["--set", "data.shapes.seed=1"], cwd: tmp)
        XCTAssertEqual(code, 1)
        XCTAssertTrue(err.contains("annotations/instances_val.json: the shapes dataset in") && err.contains("written with other parameters") && err.contains("seed 1"), err)
        XCTAssertEqual(err.split(separator: "\n").count, 1, err)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: "\(tmp)/work/latest.safetensors")), before)
    }

    /// A COCO-format dataset on disk (the shapes writer's files) trains and evaluates through COCOeval.
    func testCOCODatasetTrainsAndEvaluates() throws {
        let tmp = NSTemporaryDirectory() + "det-train-coco-\(UUID().uuidString)"
        try ShapesDatasetWriter(generator: ShapesGenerator(size: 64, seed: 3), trainCount: 4, valCount: 2).write(to: "\(tmp)/data")
        let coco = #"{"train_ann": "\#(tmp)/data/annotations/instances_train.json", "train_img_prefix": "\#(tmp)/data/images/training", "val_ann": "\#(tmp)/data/annotations/instances_val.json", "val_img_prefix": "\#(tmp)/data/images/validation"}"#
        let (code, out, err) = try run(["--config", root.appendingPathComponent("configs/retinanet/retinanet_resnet50_fpn_1x_coco.json").path,
                                        "--work-dir", "\(tmp)/work", "--set", "data.coco=\(coco)", "--set", "data.img_scale=[64,64]",
                                        "--set", "model.backbone.base_width=8", "--set", "data.workers_per_gpu=1",
                                        "--set", #"runner={"type": "IterBasedRunner", "max_iters": 2}"#], cwd: tmp)
        XCTAssertEqual(code, 0, err)
        XCTAssertTrue(out.contains("done: 2 iterations") && out.contains("bbox_mAP"), out)
        let log = try String(contentsOfFile: "\(tmp)/work/log.jsonl", encoding: .utf8)
        XCTAssertTrue(log.contains("\"bbox_mAP_50\""), log)
        // The Swin detector runs its backbone in dense mode, so any input size trains.
        let (swinCode, _, swinErr) = try run(["--config", root.appendingPathComponent("configs/retinanet/retinanet_acmix_swin_tiny_fpn_1x_coco.json").path,
                                              "--work-dir", "\(tmp)/swin", "--set", "data.coco=\(coco)", "--set", "data.img_scale=[64,64]",
                                              "--set", "data.workers_per_gpu=1", "--set", #"runner={"type": "IterBasedRunner", "max_iters": 1}"#], cwd: tmp)
        XCTAssertEqual(swinCode, 0, swinErr)
    }
}
