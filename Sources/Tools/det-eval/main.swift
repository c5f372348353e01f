import ArgumentParser
import Data
import Engine
import Evaluation
import Foundation
import Heads
import Tasks
import ToolSupport
import Training

extension Params.IouType: ExpressibleByArgument {
    public static var allValueStrings: [String] { ["bbox", "segm"] }
}

/// COCO bbox/segm mAP, printed as pycocotools prints it: of a results file against an instances file, or of a
/// trained detector run over its config's validation split.
struct DetEval: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "det-eval",
        abstract: "COCO detection / instance-segmentation mAP (pycocotools COCOeval semantics).",
        discussion: """
            Two forms:
              det-eval --annotations GT.json --results DT.json [--iou-type T]
              det-eval --config C --checkpoint W [--out R.json] [--show-dir D]

            The second runs the detector on the config's validation split,
            writes the COCO results (--out; masks as RLE "segmentation") and,
            with --show-dir, one PNG per image with the predicted boxes (and
            masks) in class colours with scores. It evaluates the config's
            evaluation.metric (bbox, and segm for a detector with masks) unless
            --iou-type picks one; with two, --json-out holds
            {"bbox": {...}, "segm": {...}}.
            """)

    @Option(help: "Ground truth: a COCO instances JSON file.")
    var annotations: String?

    @Option(help: "Detections: a COCO results JSON file (array of {image_id, category_id, score, bbox | segmentation}).")
    var results: String?

    @Option(name: .customLong("iou-type"), help: "bbox or segm (default: bbox; with --config, the config's metrics).")
    var iouType: Params.IouType?

    @OptionGroup var trained: ModelEvalOptions

    @Option(help: "With --config: write the detections as a COCO results JSON file.")
    var out: String?

    @Option(name: .customLong("show-score-thr"), parsing: .unconditional, help: "Lowest score drawn by --show-dir.")
    var showScoreThr: Float = 0.3

    @Option(name: .customLong("json-out"), help: "Also write {iou_type, stats, per_category_ap} to this file.")
    var jsonOut: String?

    func validate() throws {
        guard showScoreThr.isFinite && (0...1).contains(showScoreThr) else { throw ValidationError("--show-score-thr must be in 0...1") }
        if try trained.form(filesForm: annotations != nil || results != nil, filesOptions: "--annotations/--results") == nil {
            guard annotations != nil && results != nil else {
                throw ValidationError("give --annotations and --results, or --config and --checkpoint")
            }
            guard out == nil else { throw ValidationError("--out needs --config") }
        }
    }

    func run() throws {
        let inputs = [("--annotations", annotations), ("--results", results), ("--config", trained.config), ("--checkpoint", trained.checkpoint)]
        for output in [("--out", out), ("--json-out", jsonOut)] { try refuseOverwriting(output, inputs: inputs) }
        if let (config, checkpoint) = try trained.form(filesForm: false, filesOptions: "") {
            if let code = TrainTool.exitCode(tool: "det-eval", { try evaluateModel(config: config, checkpoint: checkpoint) }) {
                throw ExitCode(code)
            }
            return
        }
        let gt = try COCODataset.load(annotations!), dt = try gt.loadRes(results!)
        for w in dt.warnings { writeStderr("warning: \(results!): \(w)\n") }
        let E = COCOeval(cocoGt: gt, cocoDt: dt, iouType: iouType ?? .bbox)
        E.evaluate()
        E.accumulate()
        try report([E], groundTruth: gt)
    }

    /// The second form: build the detector, load the weights, detect on the validation split, evaluate.
    func evaluateModel(config path: String, checkpoint: String) throws {
        try MixedPrecision.select(trained.precision)
        let cfg = try DetectionConfig.load(path: path, overrides: trained.overrides)
        let detector = try DetectionConfig.buildModel(cfg)
        try Checkpoint.loadForInference(from: checkpoint, into: detector)
        detector.eval()
        let predictor = DetectionPredictor(detector: detector, pipeline: try DetectionDatasets.testPipeline(cfg.section("data")))
        try trained.preparePrecision(detector, config: path, checkpoint: checkpoint) { _ = predictor([$0]) }
        let task = try DetectionTask(config: cfg, detector: detector)
        if let iouType {
            if iouType == .segm && !detector.predictsMasks {
                throw KitError.usage("--iou-type segm: the detector of \(path) predicts boxes only")
            }
            task.cocoEvaluator.iouTypes = [iouType]
        }
        let gt = try task.cocoEvaluator.loadGroundTruth()   // writes the shapes dataset on first use
        try protectDataAndCheckShowDir(cfg, showDir: trained.showDir, subfolders: [])
        var bar = ProgressBar(total: task.data.val.count, unit: "img")
        let (ids, dets) = try task.detectAll { bar.update($0) }
        bar.finish()
        if let out { try writeCOCOResults(cocoResults(ids, dets, categoryIDs: task.data.categoryIDs), to: out) }
        if let showDir = trained.showDir { try show(dets, ids: ids, val: task.data.val, groundTruth: gt, to: showDir) }
        let evals = try task.cocoEvaluator.cocoEval(ids, dets)
        guard !evals.isEmpty else {
            // pycocotools cannot evaluate an empty result list; every AP and AR is then 0.
            print("no detections on the \(ids.count) validation images: every AP and AR is 0")
            return
        }
        try report(evals, groundTruth: gt)
    }

    /// One PNG per validation image (named after its file) with the detections above `--show-score-thr` drawn.
    func show<V: SourceImageDataset>(_ dets: [ImageDetections], ids: [Int], val: V, groundTruth gt: COCODataset, to dir: String) throws {
        try createDirectory(dir)
        let names = gt.categoryIds.map { gt.category(id: $0)?.name ?? String($0) }
        let files = Dictionary(gt.images.map { ($0.id, $0.fileName) }, uniquingKeysWith: { a, _ in a })
        for (i, all) in dets.enumerated() {
            let d = all.scoring(atLeast: showScoreThr)
            let drawn = try val.sourceImage(at: i).drawingDetections(boxes: d.boxes, scores: d.scores, labels: d.labels,
                                                                     classNames: names, scoreThreshold: showScoreThr,
                                                                     masks: d.masks?.map { $0.bitmap() })
            let stem = ((files[ids[i]] ?? "\(ids[i])") as NSString).lastPathComponent
            try writePNG(drawn, to: (dir as NSString).appendingPathComponent((stem as NSString).deletingPathExtension + ".png"))
        }
        writeStderr("wrote \(dets.count) images to \(dir)\n")
    }

    /// Per IoU type: pycocotools' 12-line summary, the per-category AP table and, with --json-out, the same as JSON
    /// (one object; keyed by IoU type when there are several).
    func report(_ evals: [COCOeval], groundTruth gt: COCODataset) throws {
        var objects: [String] = []
        for E in evals {
            if evals.count > 1 { print("\(E.params.iouType.rawValue):") }
            objects.append(report(E, groundTruth: gt))
            if evals.count > 1 { print("") }
        }
        if let out = jsonOut {
            let text = evals.count == 1 ? objects[0]
                : "{" + zip(evals, objects).map { "\"\($0.params.iouType.rawValue)\": \($1)" }.joined(separator: ", ") + "}"
            try writeAtomically(text + "\n", to: out)
        }
    }

    /// Prints one evaluation's summary and per-category table; returns its JSON object.
    func report(_ E: COCOeval, groundTruth gt: COCODataset) -> String {
        for line in E.summarize() { print(line) }
        let ap = E.perCategoryAP()
        print("")
        print("per-category AP (IoU=0.50:0.95, area=all, maxDets=\(E.params.maxDets.last ?? 100)):")
        let width = max(8, gt.categories.map(\.name.count).max() ?? 0)
        print("  \("id".padding(toLength: 5, withPad: " ", startingAt: 0)) \("category".padding(toLength: width, withPad: " ", startingAt: 0))  AP")
        for id in E.params.catIds {
            let name = gt.category(id: id)?.name ?? ""
            let v = ap[id] ?? .nan
            let idStr = String(id).padding(toLength: 5, withPad: " ", startingAt: 0)
            print("  \(idStr) \(name.padding(toLength: width, withPad: " ", startingAt: 0))  \(v.isNaN ? "nan" : String(format: "%.3f", v))")
        }

        let perCat = E.params.catIds.map { id in "\"\(id)\": \(json(ap[id] ?? .nan))" }
        return "{\"iou_type\": \"\(E.params.iouType.rawValue)\", \"stats\": [\(E.stats.map(json).joined(separator: ", "))], "
            + "\"per_category_ap\": {\(perCat.joined(separator: ", "))}}"
    }
}

/// Shortest round-trip decimal, as Python's json writes floats (null for NaN).
func json(_ v: Double) -> String { v.isFinite ? "\(v)" : "null" }

DetEval.mainReportingErrors()
