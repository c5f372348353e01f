import Data
import XCTest

final class TransformsTests: XCTestCase {
    func testRescaleSizeFollowsMmcv() {
        let s = rescaleSize(width: 640, height: 480, scale: (1333, 800))
        XCTAssertEqual(s.width, 1067)
        XCTAssertEqual(s.height, 800)
        let t = rescaleSize(width: 500, height: 1500, scale: (1333, 800))  // long edge binds: 1333 / 1500
        XCTAssertEqual(t.height, 1333)
        XCTAssertEqual(t.width, Int(500.0 * 1333.0 / 1500.0 + 0.5))
    }

    func testBilinearMatchesOpenCVOnKnownValues() {
        // cv2.resize(np.array([[0, 255]], np.uint8), (4, 1)) == [[0, 64, 191, 255]]
        XCTAssertEqual(resizeBilinear([0, 255], width: 2, height: 1, channels: 1, toWidth: 4, toHeight: 1), [0, 64, 191, 255])
        // Exact 2x downscale is area averaging in OpenCV: (10 + 20 + 30 + 41 + 2) >> 2.
        XCTAssertEqual(resizeBilinear([10, 20, 30, 41], width: 2, height: 2, channels: 1, toWidth: 1, toHeight: 1), [25])
        // A constant image stays constant at any size.
        let flat = resizeBilinear([UInt8](repeating: 77, count: 5 * 7 * 3), width: 5, height: 7, channels: 3,
                                  toWidth: 13, toHeight: 4)
        XCTAssertEqual(Set(flat), [77])
    }

    func testNearestPicksFloorOfScaledIndex() {
        XCTAssertEqual(resizeNearest([0, 1, 2, 3], width: 4, height: 1, toWidth: 2, toHeight: 1), [0, 2])
        XCTAssertEqual(resizeNearest([5, 9], width: 2, height: 1, toWidth: 4, toHeight: 1), [5, 5, 9, 9])
    }

    func testReduceZeroLabel() {
        let m = LabelMap(width: 4, height: 1, labels: [0, 1, 254, 255]).reducingZeroLabel()
        XCTAssertEqual(m.labels, [255, 0, 253, 255])
    }

    /// A 100x50 image with one object box [10, 5, 30, 25] and its mask, resized 2x and flipped.
    func testFlippedResizedBoxAndMaskLandWhereExpected() {
        var image = Image(width: 100, height: 50, fill: (200, 100, 50))
        var mask = [UInt8](repeating: 0, count: 100 * 50)
        for y in 5..<25 { for x in 10..<30 { mask[y * 100 + x] = 1; image[y, x, 0] = 10 } }
        let sample = DetectionSample(filename: "a", image: image, gtBboxes: [10, 5, 30, 25], gtLabels: [2],
                                     gtBboxesIgnore: [0, 0, 10, 10],
                                     gtMasks: BitmapMasks(count: 1, width: 100, height: 50, masks: mask))
        var pipeline = DetectionPipeline(imgScale: (200, 100), flipRatio: 1)
        var rng = SplitMix64(seed: 1)
        let out = pipeline(sample, rng: &rng)
        XCTAssertEqual(out.meta.imgShape.height, 100)
        XCTAssertEqual(out.meta.imgShape.width, 200)
        XCTAssertEqual(out.meta.padShape.height, 128)
        XCTAssertEqual(out.meta.padShape.width, 224)
        XCTAssertEqual(out.meta.scaleFactor, [2, 2, 2, 2])
        XCTAssertTrue(out.meta.flip)
        XCTAssertEqual(out.gtBboxes, [140, 10, 180, 50])
        XCTAssertEqual(out.gtBboxesIgnore, [180, 0, 200, 20])
        XCTAssertEqual(out.gtLabels, [2])
        // The mask's support is exactly the flipped box.
        let m = out.gtMasks!
        XCTAssertEqual(m.width, 224)
        XCTAssertEqual(m.height, 128)
        var xs: [Int] = [], ys: [Int] = []
        for y in 0..<m.height { for x in 0..<m.width where m.masks[y * m.width + x] == 1 { xs.append(x); ys.append(y) } }
        XCTAssertEqual([xs.min()!, ys.min()!, xs.max()! + 1, ys.max()! + 1], [140, 10, 180, 50])
        // The dark object pixels moved with the box; padding is 0 after normalisation.
        let r = (Float(10) - 123.675) / 58.395
        XCTAssertEqual(out.image[0, 30, 160], r, accuracy: 1e-5)
        XCTAssertEqual(out.image[0, 30, 40], (Float(200) - 123.675) / 58.395, accuracy: 1e-5)
        XCTAssertEqual(out.image[1, 110, 50], 0)
        XCTAssertEqual(out.image[2, 50, 210], 0)
        // Without the flip the box is just scaled.
        pipeline.flipRatio = 0
        XCTAssertEqual(pipeline(sample, rng: &rng).gtBboxes, [20, 10, 60, 50])
    }

    func testPolygonsFlipLikeMmdet() {
        let p = PolygonMasks(polygons: [[[10, 5, 30, 5, 30, 25]]], width: 100, height: 50)
        XCTAssertEqual(p.resized(width: 200, height: 100).flippedHorizontally().polygons, [[[180, 10, 140, 10, 140, 50]]])
    }

