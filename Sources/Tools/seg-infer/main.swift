import ACmixKit
import ArgumentParser
import Data
import Engine
import Foundation
import Heads
import Tasks
import ToolSupport
import Training

/// Runs a trained segmentor on image files: label maps and overlays.
struct SegInfer: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "seg-infer",
        abstract: "Segment your images with a trained segmentor (the config's test pipeline; --aug-test for ms+flip).",
        discussion: """
            Writes OUT/pred/NAME.png (palette label maps: pixel value = class
            index, as seg-eval --show-dir writes them) and OUT/vis/NAME.png
            (classes blended over the image). Unreadable images are reported
            and skipped; the exit status is then 1.
            """)

    @OptionGroup var model: InferOptions

    @Flag(name: .customLong("aug-test"), help: "mmseg's ms+flip test-time augmentation (ratios 0.5–1.75, with and without flip).")
    var augTest = false

    func run() throws {
        let list = ImageList(model.paths)
        try list.requireImages()
        try model.protectInputs(planned: list.stems.flatMap { ["\(model.outDir)/pred/\($0).png", "\(model.outDir)/vis/\($0).png"] })
        let segmenter = try Segmenter(config: .file(model.config), checkpoint: model.checkpoint, overrides: model.overrides,
                                      precision: model.precision)
        try model.int8.prepare(segmenter, precision: model.precision, config: model.config, overrides: model.overrides)
        var problems = InputProblems(tool: "seg-infer", list: list)
        for sub in ["pred", "vis"] { try createDirectory("\(model.outDir)/\(sub)") }
        var bar = ProgressBar(total: list.files.count, unit: "img")
        for (i, file) in list.files.enumerated() {
            defer { bar.update(i + 1) }
            // An input that cannot be used is reported and skipped; a failed write (full disk) stops the run.
            let image: Image, labels: LabelMap
            do {
                image = try readImage(file)   // its errors name the file
                do { labels = try segmenter.predict(image, augment: augTest) } catch let e as KitError { throw e.prefixed("\(file): ") }
            } catch let e as KitError where e.exitCode == 1 {
                problems.add("\(e)", bar: &bar)
                continue
            }
            try writePNG(labels, to: "\(model.outDir)/pred/\(list.stems[i]).png", palette: segmenter.palette)
            try writePNG(image.blended(with: labels, palette: segmenter.palette), to: "\(model.outDir)/vis/\(list.stems[i]).png")
        }
        bar.finish()
        let written = list.files.count - (problems.lines.count - list.problems.count)
        if written > 0 { writeStderr("seg-infer: \(written) images → \(model.outDir)/pred/, \(model.outDir)/vis/\n") }
        try problems.finish()
    }
}

SegInfer.mainReportingErrors()
