import ArgumentParser
import Data
import Engine
import Foundation
import Heads
import Tasks
import ToolSupport
import Training

/// mmdetection's tools/analysis_tools/browse_dataset.py: training images as the model sees them.
struct BrowseDataset: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "browse-dataset",
        abstract: "Draw a detection config's training images after its train pipeline, with their boxes (and masks).",
        discussion: """
            Each image goes through the config's train pipeline (its random resize
            and flip drawn from the config's seed and the image's index), is
            de-normalised and cropped to its size before padding, and is written
            as OUT/NAME.png with its ground-truth boxes, class names and, for
            configs whose model predicts masks, instance masks.
            """)

    @Option(help: "Detection config (JSON).")
    var config: String

    @Option(name: .customLong("out-dir"), help: "Output folder.")
    var outDir: String

    @Option(parsing: .unconditional, help: "How many training images (from the first).")
    var count: Int = 20

    @Option(name: .customLong("set"), help: "Override a config key.")
    var overrides: [String] = []

    func validate() throws {
        guard count >= 1 else { throw ValidationError("--count must be at least 1") }
    }

    func run() throws {
        try refuseOverwriting(("--out-dir", outDir), inputs: [("--config", config)])
        let cfg = try DetectionConfig.loadForInference(path: config, overrides: overrides)
        let seed = UInt64(try cfg.int("seed", default: 0))
        let withMask = cfg.has("model.roi_head.mask_head")
        let data = try DetectionDatasets.registry.build(cfg.section("data"), DetectionDataContext(seed: seed, withMask: withMask))
        let classes = try DetectionDatasets.classes(cfg.section("data"))?.names ?? []
        let normalize = try DetectionDatasets.testPipeline(cfg.section("data")).normalize
        let n = min(count, data.train.count)
        try createDirectory(outDir)
        var bar = ProgressBar(total: n, unit: "img")
        for i in 0..<n {
            var rng = SplitMix64(seed: seed &+ UInt64(i))
            let input = try data.train.item(at: i, rng: &rng)
            let image = Self.denormalised(input, normalize)
            let k = input.gtLabels.count
            let masks = input.gtMasks.map { m in (0..<m.count).map { Self.crop(Array(m.mask($0)), from: m.width, to: image) } }
            let drawn = image.drawingDetections(boxes: input.gtBboxes, scores: [Float](repeating: 1, count: k), labels: input.gtLabels,
                                                classNames: classes, scoreThreshold: 0, masks: masks, captionScores: false)
            let stem = input.meta.filename.isEmpty ? String(format: "train_%06d", i)
                : ((input.meta.filename as NSString).lastPathComponent as NSString).deletingPathExtension
            try writePNG(drawn, to: "\(outDir)/\(stem).png")
            bar.update(i + 1)
        }
        bar.finish()
        writeStderr("browse-dataset: \(n) images → \(outDir)/\n")
    }

    /// The network input back in pixels (x·std + mean), cropped to its size before padding.
    static func denormalised(_ input: DetectionInput, _ nz: Normalize) -> Image {
        let f = input.image, (h, w) = input.meta.imgShape
        var pixels = [UInt8](repeating: 0, count: h * w * 3)
        for c in 0..<3 {
            for y in 0..<h {
                for x in 0..<w {
                    let v = f.data[(c * f.height + y) * f.width + x] * nz.std[c] + nz.mean[c]
                    pixels[(y * w + x) * 3 + c] = UInt8(max(0, min(255, v.rounded())))
                }
            }
        }
        return Image(width: w, height: h, pixels: pixels)
    }

    /// A padded mask's top-left `image`-sized part.
    static func crop(_ mask: [UInt8], from width: Int, to image: Image) -> [UInt8] {
        (0..<image.height).flatMap { y in mask[(y * width)..<(y * width + image.width)] }
    }
}

BrowseDataset.mainReportingErrors()
