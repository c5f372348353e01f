import Foundation
import NN
import TestSupport
import XCTest

/// The det-eval command line in both forms, run as a process on the release build.
final class DetEvalToolTests: XCTestCase {
    let cocoEval = ToolRunner.packageRoot.appendingPathComponent("../shared/reference/coco-eval").standardizedFileURL.path

    func testFilesFormPrintsTheSummaryAndNamesBadFiles() throws {
        let tmp = try ToolRunner.temporaryDirectory("det-eval")
        var r = try ToolRunner.run("det-eval", ["--annotations", "\(cocoEval)/instances_gt.json", "--results", "\(cocoEval)/detections.json",
                                                "--json-out", "\(tmp)/m.json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(r.stdout.components(separatedBy: "Average Precision").count - 1, 6, r.stdout)
        let stats = try XCTUnwrap(JSON.parse(String(contentsOfFile: "\(tmp)/m.json", encoding: .utf8))["stats"]?.arrayValue)
        XCTAssertEqual(stats.count, 12)
        try Data("[{\"image_id\": 1,".utf8).write(to: URL(fileURLWithPath: "\(tmp)/bad.json"))
        r = try ToolRunner.run("det-eval", ["--annotations", "\(cocoEval)/instances_gt.json", "--results", "\(tmp)/bad.json"])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("bad.json"), r.stderr)
        XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
        // The two forms do not mix.
        r = try ToolRunner.run("det-eval", ["--annotations", "\(cocoEval)/instances_gt.json", "--checkpoint", "w.safetensors"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("--config and --checkpoint go together"), r.stderr)
        r = try ToolRunner.run("det-eval", ["--annotations", "\(cocoEval)/instances_gt.json", "--results", "\(cocoEval)/detections.json",
                                            "--show-dir", "\(tmp)/show"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("--show-dir and --set need --config"), r.stderr)
    }

    func testModelFormDetectsWritesResultsAndDrawings() throws {
        let tmp = try ToolRunner.temporaryDirectory("det-eval")
        let tiny = ["--set", "model.backbone.arch=resnet50", "--set", "model.backbone.base_width=8",
                    "--set", "model.bbox_head.stacked_convs=1", "--set", "data.img_scale=[64,64]",
                    "--set", #"data.shapes={"size": 64, "train_count": 4, "val_count": 3, "root": "\#(tmp)/shapes"}"#,
                    "--set", "data.samples_per_gpu=2", "--set", "evaluation.interval=100", "--set", "lr_config.step=[100]"]
        var r = try ToolRunner.run("det-train", ["--work-dir", "\(tmp)/work", "--set", #"runner={"type": "IterBasedRunner", "max_iters": 2}"#] + tiny)
        XCTAssertEqual(r.status, 0, r.stderr)
        let config = "\(tmp)/work/config.json", weights = "\(tmp)/work/latest.safetensors"

        // Score threshold 0 so that the barely trained detector still reports its top boxes.
        r = try ToolRunner.run("det-eval", ["--config", config, "--checkpoint", weights, "--set", "model.test_cfg.score_thr=0.0",
                                            "--out", "\(tmp)/results.json", "--show-dir", "\(tmp)/show", "--show-score-thr", "0"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]"), r.stdout)
        XCTAssertTrue(r.stdout.contains("per-category AP"), r.stdout)
        let results = try XCTUnwrap(JSON.parse(String(contentsOfFile: "\(tmp)/results.json", encoding: .utf8)).arrayValue)
        XCTAssertFalse(results.isEmpty)
        for d in results.prefix(5) {
            XCTAssertNotNil(d["image_id"]?.intValue); XCTAssertEqual(d["bbox"]?.arrayValue?.count, 4)
            XCTAssertTrue((1...4).contains(d["category_id"]?.intValue ?? 0))
        }
        let drawn = try FileManager.default.contentsOfDirectory(atPath: "\(tmp)/show").sorted()
        XCTAssertEqual(drawn, ["val_000000.png", "val_000001.png", "val_000002.png"])

        // The results file it wrote evaluates to the same table through the files form.
        let again = try ToolRunner.run("det-eval", ["--annotations", "\(tmp)/shapes/annotations/instances_val.json", "--results", "\(tmp)/results.json"])
        XCTAssertEqual(again.status, 0, again.stderr)
        XCTAssertEqual(again.stdout, r.stdout)

        // Weights that do not fit the model, and a missing file: one line each, exit 1 (not usage errors).
        r = try ToolRunner.run("det-eval", ["--config", config, "--checkpoint", weights, "--set", "model.bbox_head.feat_channels=32"])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("latest.safetensors: checkpoint does not fit the model"), r.stderr)
        XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
        r = try ToolRunner.run("det-eval", ["--config", config, "--checkpoint", "\(tmp)/none.safetensors"])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("none.safetensors: checkpoint not found"), r.stderr)
    }

    /// Mask R-CNN through the tools: det-eval --config scores bbox and segm (mmdet's metric names in the JSON), writes
    /// RLE masks into the results, and the written file scores the same through the files form (pycocotools' loadRes
    /// path); det-infer writes the masks too.
    func testMaskRCNNEvaluatesSegmAndWritesMasks() throws {
        let tmp = try ToolRunner.temporaryDirectory("det-eval-mask")
        let configFile = ToolRunner.packageRoot.appendingPathComponent("configs/mask_rcnn/mask_rcnn_acmix_resnet26_fpn_shapes.json").path
        let tiny = ["--config", configFile, "--set", "model.backbone.arch=resnet50", "--set", "model.backbone.base_width=8",
                    "--set", "data.img_scale=[64,64]", "--set", #"data.shapes={"size": 64, "train_count": 4, "val_count": 3, "root": "\#(tmp)/shapes"}"#,
                    "--set", "data.samples_per_gpu=2", "--set", "evaluation.interval=100", "--set", "lr_config.step=[100]"]
        var r = try ToolRunner.run("det-train", ["--work-dir", "\(tmp)/work", "--set", #"runner={"type": "IterBasedRunner", "max_iters": 2}"#] + tiny)
        XCTAssertEqual(r.status, 0, r.stderr)
        let config = "\(tmp)/work/config.json", weights = "\(tmp)/work/latest.safetensors"
        r = try ToolRunner.run("det-eval", ["--config", config, "--checkpoint", weights, "--set", "model.test_cfg.rcnn.score_thr=0.0",
                                            "--out", "\(tmp)/results.json", "--json-out", "\(tmp)/m.json", "--show-dir", "\(tmp)/show",
                                            "--show-score-thr", "0"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let metrics = try JSON.parse(String(contentsOfFile: "\(tmp)/m.json", encoding: .utf8))
        XCTAssertEqual(metrics["bbox"]?["stats"]?.arrayValue?.count, 12)
        let segmStats = try XCTUnwrap(metrics["segm"]?["stats"]?.arrayValue)
        XCTAssertEqual(segmStats.count, 12)
        let results = try XCTUnwrap(JSON.parse(String(contentsOfFile: "\(tmp)/results.json", encoding: .utf8)).arrayValue)
        XCTAssertFalse(results.isEmpty)
        for d in results.prefix(5) {
            XCTAssertEqual(d["segmentation"]?["size"]?.arrayValue?.compactMap(\.intValue), [64, 64])
            XCTAssertNotNil(d["segmentation"]?["counts"]?.stringValue)
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: "\(tmp)/show").count, 3)
        r = try ToolRunner.run("det-eval", ["--annotations", "\(tmp)/shapes/annotations/instances_val.json", "--results", "\(tmp)/results.json",
                                            "--iou-type", "segm", "--json-out", "\(tmp)/segm.json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let again = try JSON.parse(String(contentsOfFile: "\(tmp)/segm.json", encoding: .utf8))
        XCTAssertEqual(again["stats"]?.arrayValue, segmStats)

        // segm on a box-only model is refused up front.
        r = try ToolRunner.run("det-eval", ["--config", config, "--checkpoint", weights, "--iou-type", "segm",
                                            "--set", "model.type=FasterRCNN", "--set", "model.roi_head.mask_head=null"])
        XCTAssertEqual(r.status, 2, r.stderr)
        XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)

        r = try ToolRunner.run("det-infer", ["--config", config, "--checkpoint", weights, "--score-thr", "0", "--out-dir", "\(tmp)/infer",
                                             "\(tmp)/shapes/images/validation"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let predictions = try XCTUnwrap(JSON.parse(String(contentsOfFile: "\(tmp)/infer/predictions.json", encoding: .utf8)).arrayValue)
        XCTAssertEqual(predictions.count, 3)
        XCTAssertNotNil(predictions[0]["detections"]?.arrayValue?.first?["segmentation"]?["counts"]?.stringValue)
    }
}
