import ArgumentParser
import Data
import Engine
import Foundation
import Heads
import NN
import Tasks
import ToolSupport
import Training

/// Runs a trained detector on image files: predictions.json and drawings.
struct DetInfer: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "det-infer",
        abstract: "Detect objects in your images with a trained detector (the config's test pipeline).",
        discussion: """
            Writes OUT/predictions.json, one object per image:
              {"file_name", "width", "height", "detections": [{"bbox": [x, y, w, h],
               "score", "category_id", "category", "segmentation"}, ...]}
            with boxes in the image's own pixels ("segmentation", a COCO RLE,
            from detectors that predict masks), and OUT/vis/NAME.png with the
            detections drawn. Unreadable images are reported and skipped; the
            exit status is then 1.
            """)

    @OptionGroup var model: InferOptions

    @Option(name: .customLong("score-thr"), parsing: .unconditional,
            help: "Lowest score written and drawn (0: every detection the model returns, as det-eval scores them).")
    var scoreThr: Float = 0.3

    @Option(parsing: .unconditional, help: "Images per forward pass (images of a pass are padded to a common size).")
    var batch = 1

    func validate() throws {
        guard scoreThr.isFinite && (0...1).contains(scoreThr) else { throw ValidationError("--score-thr must be in 0...1") }
        guard batch >= 1 else { throw ValidationError("--batch must be at least 1") }
    }

    func run() throws {
        let list = ImageList(model.paths)
        try model.protectInputs(planned: ["\(model.outDir)/predictions.json"] + list.stems.map { "\(model.outDir)/vis/\($0).png" })
        let cfg = try DetectionConfig.loadForInference(path: model.config, overrides: model.overrides)
        let detector = try DetectionConfig.buildModel(cfg)
        let loaded = try Checkpoint.loadForInference(from: model.checkpoint, into: detector)
        let predictor = DetectionPredictor(detector: detector, pipeline: try DetectionDatasets.testPipeline(cfg.section("data")))
        let checkpointClasses = loaded.metadata["classes"].flatMap { try? JSON.parse($0, source: "classes") }?.arrayValue?.compactMap(\.stringValue)
        let classes = try DetectionDatasets.categories(cfg.section("data"), numClasses: detector.numClasses, checkpointClasses: checkpointClasses)
        func category(_ label: Int) -> (id: Int, name: String) {
            guard label < classes.names.count else { return (label + 1, "class \(label)") }
            return (classes.categoryIDs[label], classes.names[label])
        }
        let names = classes.names

        var problems = InputProblems(tool: "det-infer", list: list)
        try createDirectory("\(model.outDir)/vis")
        var records: [JSON] = []
        var bar = ProgressBar(total: list.files.count, unit: "img")
        var done = 0
        for start in stride(from: 0, to: list.files.count, by: batch) {
            let range = start..<min(start + batch, list.files.count)
            var images: [(index: Int, image: Image)] = []
            for i in range {
                do { images.append((i, try readImage(list.files[i]))) } catch {
                    problems.add("\(error)", bar: &bar)
                }
            }
            let inputSize = images.map { predictor.pipeline.inputSize(width: $0.image.width, height: $0.image.height) }
            if let size = inputSize.max(by: { $0.height * $0.width < $1.height * $1.width }) {
                do { try detector.backbone.validate(height: size.height, width: size.width) } catch let e as KitError {
                    for ((i, image), resized) in zip(images, inputSize) {
                        let line = inputSizeProblem(list.files[i], image: image, resized: resized, e)
                        problems.add(line, bar: &bar)
                    }
                    images = []
                }
            }
            let dets = images.isEmpty ? [] : predictor(images.map(\.image))
            for ((i, image), all) in zip(images, dets) {
                let d = all.scoring(atLeast: scoreThr)
                let detections: [JSON] = (0..<d.count).map { k in
                    let b = d.boxes[(4 * k)..<(4 * k + 4)].map(Double.init), c = category(d.labels[k])
                    var kv: [(String, JSON)] = [("bbox", .array([b[0], b[1], b[2] - b[0], b[3] - b[1]].map { JSON.double($0) })),
                                                ("score", .double(Double(d.scores[k]))), ("category_id", .int(c.id)), ("category", .string(c.name))]
                    if let m = d.masks?[k] { kv.append(("segmentation", segmentationJSON(RLE(runs: m)))) }
                    return .object(kv)
                }
                records.append(.object([("file_name", .string(list.files[i])), ("width", .int(image.width)),
                                        ("height", .int(image.height)), ("detections", .array(detections))]))
                let drawn = image.drawingDetections(boxes: d.boxes, scores: d.scores, labels: d.labels,
                                                    classNames: names,
                                                    scoreThreshold: scoreThr, masks: d.masks?.map { $0.bitmap() })
                try writePNG(drawn, to: "\(model.outDir)/vis/\(list.stems[i]).png")
            }
            done = range.upperBound
            bar.update(done)
        }
        bar.finish()
        try writeAtomically(JSON.array(records).serialized() + "\n", to: "\(model.outDir)/predictions.json")
        writeStderr("det-infer: \(records.count) images → \(model.outDir)/predictions.json, \(model.outDir)/vis/\n")
        try problems.finish()
    }
}

DetInfer.mainReportingErrors()
