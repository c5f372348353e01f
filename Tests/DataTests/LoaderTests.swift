import Data
import XCTest

/// Segmentation items of varying size; index 13 fails when `failing`.
private struct VaryingDataset: LoaderDataset {
    var count = 20
    var failing = false
    struct Failure: Error {}

    func item(at index: Int, rng: inout SplitMix64) throws -> SegmentationInput {
        if failing && index == 13 { throw Failure() }
        let w = 3 + index % 4, h = 2 + index % 3
        let noise = Float(rng.uniform())
        let image = FloatImage(width: w, height: h, data: (0..<(3 * w * h)).map { Float($0 + index) + noise })
        let label = LabelMap(width: w, height: h, fill: UInt8(index % 5))
        var meta = ImageMeta(filename: "\(index)", oriShape: (h, w))
        meta.flip = rng.bernoulli(0.5)
        return SegmentationInput(image: image, label: label, meta: meta)
    }
}

final class LoaderTests: XCTestCase {
    private func collect<D: LoaderDataset>(_ loader: DataLoader<D>, epoch: Int) throws -> [Batch<D.Item>] {
        let it = loader.epoch(epoch)
        var out: [Batch<D.Item>] = []
        while let b = try it.next() { out.append(b) }
        return out
    }

    func testSameSeedSameBatchesForAnyWorkerCount() throws {
        let reference = try collect(DataLoader(dataset: VaryingDataset(), batchSize: 3, seed: 7, workers: 0), epoch: 1)
        XCTAssertEqual(reference.count, 7)
        XCTAssertEqual(Set(reference.flatMap(\.indices)), Set(0..<20))
        for workers in [1, 3] {
            for _ in 0..<3 {
                let other = try collect(DataLoader(dataset: VaryingDataset(), batchSize: 3, seed: 7, workers: workers,
                                                   prefetch: 2), epoch: 1)
                XCTAssertEqual(other.map(\.indices), reference.map(\.indices))
                XCTAssertEqual(other.map(\.images), reference.map(\.images))
                XCTAssertEqual(other.map(\.labels), reference.map(\.labels))
                XCTAssertEqual(other.map { $0.items.map(\.meta) }, reference.map { $0.items.map(\.meta) })
            }
        }
        let nextEpoch = try collect(DataLoader(dataset: VaryingDataset(), batchSize: 3, seed: 7, workers: 2), epoch: 2)
        XCTAssertNotEqual(nextEpoch.map(\.indices), reference.map(\.indices))
        let otherSeed = try collect(DataLoader(dataset: VaryingDataset(), batchSize: 3, seed: 8, workers: 2), epoch: 1)
        XCTAssertNotEqual(otherSeed.map(\.indices), reference.map(\.indices))
    }

    func testBatchesPadToTheLargestImage() throws {
        let loader = DataLoader(dataset: VaryingDataset(), batchSize: 4, shuffle: false, dropLast: true, workers: 2)
        XCTAssertEqual(loader.batchesPerEpoch, 5)
        let first = try XCTUnwrap(try loader.epoch(0).next())
        XCTAssertEqual(first.indices, [0, 1, 2, 3])
        XCTAssertEqual(first.shape, [4, 3, 4, 6])  // max h = 2 + 2, max w = 3 + 3
        let (c, h, w) = (3, 4, 6)
        // Item 0 is 2x3: its values sit top-left, padding is 0 for images and 255 for labels.
        let item0 = first.items[0].image
        XCTAssertEqual(first.images[(0 * c + 1) * h * w + 1 * w + 2], item0[1, 1, 2])
        XCTAssertEqual(first.images[(0 * c + 1) * h * w + 1 * w + 3], 0)
        XCTAssertEqual(first.images[(0 * c + 2) * h * w + 3 * w + 0], 0)
        XCTAssertEqual(first.labels![0 * h * w + 1 * w + 2], 0)
        XCTAssertEqual(first.labels![0 * h * w + 2 * w + 0], 255)
        XCTAssertEqual(first.labels![3 * h * w + 1 * w + 5], 3)  // item 3 is 2x6, label 3
        XCTAssertEqual(first.labelShape, [4, 4, 6])                // labels as large as their images here
    }

