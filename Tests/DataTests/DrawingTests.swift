import Data
import XCTest

final class DrawingTests: XCTestCase {
    func count(_ img: Image, _ c: RGB) -> Int {
        stride(from: 0, to: img.pixels.count, by: 3).filter { img.pixels[$0] == c.0 && img.pixels[$0 + 1] == c.1 && img.pixels[$0 + 2] == c.2 }.count
    }

    func testTextRectanglesAndLinesClipToTheImage() {
        var img = Image(width: 40, height: 20, fill: (255, 255, 255))
        img.drawText("A1", x: 2, y: 2, (0, 0, 0))
        // "A" has 18 set pixels in the 5×7 font, "1" has 10.
        XCTAssertEqual(count(img, (0, 0, 0)), 18 + 10)
        img.drawText("A", x: 32, y: 2, (0, 0, 0), scale: 2)
        XCTAssertEqual(count(img, (0, 0, 0)), 28 + 4 * 18 - 4 * 6, "the scaled glyph's right column falls off the image")
        var box = Image(width: 10, height: 10)
        box.drawRect(x0: 2, y0: 2, x1: 7, y1: 7, (255, 0, 0), thickness: 2)
        XCTAssertEqual(count(box, (255, 0, 0)), 36 - 4)   // 6×6 outline of width 2 = 36 − 2×2 inner
        box.drawLine(-5, 0, 20, 0, (0, 255, 0))
        XCTAssertEqual(count(box, (0, 255, 0)), 10)
        XCTAssertEqual(BitmapFont.width(of: "abc"), 17)
    }

    func testBlendingFollowsMMSegAndSkipsIgnoredPixels() {
        let img = Image(width: 2, height: 1, pixels: [100, 100, 100, 100, 100, 100])
        let labels = LabelMap(width: 2, height: 1, labels: [1, 255])
        let out = img.blended(with: labels, palette: [(0, 0, 0), (200, 0, 50)], opacity: 0.5)
        XCTAssertEqual(out.pixels, [150, 50, 75, 100, 100, 100])
    }

    func testDetectionsAreDrawnInClassColoursAboveTheThreshold() {
        let img = Image(width: 64, height: 64, fill: (255, 255, 255))
        let palette = Palette.colours(2)
        let out = img.drawingDetections(boxes: [10, 20, 40, 50, 5, 5, 20, 20], scores: [0.9, 0.1], labels: [1, 0],
                                        classNames: ["a", "b"], scoreThreshold: 0.3, palette: palette)
        XCTAssertGreaterThan(count(out, palette[1]), 100, "box outline and caption background of the kept detection")
        XCTAssertEqual(count(out, palette[0]), 0, "the detection below the threshold is not drawn")
        // The first 16 colours are Palette.base in order (crimson, blue, green, orange, ...); only colours past the
        // 16th come from the seeded generator. Pinning them catches a reordered or reseeded palette.
        XCTAssertEqual(Palette.colours(4).map { [$0.0, $0.1, $0.2] },
                       [[220, 20, 60], [0, 130, 200], [60, 180, 75], [255, 165, 0]], "Palette.base, in order")
        XCTAssertEqual(Palette.colours(3, background: true)[0].0, 0)
        XCTAssertEqual(Set(Palette.colours(16).map { "\($0)" }).count, 16)
    }
}
