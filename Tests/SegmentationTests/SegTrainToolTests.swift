import Foundation
import NN
import TestSupport
import XCTest

/// The seg-train command line, run as a process on the release build next to the tests.
final class SegTrainToolTests: XCTestCase {
    let root = ToolRunner.packageRoot

    func run(_ args: [String], cwd: String) throws -> (Int32, String, String) {
        let r = try ToolRunner.run("seg-train", args, cwd: cwd)
        return (r.status, r.stdout, r.stderr)
    }

    func testConfigErrorsAndATinyRunWithMIoU() throws {
        let tmp = NSTemporaryDirectory() + "seg-train-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: tmp, withIntermediateDirectories: true)
        var (code, out, err) = try run(["--dry-run"], cwd: tmp)
        XCTAssertEqual(code, 0, err)
        XCTAssertTrue(out.contains("\"UPerHead\""), out)
        (code, _, err) = try run(["--set", "model.decode_head.typo=1"], cwd: tmp)
        XCTAssertEqual(code, 2)
        XCTAssertTrue(err.contains("unknown key model.decode_head.typo"), err)
        (code, _, err) = try run(["--config", root.appendingPathComponent("configs/upernet/upernet_acmix_swin_tiny_512x512_160k_ade20k.json").path], cwd: tmp)
        XCTAssertEqual(code, 2)
        XCTAssertTrue(err.contains("data.ade20k.root: missing folder"), err)
        XCTAssertFalse(FileManager.default.fileExists(atPath: "\(tmp)/work_dirs"), "nothing may be written before the config is valid")

        let tiny = ["--work-dir", "\(tmp)/work", "--set", "data.shapes={\"size\": 96, \"train_count\": 8, \"val_count\": 2}",
                    "--set", "data.img_scale=[96,96]", "--set", "data.crop_size=[96,96]", "--set", "data.samples_per_gpu=2",
                    "--set", "evaluation.interval=3", "--set", "log_config.interval=1"]
        (code, out, err) = try run(tiny + ["--set", #"runner={"type": "IterBasedRunner", "max_iters": 3}"#], cwd: tmp)
        XCTAssertEqual(code, 0, err)
        (code, out, err) = try run(tiny + ["--set", #"runner={"type": "IterBasedRunner", "max_iters": 6}"#, "--resume"], cwd: tmp)
        XCTAssertEqual(code, 0, err)
        XCTAssertTrue(out.contains("done: 6 iterations") && out.contains("mIoU"), out)
        for f in ["config.json", "log.jsonl", "latest.safetensors", "best.safetensors", "curves.png"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: "\(tmp)/work/\(f)"), f)
        }
        let records = try String(contentsOfFile: "\(tmp)/work/log.jsonl", encoding: .utf8).split(separator: "\n").map { try JSON.parse(String($0)) }
        XCTAssertEqual(records.filter { $0["decode.loss_seg"] != nil && $0["aux.loss_seg"] != nil && $0["loss"] != nil }.compactMap { $0["iter"]?.intValue }, [1, 2, 3, 4, 5, 6])
        let evaluations = records.filter { $0["mIoU"] != nil }
        XCTAssertEqual(evaluations.compactMap { $0["iter"]?.intValue }, [3, 6])
        for e in evaluations {
            for k in ["mIoU", "mAcc", "aAcc"] {
                let v = try XCTUnwrap(e[k]?.doubleValue, k)
                XCTAssertTrue(v >= 0 && v <= 1, "\(k) = \(v)")
            }
        }
    }

    /// `seg-eval --config/--checkpoint` scores the model as the trainer's evaluation does, and its palette label maps
    /// read back through the label-map form give the same figures.
    func testSegEvalModelFormMatchesTheTrainerAndTheLabelMapForm() throws {
        let tmp = try ToolRunner.temporaryDirectory("seg-eval")
        let tiny = ["--work-dir", "\(tmp)/work", "--set", "data.shapes={\"size\": 96, \"train_count\": 4, \"val_count\": 3}",
                    "--set", "data.img_scale=[96,96]", "--set", "data.crop_size=[96,96]", "--set", "data.samples_per_gpu=2",
                    "--set", "evaluation.interval=2", "--set", #"runner={"type": "IterBasedRunner", "max_iters": 2}"#]
        let (code, _, err) = try run(tiny, cwd: tmp)
        XCTAssertEqual(code, 0, err)
        let log = try String(contentsOfFile: "\(tmp)/work/log.jsonl", encoding: .utf8).split(separator: "\n").map { try JSON.parse(String($0)) }
        let trainerMIoU = try XCTUnwrap(log.last { $0["mIoU"] != nil }?["mIoU"]?.doubleValue)

        var r = try ToolRunner.run("seg-eval", ["--config", "\(tmp)/work/config.json", "--checkpoint", "\(tmp)/work/latest.safetensors",
                                                "--show-dir", "\(tmp)/show", "--json-out", "\(tmp)/model.json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("| background |") && r.stdout.contains("| ellipse    |") && r.stdout.contains("Summary: aAcc"), r.stdout)
        let model = try JSON.parse(String(contentsOfFile: "\(tmp)/model.json", encoding: .utf8))
        XCTAssertEqual(try XCTUnwrap(model["mIoU"]?.doubleValue), trainerMIoU, accuracy: 1e-12)
        let names = ["val_000000.png", "val_000001.png", "val_000002.png"]
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: "\(tmp)/show/overlay").sorted(), names)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: "\(tmp)/show/pred").sorted(), names)

        // The same dataset on disk (same seed and size), scored from the saved label maps.
        r = try ToolRunner.run("make-shapes", ["--out", "\(tmp)/shapes", "--size", "96", "--train", "1", "--val", "3"])
        XCTAssertEqual(r.status, 0, r.stderr)
        r = try ToolRunner.run("seg-eval", ["--gt-dir", "\(tmp)/shapes/annotations/validation", "--pred-dir", "\(tmp)/show/pred",
                                            "--num-classes", "5", "--json-out", "\(tmp)/maps.json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let maps = try JSON.parse(String(contentsOfFile: "\(tmp)/maps.json", encoding: .utf8))
        for k in ["aAcc", "mIoU", "mAcc"] { XCTAssertEqual(maps[k]?.doubleValue, model[k]?.doubleValue, k) }

        r = try ToolRunner.run("seg-eval", ["--config", "\(tmp)/work/config.json", "--checkpoint", "\(tmp)/work/latest.safetensors",
                                            "--set", "model.decode_head.channels=32"])
        XCTAssertEqual(r.status, 1, "weights that do not fit are not a usage error")
        XCTAssertTrue(r.stderr.contains("latest.safetensors: checkpoint does not fit the model"), r.stderr)
        r = try ToolRunner.run("seg-eval", ["--config", "\(tmp)/work/config.json"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("--config and --checkpoint go together"), r.stderr)
    }
}
