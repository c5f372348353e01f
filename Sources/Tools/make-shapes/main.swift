import ArgumentParser
import Data
import Foundation
import ToolSupport

/// Writes the built-in synthetic shapes dataset (COCO instances + ADE20K-style semantic labels).
struct MakeShapes: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "make-shapes",
        abstract: "Generate the synthetic shapes detection/segmentation dataset.",
        discussion: """
            Layout: OUT/images/{training,validation}/*.jpg, OUT/annotations/{training,validation}/*.png \
            (0 = background, 1..4 = circle, rectangle, triangle, ellipse), \
            OUT/annotations/instances_{train,val}.json (COCO, category ids 1..4), OUT/classes.txt. \
            The same seed gives byte-identical files.
            """)

    @Option(help: "Output folder (created if missing).")
    var out: String

    @Option(parsing: .unconditional, help: "Random seed.")
    var seed: UInt64 = 0

    @Option(parsing: .unconditional, help: "Number of training images.")
    var train: Int = 300

    @Option(parsing: .unconditional, help: "Number of validation images.")
    var val: Int = 60

    @Option(parsing: .unconditional, help: "Image side in pixels (square images).")
    var size: Int = 192

    @Option(help: "Image file format: jpg or png.")
    var format: ImageFileFormat = .jpg

    func validate() throws {
        // A million images of each split is far more than a demo needs (COCO's training split has 118k); a typo's
        // extra digits would otherwise fill the disk for hours.
        guard (0...1_000_000).contains(train), (0...1_000_000).contains(val), train + val > 0 else {
            throw ValidationError("--train and --val must be in 0...1000000, not both 0")
        }
        guard (32...2048).contains(size) else { throw ValidationError("--size must be in 32...2048") }
    }

    func run() throws {
        let start = Date()
        let writer = ShapesDatasetWriter(generator: ShapesGenerator(size: size, seed: seed), trainCount: train,
                                         valCount: val, imageFormat: format.rawValue)
        let summary = try writer.write(to: out)
        print(String(format: "wrote %d images, %d instances, %.1f MB to %@ in %.1f s", summary.images,
                     summary.instances, Double(summary.bytes) / 1e6, out, Date().timeIntervalSince(start)))
    }
}

/// `--format`.
enum ImageFileFormat: String, ExpressibleByArgument, CaseIterable { case jpg, png }

MakeShapes.mainReportingErrors()
