import ArgumentParser
import Data
import Engine
import Evaluation
import Foundation
import NN
import Tasks
import ToolSupport

/// mmdetection's tools/analysis_tools/confusion_matrix.py on a COCO results file.
struct ConfusionMatrixTool: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "confusion-matrix",
        abstract: "Detection confusion matrix (mmdetection's definition) of a COCO results file: PNG and JSON.",
        discussion: """
              confusion-matrix --config C --results R.json [--out-dir D]
              confusion-matrix --annotations GT.json --results R.json [--out-dir D]

            The ground truth is the config's validation split (labels in the
            model's order) or a COCO instances file (labels in the order of its
            "categories" list, as mmdet's CocoDataset numbers them). Rows are
            ground-truth classes, columns predicted classes, the last of each
            "background". Every detection scoring at least --score-thr adds one
            to [gt, predicted] for each ground-truth box it overlaps with IoU >=
            --tp-iou-thr, or to [background, predicted] when it overlaps none;
            every box no same-class detection reached adds one to [gt,
            background]. Writes D/confusion_matrix.png (rows normalised to
            percentages, as mmdet draws it) and D/confusion_matrix.json, and
            prints the counts. mmdet's --nms-iou-thr is not offered: in mmdet
            3.3 it fails whenever NMS removes a box.
            """)

    @Option(help: "Config (JSON): its data section's validation split is the ground truth.")
    var config: String?

    @Option(help: "Ground truth: a COCO instances JSON file (instead of --config).")
    var annotations: String?

    @Option(help: "Detections: a COCO results JSON file (det-eval --out writes one).")
    var results: String

    @Option(name: .customLong("out-dir"), help: "Output folder.")
    var outDir = "."

    @Option(name: .customLong("score-thr"), parsing: .unconditional, help: "Lowest score counted.")
    var scoreThr: Double = 0.3

    @Option(name: .customLong("tp-iou-thr"), parsing: .unconditional, help: "IoU at which a detection reaches a box.")
    var tpIouThr: Double = 0.5

    @Option(name: .customLong("set"), help: "Override a config key.")
    var overrides: [String] = []

    func validate() throws {
        guard (config == nil) != (annotations == nil) else { throw ValidationError("give exactly one of --config and --annotations") }
        guard scoreThr.isFinite && (0...1).contains(scoreThr) else { throw ValidationError("--score-thr must be in 0...1") }
        guard tpIouThr.isFinite && tpIouThr > 0 && tpIouThr <= 1 else { throw ValidationError("--tp-iou-thr must be in (0, 1]") }
        if config == nil && !overrides.isEmpty { throw ValidationError("--set needs --config") }
    }

    func run() throws {
        let png = "\(outDir)/confusion_matrix.png", json = "\(outDir)/confusion_matrix.json"
        for out in [png, json] {
            try refuseOverwriting(("--out-dir", out), inputs: [("--config", config), ("--annotations", annotations), ("--results", results)])
        }
        var gtPath = annotations ?? "", categoryIDs: [Int]? = nil
        if let config {
            let cfg = try DetectionConfig.loadForInference(path: config, overrides: overrides)
            let data = try DetectionDatasets.registry.build(cfg.section("data"), DetectionDataContext(seed: 0))
            gtPath = try data.valAnnotations()
            categoryIDs = data.categoryIDs
        }
        let gt = try COCODataset.load(gtPath)
        let dt = try gt.loadRes(results)
        let m = ConfusionMatrix.compute(gt: gt, results: dt, categoryIDs: categoryIDs, scoreThreshold: scoreThr, iouThreshold: tpIouThr)
        try createDirectory(outDir)
        try writePNG(m.render(), to: png)
        let percent = m.percent.map { JSON.array($0.map { $0.map { JSON.double($0) } ?? .null }) }
        try writeAtomically(JSON.object([
            ("classes", .array(m.classes.map { .string($0) })), ("category_ids", .array(m.categoryIDs.map { .int($0) })),
            ("score_thr", .double(scoreThr)), ("tp_iou_thr", .double(tpIouThr)),
            ("matrix", .array(m.counts.map { .array($0.map { .int($0) }) })), ("percent", .array(percent)),
        ]).serialized() + "\n", to: json)
        let names = m.classes + ["background"], w = max(10, names.map(\.count).max()!)
        print("rows: ground truth, columns: prediction (score >= \(scoreThr), IoU >= \(tpIouThr))")
        print("".padding(toLength: w, withPad: " ", startingAt: 0) + names.map { " " + $0.prefix(w).padding(toLength: w, withPad: " ", startingAt: 0) }.joined())
        for (name, row) in zip(names, m.counts) {
            print(name.padding(toLength: w, withPad: " ", startingAt: 0) + row.map { " " + String($0).padding(toLength: w, withPad: " ", startingAt: 0) }.joined())
        }
        writeStderr("confusion-matrix: \(png), \(json)\n")
    }
}

ConfusionMatrixTool.mainReportingErrors()
