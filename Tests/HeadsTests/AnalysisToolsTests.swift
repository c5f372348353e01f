import Config
import Data
import Engine
import Evaluation
import Foundation
import NN
import Tasks
import TestSupport
import XCTest

/// get-flops against fvcore (Tests/Fixtures/flops, made by make_flops_reference.py), confusion-matrix against
/// mmdetection's own tool (Tests/Fixtures/confusion_matrix), analyze-logs and browse-dataset on shapes runs.
final class AnalysisToolsTests: XCTestCase {
    let root = ToolRunner.packageRoot.path
    var fixtures: String { "\(root)/Tests/Fixtures" }

    func testFlopsAndParamsEqualFvcoresPerOperatorAndModule() throws {
        let ref = try JSON.load(path: "\(fixtures)/flops/flops_reference.json")
        for arch in ["resnet50", "acmix_resnet26", "acmix_resnet50", "swin_tiny", "acmix_swin_tiny"] {
            let r = try XCTUnwrap(ref[arch], arch)
            let c = try Complexity.measure(arch: arch, dense: false, height: 224, width: 224)
            XCTAssertEqual(c.params, r["params_total"]?.intValue, arch)
            // fvcore skips the authors' unfolded local attention (ACmix-ResNet); we count it, as the paper does.
            let attention = r["extra"]?["acmix_local_attention_macs_not_counted_by_fvcore"]?.intValue ?? 0
            XCTAssertEqual(c.flops, try XCTUnwrap(r["fvcore_total"]?.intValue) + attention, arch)
            let ops = Dictionary(uniqueKeysWithValues: c.operators.map { ($0.op, $0.flops) })
            for (op, flops) in try XCTUnwrap(r["fvcore_by_operator"]?.objectValue) {
                XCTAssertEqual(ops[op], flops.intValue, "\(arch) \(op)")
            }
            XCTAssertEqual(ops["acmix_attention"] ?? 0, attention, arch)
            let modules = Dictionary(uniqueKeysWithValues: c.modules.map { ($0.name, $0) })
            for (name, params) in try XCTUnwrap(r["params_by_module"]?.objectValue) where params.intValue != 0 {
                XCTAssertEqual(modules[name]?.params, params.intValue, "\(arch) \(name)")
            }
            // Every module holds its own work, except that conv1's BatchNorm is fused into conv1 here and the global
            // pooling (no weights) is charged to the last stage. (ACmix-ResNet stages also hold the attention.)
            guard !arch.hasPrefix("acmix_resnet") else { continue }
            let fv = try XCTUnwrap(r["fvcore_by_module"]?.objectValue).reduce(into: [String: Int]()) { $0[$1.0] = $1.1.intValue }
            for (name, row) in modules {
                var expected = name == "bn1" ? 0 : fv[name] ?? -1
                if name == "conv1" { expected += fv["bn1"] ?? 0 }
                if name == "layer4" { expected += fv["avgpool"] ?? 0 }
                XCTAssertEqual(row.flops, expected, "\(arch) \(name)")
            }
        }
    }

