import ArgumentParser
import Data
import Engine
import Evaluation
import Foundation
import Heads
import Tasks
import ToolSupport
import Training

/// Scores predicted label maps against ground truth the way mmsegmentation's IoUMetric does: saved label PNGs, or
/// a trained segmentor run over its config's validation split.
struct SegEval: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "seg-eval",
        abstract: "mmsegmentation-style mIoU, mAcc and aAcc with the per-class table.",
        discussion: """
            Two forms:
              seg-eval --gt-dir G --pred-dir P --num-classes N [--json-out F]
              seg-eval --config C --checkpoint W [--show-dir D] [--json-out F]

            The first matches files by name: every PNG in --gt-dir needs a PNG
            of the same name in --pred-dir (8-bit grey levels or palette
            indices). The second runs the segmentor on the config's
            validation split; --show-dir writes D/overlay/<image>.png (the
            predicted classes blended over the image) and D/pred/<image>.png
            (palette label maps, which the first form reads back).
            """)

    @Option(help: "Folder of ground-truth label PNGs.")
    var gtDir: String?

    @Option(help: "Folder of predicted label PNGs (class ids 0..<num-classes).")
    var predDir: String?

    @Option(parsing: .unconditional, help: "Number of classes.")
    var numClasses: Int = 0

    @OptionGroup var trained: ModelEvalOptions

    @Option(parsing: .unconditional, help: "Label value excluded from evaluation.")
    var ignoreIndex: Int = 255

    @Flag(name: .customLong("aug-test"), help: "With --config: mmseg's ms+flip test-time augmentation (ratios 0.5–1.75, with and without flip).")
    var augTest = false

    @Flag(help: "Apply mmseg's reduce_zero_label to the ground truth (0 → ignore, v → v-1).")
    var reduceZeroLabel = false

    @Option(help: "Text file with one class name per line (default: class ids).")
    var classNames: String?

    @Option(name: .customLong("json-out"), help: "Write the metrics as fractions (null for NaN) to this JSON file.")
    var jsonOut: String?

    func validate() throws {
        guard (0...255).contains(ignoreIndex) else { throw ValidationError("--ignore-index must be in 0...255") }
        if augTest && trained.config == nil { throw ValidationError("--aug-test needs --config") }
        if try trained.form(filesForm: gtDir != nil || predDir != nil || numClasses != 0,
                          filesOptions: "--gt-dir/--pred-dir/--num-classes") == nil {
            guard gtDir != nil && predDir != nil else { throw ValidationError("give --gt-dir and --pred-dir, or --config and --checkpoint") }
            guard (1...256).contains(numClasses) else { throw ValidationError("--num-classes must be in 1...256") }
        }
    }

    func run() throws {
        try refuseOverwriting(("--json-out", jsonOut), inputs: [("--config", trained.config), ("--checkpoint", trained.checkpoint),
                                                                ("--class-names", classNames)])
        if let (config, checkpoint) = try trained.form(filesForm: false, filesOptions: "") {
            if let code = TrainTool.exitCode(tool: "seg-eval", { try evaluateModel(config: config, checkpoint: checkpoint) }) {
                throw ExitCode(code)
            }
            return
        }
        let (gtDir, predDir) = (gtDir!, predDir!)
        let names = try loadClassNames()
        guard let all = try? FileManager.default.contentsOfDirectory(atPath: gtDir) else {
            throw KitError.io("\(gtDir): cannot list the ground-truth folder (missing or not a folder)")
        }
        let files = all.filter { $0.lowercased().hasSuffix(".png") }.sorted()
        guard !files.isEmpty else { throw KitError.data("\(gtDir): no PNG label files") }
        var metric = MIoUMetric(numClasses: numClasses, ignoreIndex: ignoreIndex, reduceZeroLabel: reduceZeroLabel)
        for file in files {
            let predPath = (predDir as NSString).appendingPathComponent(file)
            guard FileManager.default.fileExists(atPath: predPath) else {
                throw KitError.data("\(predPath): missing prediction for ground truth \(file)")
            }
            let gtPath = (gtDir as NSString).appendingPathComponent(file)
            let label = try readLabelMap(gtPath)
            let pred = try readLabelMap(predPath)
            try metric.process(pred: pred, label: label, name: "\(predPath) vs \(gtPath)")
        }
        let r = metric.compute()
        printTable(r, names: names, imageCount: files.count)
        if let path = jsonOut { try writeJSON(r, to: path) }
    }

    /// The second form: build the segmentor, load the weights, predict the validation split, score it.
    func evaluateModel(config path: String, checkpoint: String) throws {
        try MixedPrecision.select(trained.precision)
        let cfg = try SegmentationConfig.load(path: path, overrides: trained.overrides)
        let model = try SegmentationConfig.buildModel(cfg)
        try Checkpoint.loadForInference(from: checkpoint, into: model)
        let predictor = SegmentationPredictor(segmentor: model, pipeline: try SegmentationDatasets.testPipeline(cfg.section("data")).pipeline)
        try trained.preparePrecision(model, config: path, checkpoint: checkpoint) { _ = predictor($0) }
        let task = try SegmentationTask(config: cfg, segmentor: model)
        try protectDataAndCheckShowDir(cfg, showDir: trained.showDir, subfolders: ["overlay", "pred"])
        let val = task.data.val, n = model.numClasses
        let palette = Palette.colours(n, background: task.data.background)
        if let showDir = trained.showDir { for sub in ["overlay", "pred"] { try createDirectory("\(showDir)/\(sub)") } }
        var bar = ProgressBar(total: val.count, unit: "img"), done = 0
        let visit: (Int, SegmentationInput, LabelMap) throws -> Void = { index, item, pred in
            done += 1
            bar.update(done)
            guard let showDir = trained.showDir else { return }
            let stem = ((item.meta.filename as NSString).lastPathComponent as NSString).deletingPathExtension
            let image = try val.sourceImage(at: index)
            try writePNG(image.blended(with: pred, palette: palette), to: "\(showDir)/overlay/\(stem).png")
            try writePNG(pred, to: "\(showDir)/pred/\(stem).png", palette: palette)
        }
        let r = augTest
            ? try evaluateSegmentation(SegmentationPredictor(segmentor: model, pipeline: try SegmentationDatasets.testPipeline(cfg.section("data")).pipeline),
                                       dataset: val, augment: true, visit: visit)
            : try evaluateSegmentation(model, loader: task.valLoader, visit: visit)
        bar.finish()
        if let showDir = trained.showDir { writeStderr("wrote \(val.count) overlays and label maps to \(showDir)\n") }
        printTable(r, names: task.data.classNames ?? (0..<n).map(String.init), imageCount: val.count)
        if let path = jsonOut { try writeJSON(r, to: path) }
    }

    private func loadClassNames() throws -> [String] {
        guard let path = classNames else { return (0..<numClasses).map(String.init) }
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw KitError.io("\(path): cannot read the class-names file")
        }
        let names = text.split(separator: "\n", omittingEmptySubsequences: false).map {
            $0.trimmingCharacters(in: .whitespacesAndNewlines)
        }.filter { !$0.isEmpty }
        guard names.count == numClasses else {
            throw KitError.data("\(path): \(names.count) class names for --num-classes \(numClasses)")
        }
        return names
    }

    /// mmseg's per-class table and summary, in percent with two decimals.
    private func printTable(_ r: MIoUResult, names: [String], imageCount: Int) {
        let width = max(5, names.map(\.count).max() ?? 5)
        func row(_ cells: [String]) -> String {
            "| " + cells[0].padding(toLength: width, withPad: " ", startingAt: 0) + " | "
                + cells.dropFirst().map { String(repeating: " ", count: max(0, 6 - $0.count)) + $0 }
                .joined(separator: " | ") + " |"
        }
        let rule = "+" + String(repeating: "-", count: width + 2) + "+--------+--------+"
        print("per class results (\(imageCount) images):")
        print(rule)
        print(row(["Class", "IoU", "Acc"]))
        print(rule)
        for c in names.indices { print(row([names[c], formatPercent(r.iou[c]), formatPercent(r.acc[c])])) }
        print(rule)
        print("Summary: aAcc \(formatPercent(r.aAcc))  mIoU \(formatPercent(r.mIoU))  mAcc \(formatPercent(r.mAcc))")
    }

    private func writeJSON(_ r: MIoUResult, to path: String) throws {
        func num(_ x: Double) -> String { x.isNaN ? "null" : "\(x)" }
        let json = "{\"aAcc\": \(num(r.aAcc)), \"mIoU\": \(num(r.mIoU)), \"mAcc\": \(num(r.mAcc)), "
            + "\"IoU\": [\(r.iou.map(num).joined(separator: ", "))], "
            + "\"Acc\": [\(r.acc.map(num).joined(separator: ", "))]}\n"
        try writeAtomically(json, to: path)
    }
}

SegEval.mainReportingErrors()