    func testCrowdAnnotationsBecomeIgnoreBoxes() {
        let image = Image(width: 50, height: 50)
        let anns = [InstanceAnnotation(bbox: [1, 2, 10, 20], label: 0),
                    InstanceAnnotation(bbox: [5, 5, 10, 10], label: 1, isCrowd: true),
                    InstanceAnnotation(bbox: [5, 5, 0.5, 10], label: 1)]  // narrower than 1 px: dropped
        let s = DetectionSample(filename: "x", image: image, annotations: anns)
        XCTAssertEqual(s.gtBboxes, [1, 2, 11, 22])
        XCTAssertEqual(s.gtLabels, [0])
        XCTAssertEqual(s.gtBboxesIgnore, [5, 5, 15, 15])
    }

    func testRandomCropRespectsCatMaxRatio() {
        // Left half class 1, right half class 0, a band of ignore: a 30x30 crop inside one half is unbalanced.
        var labels = LabelMap(width: 100, height: 60, fill: 0)
        for y in 0..<60 { for x in 0..<50 { labels[y, x] = 1 } }
        for y in 0..<5 { for x in 0..<100 { labels[y, x] = 255 } }
        let image = Image(width: 100, height: 60)
        func balancedFraction(_ ratio: Double) -> Double {
            let crop = RandomCrop(cropSize: (30, 30), catMaxRatio: ratio)
            let checker = RandomCrop(cropSize: (30, 30), catMaxRatio: 0.75)
            var ok = 0
            for seed in 0..<200 {
                var rng = SplitMix64(seed: UInt64(seed))
                let (img, lab) = crop(image, labels, rng: &rng)
                XCTAssertEqual(img.width, 30)
                XCTAssertEqual(lab.height, 30)
                if checker.accepts(lab) { ok += 1 }
            }
            return Double(ok) / 200
        }
        XCTAssertGreaterThan(balancedFraction(0.75), 0.85)  // ~21% of windows pass; 10 checks fail 0.79^10 ≈ 9.5%
        XCTAssertLessThan(balancedFraction(1.0), 0.35)
        // Ignore pixels do not count as a class.
        let checker = RandomCrop(cropSize: (2, 2))
        XCTAssertFalse(checker.accepts(LabelMap(width: 2, height: 2, labels: [0, 0, 255, 255])))
        XCTAssertTrue(checker.accepts(LabelMap(width: 2, height: 2, labels: [0, 1, 255, 255])))
        XCTAssertFalse(checker.accepts(LabelMap(width: 2, height: 2, labels: [0, 0, 0, 1])))
    }

    func testSegmentationPadValuesAndDeterminism() {
        var image = Image(width: 64, height: 48, fill: (10, 20, 30))
        image[0, 0, 0] = 0
        var label = LabelMap(width: 64, height: 48, fill: 1)
        for x in 0..<32 { for y in 0..<48 { label[y, x] = 2 } }
        let sample = SegmentationSample(filename: "s", image: image, label: label)
        let pipeline = SegmentationPipeline(imgScale: (64, 48), ratioRange: nil, cropSize: (64, 64))
        var rng = SplitMix64(seed: 9)
        let out = pipeline(sample, rng: &rng)
        XCTAssertEqual(out.image.height, 64)
        XCTAssertEqual(out.label.height, 64)
        for y in 48..<64 {
            for x in 0..<64 {
                XCTAssertEqual(out.label[y, x], 255)
                for c in 0..<3 { XCTAssertEqual(out.image[c, y, x], 0) }
            }
        }
        // reduce_zero_label: raw 1 and 2 became 0 and 1; no other values inside the image.
        XCTAssertEqual(Set(out.label.labels[0..<(48 * 64)]), [0, 1])
        var rng2 = SplitMix64(seed: 9)
        let again = pipeline(sample, rng: &rng2)
        XCTAssertEqual(again.image, out.image)
        XCTAssertEqual(again.meta, out.meta)
    }

    func testRandomRescaleStaysInRatioRange() {
        let sample = SegmentationSample(filename: "s", image: Image(width: 80, height: 40), label: LabelMap(width: 80, height: 40, fill: 1))
        let pipeline = SegmentationPipeline(imgScale: (160, 40), cropSize: (1000, 1000), photometric: false, reduceZeroLabel: false)
        for seed in 0..<20 {
            var rng = SplitMix64(seed: UInt64(seed))
            let out = pipeline(sample, rng: &rng)
            // Base factor min(160/80, 40/40) = 1; the ratio scales it into [0.5, 2].
            XCTAssertGreaterThanOrEqual(out.meta.imgShape.width, 40)
            XCTAssertLessThanOrEqual(out.meta.imgShape.width, 160)
            XCTAssertEqual(out.meta.imgShape.width, 2 * out.meta.imgShape.height, accuracy: 1)
        }
    }

    func testHSVRoundTripAndPhotometricBounds() {
        var rng = SplitMix64(seed: 3)
        let rgb = (0..<3000).map { _ in UInt8(rng.randint(0, 256)) }
        let back = hsvToRGB(rgbToHSV(rgb))
        XCTAssertLessThanOrEqual(zip(rgb, back).map { abs(Int($0) - Int($1)) }.max()!, 4)
        XCTAssertEqual(rgbToHSV([255, 0, 0, 0, 255, 0, 0, 0, 255]), [0, 255, 255, 60, 255, 255, 120, 255, 255])
        // Distortion changes a colourful image for some seed and is a pure function of the generator.
        let image = Image(width: 30, height: 10, pixels: rgb.prefix(900).map { $0 })
        var changed = false
        for seed in 0..<8 {
            var a = SplitMix64(seed: UInt64(seed)), b = SplitMix64(seed: UInt64(seed))
            let x = PhotoMetricDistortion()(image, rng: &a)
            XCTAssertEqual(x, PhotoMetricDistortion()(image, rng: &b))
            changed = changed || x != image
        }
        XCTAssertTrue(changed)
    }
}