    /// In test mode a label keeps its original size while its image is resized, so the label buffer is sized from
    /// the largest label map, not the largest image (sizing it from the image used to write past its end).
    func testLabelsPadToTheLargestLabelNotTheLargestImage() {
        func input(_ image: FloatImage, _ label: LabelMap) -> SegmentationInput {
            SegmentationInput(image: image, label: label, meta: ImageMeta(filename: "x", oriShape: (label.height, label.width)))
        }
        // Item 0: a 2x3 image (h x w) with a larger 4x5 label; item 1: a 3x2 image with a smaller 2x2 label.
        let a = input(FloatImage(width: 3, height: 2, data: (0..<18).map(Float.init)),
                      LabelMap(width: 5, height: 4, labels: (0..<20).map(UInt8.init)))
        let b = input(FloatImage(width: 2, height: 3, data: (0..<18).map { Float(100 + $0) }),
                      LabelMap(width: 2, height: 2, labels: [100, 101, 102, 103]))
        let batch = Batch(indices: [7, 9], items: [a, b])
        XCTAssertEqual(batch.shape, [2, 3, 3, 3])
        XCTAssertEqual(batch.images, [
            0, 1, 2, 3, 4, 5, 0, 0, 0, /**/ 6, 7, 8, 9, 10, 11, 0, 0, 0, /**/ 12, 13, 14, 15, 16, 17, 0, 0, 0,
            100, 101, 0, 102, 103, 0, 104, 105, 0, /**/ 106, 107, 0, 108, 109, 0, 110, 111, 0,
            /**/ 112, 113, 0, 114, 115, 0, 116, 117, 0,
        ])
        XCTAssertEqual(batch.labelShape, [2, 4, 5])
        XCTAssertEqual(batch.labels, [
            0, 1, 2, 3, 4, /**/ 5, 6, 7, 8, 9, /**/ 10, 11, 12, 13, 14, /**/ 15, 16, 17, 18, 19,
            100, 101, 255, 255, 255, /**/ 102, 103, 255, 255, 255, /**/ 255, 255, 255, 255, 255,
            /**/ 255, 255, 255, 255, 255,
        ])
        XCTAssertEqual(batch.items.map(\.label), [a.label, b.label], "items keep their own, unpadded labels")

        // A single test-mode item: an image shrunk to 2x2 with its 3x4 label at the original size.
        let single = Batch(indices: [0], items: [input(FloatImage(width: 2, height: 2, data: [Float](repeating: 1, count: 12)),
                                                       LabelMap(width: 4, height: 3, labels: (1...12).map(UInt8.init)))])
        XCTAssertEqual(single.shape, [1, 3, 2, 2])
        XCTAssertEqual(single.labelShape, [1, 3, 4])
        XCTAssertEqual(single.labels, (1...12).map(UInt8.init))
    }

    func testDatasetErrorsSurfaceForTheirBatch() throws {
        let loader = DataLoader(dataset: VaryingDataset(failing: true), batchSize: 5, shuffle: false, workers: 2)
        let it = loader.epoch(0)
        XCTAssertNotNil(try it.next())
        XCTAssertNotNil(try it.next())
        XCTAssertThrowsError(try it.next())  // batch 2 holds index 13
        XCTAssertNotNil(try it.next())
        XCTAssertNil(try it.next())
    }

    func testAbandonedEpochStopsCleanly() throws {
        let loader = DataLoader(dataset: VaryingDataset(), batchSize: 2, workers: 3, prefetch: 1)
        do {
            let it = loader.epoch(0)
            _ = try it.next()
        }
        XCTAssertEqual(try collect(loader, epoch: 0).count, 10)
    }

    func testShapesDetectionLoaderIsDeterministic() throws {
        let dataset = ShapesDetectionDataset(generator: ShapesGenerator(size: 96, seed: 5), count: 6,
                                             pipeline: DetectionPipeline(imgScale: (128, 128)))
        let a = try collect(DataLoader(dataset: dataset, batchSize: 4, seed: 1, workers: 2), epoch: 0)
        let b = try collect(DataLoader(dataset: dataset, batchSize: 4, seed: 1, workers: 0), epoch: 0)
        XCTAssertEqual(a.map(\.shape), [[4, 3, 128, 128], [2, 3, 128, 128]])
        XCTAssertEqual(a.map(\.images), b.map(\.images))
        XCTAssertEqual(a.flatMap { $0.items.map(\.gtBboxes) }, b.flatMap { $0.items.map(\.gtBboxes) })
        XCTAssertNil(a[0].labels)
        XCTAssertNil(a[0].labelShape)
    }
}
