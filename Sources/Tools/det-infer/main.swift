import ACmixKit
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
        try list.requireImages()
        try model.protectInputs(planned: ["\(model.outDir)/predictions.json"] + list.stems.map { "\(model.outDir)/vis/\($0).png" })
        let detector = try ObjectDetector(config: .file(model.config), checkpoint: model.checkpoint, overrides: model.overrides,
                                          precision: model.precision)
        try model.int8.prepare(detector, precision: model.precision, config: model.config, overrides: model.overrides)
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
            images = images.filter { i, image in
                do { try detector.checkInputs([image]) } catch {
                    problems.add("\(list.files[i]): \(error)", bar: &bar)
                    return false
                }
                return true
            }
            let dets = try detector.predict(images.map(\.image), scoreThreshold: scoreThr)
            for ((i, image), d) in zip(images, dets) {
                let detections: [JSON] = d.map { d in
                    let b = [d.box.x1, d.box.y1, d.box.x2, d.box.y2].map(Double.init)
                    var kv: [(String, JSON)] = [("bbox", .array([b[0], b[1], b[2] - b[0], b[3] - b[1]].map { JSON.double($0) })),
                                                ("score", .double(Double(d.score))), ("category_id", .int(d.categoryID)),
                                                ("category", .string(d.name))]
                    if let m = d.mask { kv.append(("segmentation", segmentationJSON(m))) }
                    return .object(kv)
                }
                records.append(.object([("file_name", .string(list.files[i])), ("width", .int(image.width)),
                                        ("height", .int(image.height)), ("detections", .array(detections))]))
                let drawn = image.drawingDetections(boxes: d.flatMap { [$0.box.x1, $0.box.y1, $0.box.x2, $0.box.y2] },
                                                    scores: d.map(\.score), labels: d.map(\.label), classNames: detector.classes,
                                                    scoreThreshold: scoreThr, masks: d.first?.mask == nil ? nil : d.map { $0.maskBitmap! })
                try writePNG(drawn, to: "\(model.outDir)/vis/\(list.stems[i]).png")
            }
            done = range.upperBound
            bar.update(done)
        }
        bar.finish()
        if records.isEmpty { try problems.finish() }   // every image failed: keep an earlier run's predictions
        try writeAtomically(JSON.array(records).serialized() + "\n", to: "\(model.outDir)/predictions.json")
        writeStderr("det-infer: \(records.count) images → \(model.outDir)/predictions.json, \(model.outDir)/vis/\n")
        try problems.finish()
    }
}

DetInfer.mainReportingErrors()
