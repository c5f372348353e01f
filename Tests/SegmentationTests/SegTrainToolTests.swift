import Foundation
import NN
import XCTest

/// The seg-train command line, run as a process on the release build next to the tests.
final class SegTrainToolTests: XCTestCase {
    let root: URL = {
        var url = URL(fileURLWithPath: #filePath)
        while !FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) { url.deleteLastPathComponent() }
        return url
    }()

    func run(_ args: [String], cwd: String) throws -> (Int32, String, String) {
        let tool = root.appendingPathComponent(".build/release/seg-train").path
        XCTAssertTrue(FileManager.default.isExecutableFile(atPath: tool), "build the release products first: \(tool)")
        let p = Process()
        p.executableURL = URL(fileURLWithPath: tool)
        p.arguments = args
        p.currentDirectoryURL = URL(fileURLWithPath: cwd)
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let o = out.fileHandleForReading.readDataToEndOfFile(), e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
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
        XCTAssertEqual(records.filter { $0["loss_seg"] != nil }.compactMap { $0["iter"]?.intValue }, [1, 2, 3, 4, 5, 6])
        let evaluations = records.filter { $0["mIoU"] != nil }
        XCTAssertEqual(evaluations.compactMap { $0["iter"]?.intValue }, [3, 6])
        for e in evaluations {
            for k in ["mIoU", "mAcc", "aAcc"] {
                let v = try XCTUnwrap(e[k]?.doubleValue, k)
                XCTAssertTrue(v >= 0 && v <= 1, "\(k) = \(v)")
            }
        }
    }
}