    /// Counts and precisions outside what the tools take: one line each, exit status 2, nothing written.
    func testOutOfRangeCountsAndTrainingPrecisionAreRefused() throws {
        let tmp = try ToolRunner.temporaryDirectory("ranges")
        var r = try ToolRunner.run("make-shapes", ["--out", "\(tmp)/s", "--train", "10000000000", "--val", "1", "--size", "32"])
        XCTAssertEqual(r.status, 2, r.stderr)
        XCTAssertTrue(r.stderr.contains("--train and --val must be in 0...1000000"), r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: "\(tmp)/s"))
        r = try ToolRunner.run("det-train", ["--work-dir", "\(tmp)/w", "--amp", "int8", "--dry-run"])
        XCTAssertEqual(r.status, 2, r.stderr)
        XCTAssertTrue(r.stderr.contains("--amp takes fp32 or bf16; int8 is for inference"), r.stderr)
        XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
    }

    func testGetFlopsToolReportsConfigsAndRefusesBadInput() throws {
        let tmp = try ToolRunner.temporaryDirectory("get-flops")
        var r = try ToolRunner.run("get-flops", ["--config", "\(root)/configs/retinanet/retinanet_acmix_resnet26_fpn_shapes.json",
                                                 "--shape", "128", "160", "--json-out", "\(tmp)/f.json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("Input shape: (1, 3, 128, 160)"), r.stdout)
        let json = try JSON.load(path: "\(tmp)/f.json")
        let names = try XCTUnwrap(json["modules"]?.arrayValue).compactMap { $0["name"]?.stringValue }
        XCTAssertEqual(names, ["backbone", "neck", "bbox_head"])
        let total = try XCTUnwrap(json["modules"]?.arrayValue).compactMap { $0["flops"]?.intValue }.reduce(0, +)
        XCTAssertEqual(json["flops"]?.intValue, total)
        XCTAssertGreaterThan(total, 0)
        for (args, fragment) in [(["--arch", "resnet999"], "unknown backbone arch 'resnet999'"),
                                 (["--arch", "resnet50", "--shape", "16", "16"], "--shape takes two sizes"),
                                 (["--config", "\(tmp)/none.json"], "none.json"),
                                 (["--arch", "resnet50", "--config", "x.json"], "exactly one of --config and --arch")] {
            r = try ToolRunner.run("get-flops", args)
            XCTAssertNotEqual(r.status, 0, "\(args)")
            XCTAssertTrue(r.stderr.contains(fragment), "expected '\(fragment)' in: \(r.stderr)")
            XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
        }
    }

    func testConfusionMatrixEqualsMMDetections() throws {
        let dir = "\(fixtures)/confusion_matrix"
        let expected = try JSON.load(path: "\(dir)/expected.json")
        let gt = try COCODataset.load("\(dir)/gt.json"), dt = try gt.loadRes("\(dir)/results.json")
        let cases = try XCTUnwrap(expected["cases"]?.arrayValue)
        XCTAssertEqual(cases.count, 4)
        for c in cases {
            let score = try XCTUnwrap(c["score_thr"]?.doubleValue), iou = try XCTUnwrap(c["tp_iou_thr"]?.doubleValue)
            let m = ConfusionMatrix.compute(gt: gt, results: dt, scoreThreshold: score, iouThreshold: iou)
            XCTAssertEqual(m.classes, expected["classes"]?.arrayValue?.compactMap(\.stringValue))
            XCTAssertEqual(m.categoryIDs, expected["category_ids"]?.arrayValue?.compactMap(\.intValue))
            let matrix = try XCTUnwrap(c["matrix"]?.arrayValue).map { $0.arrayValue!.compactMap(\.intValue) }
            XCTAssertEqual(m.counts, matrix, "score \(score) iou \(iou)")
            let percent = try XCTUnwrap(c["percent"]?.arrayValue).map { $0.arrayValue!.map(\.doubleValue) }
            for (row, ref) in zip(m.percent, percent) {
                for (v, e) in zip(row, ref) {
                    XCTAssertEqual(v == nil, e == nil)
                    if let v, let e { XCTAssertEqual(v, e, accuracy: 1e-9) }
                }
            }
            let text = try XCTUnwrap(c["percent_text"]?.arrayValue).map { $0.arrayValue!.compactMap(\.stringValue) }
            XCTAssertEqual(m.percent.map { $0.map(ConfusionMatrix.cellText) }, text)
        }
        // The tool: PNG and JSON, the counts printed; an unknown image in the results is one line naming the file.
        let tmp = try ToolRunner.temporaryDirectory("confusion")
        var r = try ToolRunner.run("confusion-matrix", ["--annotations", "\(dir)/gt.json", "--results", "\(dir)/results.json",
                                                        "--out-dir", "\(tmp)/out"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let out = try JSON.load(path: "\(tmp)/out/confusion_matrix.json")
        XCTAssertEqual(out["matrix"]?.arrayValue?.map { $0.arrayValue!.compactMap(\.intValue) },
                       cases[0]["matrix"]?.arrayValue?.map { $0.arrayValue!.compactMap(\.intValue) })
        let png = try readImage("\(tmp)/out/confusion_matrix.png")
        XCTAssertGreaterThan(png.width, 5 * 40)
        XCTAssertTrue(r.stdout.contains("background"), r.stdout)
        try #"[{"image_id": 999, "category_id": 7, "bbox": [1, 2, 3, 4], "score": 0.9}]"#.write(toFile: "\(tmp)/bad.json", atomically: true, encoding: .utf8)
        r = try ToolRunner.run("confusion-matrix", ["--annotations", "\(dir)/gt.json", "--results", "\(tmp)/bad.json", "--out-dir", "\(tmp)/o2"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("bad.json"), r.stderr)
        XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
    }

    /// A tiny det-train run on shapes: its log and config.
    func trainTiny(_ tmp: String, mask: Bool = false) throws -> String {
        let config = mask ? "\(root)/configs/mask_rcnn/mask_rcnn_acmix_resnet26_fpn_shapes.json" : "\(root)/configs/retinanet/retinanet_acmix_resnet26_fpn_shapes.json"
        var args = ["--config", config, "--work-dir", "\(tmp)/work", "--set", "model.backbone.arch=resnet50", "--set", "model.backbone.base_width=8",
                    "--set", "data.img_scale=[64,64]", "--set", #"data.shapes={"size": 64, "train_count": 4, "val_count": 2, "root": "\#(tmp)/shapes"}"#,
                    "--set", "data.samples_per_gpu=2", "--set", "evaluation.interval=2", "--set", "log_config.interval=1",
                    "--set", "lr_config.step=[100]", "--set", #"runner={"type": "IterBasedRunner", "max_iters": 4}"#]
        if !mask { args += ["--set", "model.bbox_head.stacked_convs=1"] }
        let r = try ToolRunner.run("det-train", args)
        XCTAssertEqual(r.status, 0, r.stderr)
        return "\(tmp)/work"
    }

    func testAnalyzeLogsPlotsCurvesAndSummarisesStepTimes() throws {
        let tmp = try ToolRunner.temporaryDirectory("analyze-logs")
        let work = try trainTiny(tmp)
        var r = try ToolRunner.run("analyze-logs", ["cal_train_time", "\(work)/log.jsonl"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("average iter time:") && r.stdout.contains("over 3 iterations"), r.stdout)

        // Known times: the first interval (warm-up) is left out unless asked for.
        let lines = [#"{"iter":10,"lr":0.01,"loss":2.0,"time":1.0}"#, #"{"iter":20,"lr":0.01,"loss":1.5,"time":0.5}"#,
                     #"{"iter":20,"bbox_mAP":0.25}"#, #"{"iter":30,"lr":0.01,"loss":1.0,"time":0.7}"#, #"{"iter":30,"bbox_mAP":0.5}"#]
        try FileManager.default.createDirectory(atPath: "\(tmp)/b", withIntermediateDirectories: true)
        try (lines.joined(separator: "\n") + "\n").write(toFile: "\(tmp)/b/log.jsonl", atomically: true, encoding: .utf8)
        r = try ToolRunner.run("analyze-logs", ["cal_train_time", "\(tmp)/b/log.jsonl"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("slowest interval: iterations 21-30, average time is 0.7000 s/iter"), r.stdout)
        // A negative time is refused; a resumed run's first interval (iteration not above the previous) is skipped.
        try ([#"{"iter":10,"lr":0.01,"time":1.0}"#, #"{"iter":20,"lr":0.01,"time":-1}"#].joined(separator: "\n") + "\n")
            .write(toFile: "\(tmp)/b/neg.jsonl", atomically: true, encoding: .utf8)
        let neg = try ToolRunner.run("analyze-logs", ["cal_train_time", "\(tmp)/b/neg.jsonl"])
        XCTAssertEqual(neg.status, 1, neg.stderr)
        XCTAssertTrue(neg.stderr.contains("neg.jsonl: iteration 20: \"time\" must be a finite number ≥ 0, got -1.0"), neg.stderr)
        try ([#"{"iter":10,"lr":0.01,"time":1.0}"#, #"{"iter":20,"lr":0.01,"time":0.5}"#, #"{"iter":15,"lr":0.01,"time":9.0}"#,
              #"{"iter":25,"lr":0.01,"time":0.7}"#].joined(separator: "\n") + "\n")
            .write(toFile: "\(tmp)/b/resumed.jsonl", atomically: true, encoding: .utf8)
        let resumed = try ToolRunner.run("analyze-logs", ["cal_train_time", "--include-outliers", "\(tmp)/b/resumed.jsonl"])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertTrue(resumed.stdout.contains("slowest interval: iterations 1-10, average time is 1.0000 s/iter"), resumed.stdout)
        XCTAssertTrue(resumed.stdout.contains("over 30 iterations"), resumed.stdout)
        XCTAssertTrue(r.stdout.contains("fastest interval: iterations 11-20, average time is 0.5000 s/iter"), r.stdout)
        XCTAssertTrue(r.stdout.contains("time std over intervals is 0.1000"), r.stdout)
        XCTAssertTrue(r.stdout.contains("average iter time: 0.6000 s/iter over 20 iterations"), r.stdout)
        r = try ToolRunner.run("analyze-logs", ["cal_train_time", "\(tmp)/b/log.jsonl", "--include-outliers"])
        XCTAssertTrue(r.stdout.contains("average iter time: 0.7333 s/iter over 30 iterations"), r.stdout)

        // The config form of confusion-matrix on that run's detections: the validation split, the model's labels.
        r = try ToolRunner.run("det-eval", ["--config", "\(work)/config.json", "--checkpoint", "\(work)/latest.safetensors",
                                            "--set", "model.test_cfg.score_thr=0.0", "--out", "\(tmp)/results.json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        r = try ToolRunner.run("confusion-matrix", ["--config", "\(work)/config.json", "--results", "\(tmp)/results.json",
                                                    "--score-thr", "0", "--out-dir", "\(tmp)/cm"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let cm = try JSON.load(path: "\(tmp)/cm/confusion_matrix.json")
        let cfg = try DetectionConfig.loadForInference(path: "\(work)/config.json", overrides: [])
        let data = try DetectionDatasets.registry.build(cfg.section("data"), DetectionDataContext(seed: 0))
        let gt = try COCODataset.load(try data.valAnnotations())
        let expected = ConfusionMatrix.compute(gt: gt, results: try gt.loadRes("\(tmp)/results.json"), categoryIDs: data.categoryIDs,
                                               scoreThreshold: 0, iouThreshold: 0.5)
        XCTAssertEqual(cm["classes"]?.arrayValue?.compactMap(\.stringValue), ["circle", "rectangle", "triangle", "ellipse"])
        XCTAssertEqual(cm["matrix"]?.arrayValue?.map { $0.arrayValue!.compactMap(\.intValue) }, expected.counts)
        // Every ground-truth box is counted at least once in its row (reached by its class, or missed).
        XCTAssertGreaterThanOrEqual(expected.counts.prefix(4).map { $0.reduce(0, +) }.reduce(0, +), gt.annotations.count)

        r = try ToolRunner.run("analyze-logs", ["plot_curve", "\(work)/log.jsonl", "\(tmp)/b/log.jsonl", "--keys", "loss", "bbox_mAP",
                                                "--legend", "tiny", "known", "--title", "two runs", "--out", "\(tmp)/curves.png"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let png = try readImage("\(tmp)/curves.png")
        XCTAssertEqual(png.height, 2 * 260 + 20)
        r = try ToolRunner.run("analyze-logs", ["plot_curve", "\(tmp)/b/log.jsonl", "--keys", "segm_mAP", "--out", "\(tmp)/x.png"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("does not contain the key 'segm_mAP'"), r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: "\(tmp)/x.png"))
    }

    func testBrowseDatasetDrawsThePipelinesImagesWithBoxesAndMasks() throws {
        let tmp = try ToolRunner.temporaryDirectory("browse")
        let config = "\(root)/configs/mask_rcnn/mask_rcnn_acmix_resnet26_fpn_shapes.json"
        let sets = ["--set", "data.img_scale=[96,96]", "--set", #"data.shapes={"size": 64, "train_count": 3, "val_count": 2, "root": "\#(tmp)/shapes"}"#]
        let r = try ToolRunner.run("browse-dataset", ["--config", config, "--out-dir", "\(tmp)/out", "--count", "5"] + sets)
        XCTAssertEqual(r.status, 0, r.stderr)
        let files = try FileManager.default.contentsOfDirectory(atPath: "\(tmp)/out").sorted()
        XCTAssertEqual(files.count, 3, "\(files)")
        // Each drawing is the pipeline's image (resized 64 → 96, before padding) with the boxes in class colours.
        let cfg = try DetectionConfig.loadForInference(path: config, overrides: sets.enumerated().filter { $0.offset % 2 == 1 }.map(\.element))
        let data = try DetectionDatasets.registry.build(cfg.section("data"), DetectionDataContext(seed: UInt64(try cfg.int("seed", default: 0)), withMask: true))
        var rng = SplitMix64(seed: UInt64(try cfg.int("seed", default: 0)))
        let input = try data.train.item(at: 0, rng: &rng)
        let drawn = try readImage("\(tmp)/out/\(files[0])")
        XCTAssertEqual([drawn.width, drawn.height], [input.meta.imgShape.width, input.meta.imgShape.height])
        let colours = Palette.colours(4)
        let b = input.gtBboxes.map { Int($0.rounded()) }, c = colours[input.gtLabels[0] % colours.count]
        let y = (b[1] + b[3]) / 2, x = max(0, b[0])
        XCTAssertEqual([drawn[y, x, 0], drawn[y, x, 1], drawn[y, x, 2]], [c.0, c.1, c.2], "box edge at (\(x), \(y))")
    }
}
