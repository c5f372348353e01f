import Data
import Foundation
import XCTest

final class ShapesTests: XCTestCase {
    func testLabelsMatchDrawOrderAndInstancesStayVisible() {
        let gen = ShapesGenerator(size: 96, seed: 11)
        var total = 0
        for index in 0..<12 {
            let ex = gen.example(split: 0, index: index)
            XCTAssertEqual(ex, gen.example(split: 0, index: index))
            let n = 96 * 96
            var expected = [UInt8](repeating: 0, count: n)
            var visible = [Int](repeating: 0, count: ex.shapes.count)
            for i in 0..<n {
                for k in stride(from: ex.shapes.count - 1, through: 0, by: -1) where ex.masks.masks[k * n + i] == 1 {
                    expected[i] = UInt8(ex.shapes[k].kind.rawValue)
                    visible[k] += 1
                    break
                }
            }
            XCTAssertEqual(ex.label.labels, expected)
            for (k, a) in ex.annotations.enumerated() {
                let full = ex.masks.mask(k).reduce(0) { $0 + Int($1) }
                XCTAssertGreaterThanOrEqual(Double(visible[k]), 0.75 * Double(full) - 1e-9)
                // The polygon area approximates the raster area; the bbox contains the raster.
                XCTAssertEqual(a.area, Double(full), accuracy: 0.12 * Double(full) + 4)
                for i in 0..<n where ex.masks.masks[k * n + i] == 1 {
                    let (x, y) = (Double(i % 96) + 0.5, Double(i / 96) + 0.5)
                    XCTAssertTrue(x >= a.bbox[0] - 1 && x <= a.bbox[0] + a.bbox[2] + 1 && y >= a.bbox[1] - 1
                                  && y <= a.bbox[1] + a.bbox[3] + 1)
                }
                XCTAssertEqual(a.label, ex.shapes[k].kind.rawValue - 1)
            }
            total += ex.shapes.count
        }
        XCTAssertGreaterThan(total, 12)
        XCTAssertNotEqual(gen.example(split: 0, index: 0).image, gen.example(split: 1, index: 0).image)
    }

    func testWriterIsByteIdenticalAndConsistent() throws {
        let root = NSTemporaryDirectory() + "acmix-shapes-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: root) }
        let writer = ShapesDatasetWriter(generator: ShapesGenerator(size: 64, seed: 2), trainCount: 4, valCount: 2)
        let summary = try writer.write(to: root + "/a")
        try writer.write(to: root + "/b")
        XCTAssertEqual(summary.images, 6)
        let files = try FileManager.default.subpathsOfDirectory(atPath: root + "/a").sorted()
        XCTAssertEqual(files.filter { $0.hasSuffix(".png") }.count, 6)
        for f in files where f.contains(".") {
            XCTAssertEqual(FileManager.default.contents(atPath: root + "/a/" + f),
                           FileManager.default.contents(atPath: root + "/b/" + f), f)
        }
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath:
            root + "/a/annotations/instances_train.json"))) as! [String: Any]
        XCTAssertEqual((json["images"] as! [Any]).count, 4)
        XCTAssertEqual((json["categories"] as! [[String: Any]]).map { $0["id"] as! Int }, [1, 2, 3, 4])
        let anns = json["annotations"] as! [[String: Any]]
        let ex = writer.generator.example(split: 0, index: 0)
        XCTAssertEqual(anns.filter { $0["image_id"] as! Int == 1 }.count, ex.shapes.count)
        let label = try readLabelMap(root + "/a/annotations/training/train_000000.png")
        XCTAssertEqual(label, ex.label)
        let image = try readImage(root + "/a/images/training/train_000000.jpg")
        XCTAssertEqual(image.width, 64)
    }
}

extension ShapesTests {
    /// A written folder is recognised by its validation split: the same generator matches whatever the train
    /// count, another seed, size or validation count does not.
    func testWrittenValidationSplitIsRecognised() throws {
        let root = NSTemporaryDirectory() + "shapes-match-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: root) }
        let gen = ShapesGenerator(size: 48, seed: 3)
        try ShapesDatasetWriter(generator: gen, trainCount: 3, valCount: 2).write(to: root)
        XCTAssertTrue(ShapesDatasetWriter(generator: gen, trainCount: 3, valCount: 2).matchesValidationSplit(at: root))
        XCTAssertTrue(ShapesDatasetWriter(generator: gen, trainCount: 7, valCount: 2).matchesValidationSplit(at: root))
        XCTAssertFalse(ShapesDatasetWriter(generator: ShapesGenerator(size: 48, seed: 4), trainCount: 3, valCount: 2)
            .matchesValidationSplit(at: root))
        XCTAssertFalse(ShapesDatasetWriter(generator: ShapesGenerator(size: 64, seed: 3), trainCount: 3, valCount: 2)
            .matchesValidationSplit(at: root))
        XCTAssertFalse(ShapesDatasetWriter(generator: gen, trainCount: 3, valCount: 3).matchesValidationSplit(at: root))
        XCTAssertFalse(ShapesDatasetWriter(generator: gen).matchesValidationSplit(at: root + "/nothing"))
        // make-shapes --format png writes the same ground truth: det-train / det-eval accept its folder.
        let png = root + "/png"
        try ShapesDatasetWriter(generator: gen, trainCount: 3, valCount: 2, imageFormat: "png").write(to: png)
        XCTAssertTrue(ShapesDatasetWriter(generator: gen, trainCount: 3, valCount: 2).matchesValidationSplit(at: png))
    }
}

final class SegmentationFolderDatasetTests: XCTestCase {
    func testWrittenShapesLoadThroughTheSegmentationPipeline() throws {
        let root = NSTemporaryDirectory() + "acmix-shapes-seg-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: root) }
        let writer = ShapesDatasetWriter(generator: ShapesGenerator(size: 64, seed: 4), trainCount: 5, valCount: 1,
                                         imageFormat: "png")
        try writer.write(to: root)
        let pipeline = SegmentationPipeline(imgScale: (128, 64), cropSize: (48, 48), reduceZeroLabel: false)
        let dataset = try SegmentationFolderDataset(imageDir: root + "/images/training",
                                                    labelDir: root + "/annotations/training", pipeline: pipeline)
        XCTAssertEqual(dataset.count, 5)
        let sample = try dataset.sample(at: 2)
        XCTAssertEqual(sample.image, writer.generator.example(split: 0, index: 2).image)  // PNG is lossless
        let loader = DataLoader(dataset: dataset, batchSize: 2, seed: 3, workers: 2)
        let it = loader.epoch(0)
        var seen = 0
        while let batch = try it.next() {
            XCTAssertEqual(batch.shape[1...], [3, 48, 48])
            XCTAssertTrue(batch.labels!.allSatisfy { $0 <= 4 || $0 == 255 })
            seen += batch.shape[0]
        }
        XCTAssertEqual(seen, 5)
        try FileManager.default.removeItem(atPath: root + "/annotations/training/train_000003.png")
        XCTAssertThrowsError(try SegmentationFolderDataset(imageDir: root + "/images/training",
                                                           labelDir: root + "/annotations/training", pipeline: pipeline)) {
            XCTAssertTrue("\($0)".contains("train_000003.png"), "\($0)")
        }
    }
}
